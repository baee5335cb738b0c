"""What a task is: a source of ``Sample``s (prompt messages, reference answer, verifier specs, meta).

A task knows how to turn its dataset rows into prompts and, where it has reasoning traces, into SFT targets
rendered in the response format (``<think>…</think>`` then the final answer in ``\\boxed{}``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}
VerifierSpec = str | Mapping[str, Any]  # "math" or {"name": "math", "weight": 1.0, **verifier config}


@dataclass(frozen=True)
class Sample:
    id: str
    prompt: list[Message]
    answer: Any  # what the verifiers compare against (a value, a GSM8K solution, a test description ...)
    verifiers: tuple[VerifierSpec, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)
    # A reference response in the task's response format, for SFT; None where the data has no trace.
    solution: str | None = None


@dataclass(frozen=True)
class ResponseFormat:
    """How a response is laid out: thinking between tags, then the final answer."""

    think_open: str = "<think>"
    think_close: str = "</think>"
    answer_template: str = "\\boxed{{{answer}}}"

    def render(self, thinking: str, answer: str) -> str:
        return f"{self.think_open}\n{thinking}\n{self.think_close}\n{self.answer_template.format(answer=answer)}"


class Task(ABC):
    """A named source of samples. Subclasses are registered in ``rlvr.tasks.registry`` (the built-in ones by
    ``rlvr/tasks/__init__.py``)."""

    name: str = ""
    description: str = ""
    default_verifiers: tuple[str, ...] = ("math",)

    def __init__(self, cfg: Any, data_dir: str | None = None):
        self.cfg = cfg
        self.data_dir = data_dir
        self.response_format = ResponseFormat(
            think_open=cfg.think_open, think_close=cfg.think_close, answer_template=cfg.answer_template
        )

    @property
    @abstractmethod
    def splits(self) -> Sequence[str]:
        """Names of the splits this task can produce."""

    @abstractmethod
    def samples(self, split: str, limit: int | None = None) -> list[Sample]:
        """The first ``limit`` samples of ``split`` (all when None), in a deterministic order."""

    def default_eval_splits(self) -> list[str]:
        """Held-out splits an eval reports when none are named: the per-difficulty ones (arith: test_ops1..K),
        else the first split that is not ``train``."""
        per_difficulty = [s for s in self.splits if s.startswith("test_")]
        return per_difficulty or [s for s in self.splits if s != "train"][:1]

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(
                f"task {self.name!r} has no split {split!r}; valid splits: {', '.join(self.splits)}"
            )

    def verifier_specs(self) -> tuple:
        """The config's verifier specs, or the task's default when the config names none."""
        return tuple(self.cfg.verifiers) if self.cfg.verifiers else self.default_verifiers

    def prompt_messages(self, user: str) -> list[Message]:
        messages: list[Message] = []
        if self.cfg.system_prompt:
            messages.append({"role": "system", "content": self.cfg.system_prompt})
        messages.append({"role": "user", "content": user})
        return messages
