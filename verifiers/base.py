"""The verifier contract: what every built-in and plugin verifier returns and how it is called."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, runtime_checkable


@dataclass(frozen=True)
class VerifyResult:
    """One verifier's verdict on one completion.

    ``score=None`` means the verifier does not apply to this sample (excluded from the reward, not 0);
    ``error`` means the verifier itself broke (timeout, crash) — the model is not blamed for it.
    """

    score: float | None
    extracted: str | None = None
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # logged, never summed into the reward
    # Process verifiers only: one (end, score) per reasoning step in order, ``end`` the character offset in the
    # completion just past the step. ``algo.process_verifier`` turns these into token-level advantages; None =
    # no step-level scores.
    steps: tuple[tuple[int, float], ...] | None = None


@runtime_checkable
class Verifier(Protocol):
    name: str

    def __call__(self, completion: str, answer: Any, *, meta: Mapping[str, Any] | None = None) -> VerifyResult: ...
