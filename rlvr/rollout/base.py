"""The rollout engine interface: ``generate(samples, n, params) -> list[Rollout]``.

Every engine (transformers ``generate``, vLLM) returns the same thing: for each sample, ``n`` completions in
order, prompt-major, each with the log-probabilities its sampler assigned to the sampled tokens. The trainer
only ever sees this interface, so swapping engines cannot change the algorithm.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Sequence

from rlvr.rollout.types import Rollout
from rlvr.tasks.base import Sample


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = field(default=1.0, metadata={
        "help": "softmax temperature. 1.0 samples the policy itself (what GRPO's ratio assumes); 0 = greedy "
                "decoding (evaluation only: no exploration, G identical completions)"})
    top_p: float = field(default=1.0, metadata={
        "help": "nucleus sampling mass. < 1 samples from a truncated distribution the trainer's logprobs do not "
                "model, which biases the importance ratio; keep 1.0 for training"})
    max_new_tokens: int = field(default=256, metadata={
        "help": "completion cap; a completion that reaches it ends with finish_reason='length'"})
    seed: int | None = field(default=None, metadata={
        "help": "seed for the sampler; the same samples, n, params and engine settings give the same rollouts. "
                "None draws from the global RNG"})
    stop: tuple[str, ...] = field(default=(), metadata={
        "help": "extra stop strings (the eos token always stops). The completion ends with the token that "
                "completes the string, and the string stays in the text (vLLM: include_stop_str_in_output)"})

    def __post_init__(self) -> None:
        errors = []
        if self.temperature < 0:
            errors.append(f"temperature={self.temperature} must be >= 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            errors.append(f"top_p={self.top_p} must be in (0, 1]")
        if self.max_new_tokens < 1:
            errors.append(f"max_new_tokens={self.max_new_tokens} must be >= 1")
        if isinstance(self.stop, str):  # a bare string would be iterated character by character
            object.__setattr__(self, "stop", (self.stop,))
        if any(not s for s in self.stop):
            errors.append("stop strings must be non-empty")
        if errors:
            raise ValueError("invalid SamplingParams: " + "; ".join(errors))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def logprob_temperature(self) -> float:
        """Temperature of the distribution engine logprobs refer to (1.0 for greedy: the raw model)."""
        return 1.0 if self.greedy else self.temperature


class RolloutEngine(ABC):
    """Samples completions for task samples. Implementations document which distribution ``logprobs`` are from."""

    @abstractmethod
    def generate(self, samples: Sequence[Sample], n: int = 1, params: SamplingParams | None = None) -> list[Rollout]:
        """``n`` completions per sample, prompt-major: result[i*n + j] is completion j of samples[i]."""

    def close(self) -> None:
        """Release engine resources (GPU memory, worker processes). Default: nothing to release."""

    def __enter__(self) -> "RolloutEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
