"""The rollout engine interface: ``generate(samples, n, params) -> list[Rollout]``.

Every engine (transformers ``generate``, vLLM) returns the same thing: for each sample, ``n`` completions in
order, prompt-major, each with the log-probabilities its sampler assigned to the sampled tokens. The trainer
only ever sees this interface, so swapping engines cannot change the algorithm.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

from rlvr.rollout.budget import ThinkingBudget
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
    budget: ThinkingBudget | None = field(default=None, metadata={
        "help": "thinking budget (s1 budget forcing, rlvr.rollout.budget): cap / extend the thinking block and give "
                "the answer its own budget; max_new_tokens stays the cap on all completion tokens. None = plain "
                "sampling"})

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
        if self.budget is not None and not isinstance(self.budget, ThinkingBudget):
            errors.append(f"budget must be a ThinkingBudget or None, got {type(self.budget).__name__}")
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
    """Samples completions for task samples. Implementations document which distribution ``logprobs`` are from.

    ``_init_tokens`` sets what every engine must agree on to the token (stop set, padding, thinking tags), so that
    finish reasons and thinking-token counts are identical whichever engine produced a rollout.
    """

    def _init_tokens(self, tokenizer: Any, generation_config: Any, think_open: str, think_close: str) -> None:
        self.tokenizer = tokenizer
        self.think_open, self.think_close = think_open, think_close
        self.think_ids = (self._single_token_id(think_open), self._single_token_id(think_close))
        # the stop set: every generation-config eos id plus the tokenizer's eos
        eos = generation_config.eos_token_id if generation_config is not None else None
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        if not eos_ids:
            raise ValueError(f"{type(self).__name__} needs an eos token: neither the generation config nor the "
                             "tokenizer has one")
        self.eos_ids = sorted(eos_ids)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]

    def _single_token_id(self, tag: str) -> int | None:
        ids = self.tokenizer(tag, add_special_tokens=False)["input_ids"]
        return ids[0] if len(ids) == 1 else None

    @abstractmethod
    def generate(self, samples: Sequence[Sample], n: int = 1, params: SamplingParams | None = None) -> list[Rollout]:
        """``n`` completions per sample, prompt-major: result[i*n + j] is completion j of samples[i]."""

    def _request(self, samples: Sequence[Sample], n: int,
                 params: SamplingParams | None) -> tuple[SamplingParams, list[list[int]]]:
        """What every ``generate`` starts with: the sampling settings (default ``SamplingParams()``), ``n >= 1``
        checked, and each sample's prompt token ids through the chat template (the tokens the trainer re-scores)."""
        from rlvr.rollout.prompts import render_prompt

        if n < 1:
            raise ValueError(f"n={n} must be >= 1")
        return params or SamplingParams(), [render_prompt(self.tokenizer, s.prompt) for s in samples]

    def close(self) -> None:
        """Release engine resources (GPU memory, worker processes). Default: nothing to release."""

    def __enter__(self) -> "RolloutEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _thinking_tokens(self, ids: list[int], text: str) -> int:
        """Completion tokens inside the thinking block (to the end, less a final eos, when it never closes)."""
        open_id, close_id = self.think_ids
        if open_id is not None and close_id is not None:
            has_open, has_close = open_id in ids, close_id in ids
            if not has_open and not has_close:
                return 0
            start = ids.index(open_id) + 1 if has_open else 0
            if close_id in ids[start:]:
                return ids.index(close_id, start) - start
            body = ids[start:]
            return len(body) - (1 if body and body[-1] in self.eos_ids else 0)
        # multi-token tags: find them in the text and re-tokenize the span between them
        has_open, has_close = self.think_open in text, self.think_close in text
        if not has_open and not has_close:
            return 0
        start = text.index(self.think_open) + len(self.think_open) if has_open else 0
        end = text.find(self.think_close, start)
        span = text[start:end if end >= 0 else len(text)]
        return len(self.tokenizer(span, add_special_tokens=False)["input_ids"])

