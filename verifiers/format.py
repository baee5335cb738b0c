"""The ``format`` verifier: is the completion shaped ``<think>…</think>`` + final answer? Plus DAPO overlong shaping.

Structure (``check_structure=True``), all configurable:
- exactly one ``think_open``…``think_close`` block (``max_think_blocks``), closed, and nothing but whitespace
  before it unless ``allow_text_before_think`` (a chat template may already have emitted ``<think>``: set
  ``require_think_open=False`` then, and only the close tag is required);
- after the block, a final answer in the ``answer`` form: ``boxed`` (``\\boxed{…}``), ``tag`` (``<answer>…</answer>``)
  or ``any`` (non-empty text); ``exactly_one_answer`` forbids hedging with several boxes/tags.

Soft overlong punishment (DAPO, Yu et al. 2025, eq. 13): with ``max_tokens`` L and ``overlong_buffer`` C, a
completion of n tokens gets penalty 0 for n <= L - C, (L - C - n) / C inside the buffer, -1 beyond L. Built-in
scores live in [0, 1], so the verifier returns ``structure * (1 + penalty)``. For DAPO's additive form, use a second
``format`` entry with ``check_structure=False``: its score ``1 + penalty`` differs from DAPO's term by the constant
weight, which group-relative advantages cancel. The token count comes from ``meta["num_tokens"]`` (the rollout
knows it; the verifier does not tokenise); without it shaping does not apply and ``overlong/unknown_length`` is 1.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from rlvr.verifiers.base import VerifyResult
from rlvr.verifiers.math_extract import boxed_contents

_ANSWER_FORMS = ("boxed", "tag", "any")


class FormatVerifier:
    name = "format"

    def __init__(
        self,
        check_structure: bool = True,
        think_open: str = "<think>",
        think_close: str = "</think>",
        require_think_open: bool = True,
        allow_text_before_think: bool = False,
        max_think_blocks: int = 1,
        answer: str = "boxed",
        answer_open: str = "<answer>",
        answer_close: str = "</answer>",
        exactly_one_answer: bool = True,
        max_tokens: int | None = None,
        overlong_buffer: int = 0,
    ):
        if answer not in _ANSWER_FORMS:
            raise ValueError(f"format verifier: answer must be one of {_ANSWER_FORMS}, got {answer!r}")
        if overlong_buffer < 0 or (max_tokens is not None and max_tokens <= overlong_buffer):
            raise ValueError("format verifier: need 0 <= overlong_buffer < max_tokens")
        if not check_structure and not overlong_buffer:
            raise ValueError("format verifier: check_structure=False needs overlong_buffer > 0 (nothing to check)")
        self.check_structure = check_structure
        self.think_open, self.think_close = think_open, think_close
        self.require_think_open = require_think_open
        self.allow_text_before_think = allow_text_before_think
        self.max_think_blocks = max_think_blocks
        self.answer = answer
        self.answer_open, self.answer_close = answer_open, answer_close
        self.exactly_one_answer = exactly_one_answer
        self.max_tokens = max_tokens
        self.overlong_buffer = overlong_buffer

    def __call__(self, completion: str, answer: Any = None, *, meta: Mapping[str, Any] | None = None) -> VerifyResult:
        try:
            return self._verify(completion if isinstance(completion, str) else str(completion), meta or {})
        except Exception as exc:  # noqa: BLE001 - never raise; the runtime counts errors
            return VerifyResult(score=None, error=f"format verifier failed: {type(exc).__name__}: {exc}"[:500])

    def _structure(self, text: str) -> tuple[bool, str]:
        """``(ok, reason)``; reason names the first rule broken (logged as ``fail/<reason>``)."""
        opens, closes = text.count(self.think_open), text.count(self.think_close)
        if closes == 0:
            return False, "no_think_close"
        if closes > self.max_think_blocks or opens > self.max_think_blocks:
            return False, "too_many_think_blocks"
        close_at = text.rfind(self.think_close)
        if self.require_think_open:
            open_at = text.find(self.think_open)
            if open_at < 0 or open_at > close_at:
                return False, "no_think_open"
            if not self.allow_text_before_think and text[:open_at].strip():
                return False, "text_before_think"
            if not text[open_at + len(self.think_open): close_at].strip():
                return False, "empty_think"
        tail = text[close_at + len(self.think_close):]
        if self.answer == "any":
            return (True, "") if tail.strip() else (False, "no_answer")
        if self.answer == "tag":
            spans = re.findall(re.escape(self.answer_open) + r"(.*?)" + re.escape(self.answer_close), tail, re.DOTALL)
            count = len(spans) if all(s.strip() for s in spans) else 0
        else:
            count = sum(1 for c in boxed_contents(tail) if c.strip())
        if count == 0:
            return False, "no_answer"
        if self.exactly_one_answer and count > 1:
            return False, "several_answers"
        return True, ""

    def _overlong_factor(self, meta: Mapping[str, Any], metrics: dict[str, float]) -> float:
        if not self.overlong_buffer:
            return 1.0
        n, limit = meta.get("num_tokens"), meta.get("max_tokens", self.max_tokens)
        if n is None or limit is None:
            metrics["overlong/unknown_length"] = 1.0
            return 1.0
        start = limit - self.overlong_buffer
        penalty = 0.0 if n <= start else -1.0 if n > limit else (start - n) / self.overlong_buffer
        metrics["overlong/penalty"] = penalty
        return 1.0 + penalty

    def _verify(self, text: str, meta: Mapping[str, Any]) -> VerifyResult:
        metrics: dict[str, float] = {}
        score = 1.0
        if self.check_structure:
            ok, reason = self._structure(text)
            metrics["structure_ok"] = 1.0 if ok else 0.0
            if not ok:
                metrics[f"fail/{reason}"] = 1.0
                score = 0.0
        score *= self._overlong_factor(meta, metrics)
        return VerifyResult(score=score, metrics=metrics)
