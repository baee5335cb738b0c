"""The ``math`` verifier: 1.0 when the completion's final answer equals the reference, else 0.0.

Pipeline: extract (``math_extract``) -> normalise (``math_normalize``) -> compare (``math_equiv``, which parses
with our own guarded LaTeX parser in ``math_parse``; the module docstring there explains why not antlr).

Contract:
- never raises; an internal bug becomes ``VerifyResult(score=None, error=...)`` so the runtime counts it;
- ``score=None`` (does not apply) only when there is no reference answer; a completion without an answer
  scores 0.0 (the model's fault, not the verifier's);
- ``answer`` is a bare value, ``$…$`` LaTeX, ``\\boxed{…}``, a worked solution ending ``#### 42`` (or ``A: 42``),
  a number, or a list of accepted alternatives (right if any one matches);
- ``metrics`` say which extraction rule fired (``extract/<rule>``), which comparison layer decided
  (``equiv/<layer>``), and ``no_answer``; a monitor can then see a reward earned only by ``last_number``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from rlvr.verifiers.base import VerifyResult
from rlvr.verifiers.math_equiv import equivalent
from rlvr.verifiers.math_extract import RULES, boxed_contents, extract, extract_reference
from rlvr.verifiers.math_normalize import normalize


@dataclass(frozen=True)
class MathConfig:
    rules: tuple[str, ...] = RULES
    """Extraction rules in priority order; drop ``last_number`` for a strict reward that demands an explicit
    answer (recommended once the model has learned the format: the fallback rewards lucky trailing numbers)."""
    answer_after_think: bool = True
    """Search only after the last ``</think>`` when present: the reasoning may try many candidate answers."""
    think_close: str = "</think>"
    rel_tol: float = 1e-6
    """Relative tolerance when either side is written as a decimal; larger forgives rounding (0.333 for 1/3
    at 1e-3) but also accepts wrong answers that are merely close."""
    ordered_lists: bool = False
    """Bare comma lists ("2, -3") are multiple answers compared as multisets; True demands the same order.
    Tuples ``(a, b)`` and intervals are always ordered; sets ``\\{…\\}`` never."""
    join_final_boxes: bool = True
    """Several different boxes on the final boxed line ("\\boxed{1} or \\boxed{2}") form one answer list: right
    for a multi-part reference ("1, 2"), wrong for a single value. False takes the last box, which rewards hedging."""
    max_completion_chars: int = 200_000
    """Longer completions are cut to their last this-many characters before extraction (bounded time)."""

    def __post_init__(self) -> None:
        unknown = [r for r in self.rules if r not in RULES]
        if unknown:
            raise ValueError(f"math verifier: unknown extraction rule(s) {unknown}; valid: {', '.join(RULES)}")
        if not self.rel_tol >= 0:
            raise ValueError("math verifier: rel_tol must be >= 0")


class MathVerifier:
    name = "math"

    def __init__(self, **config: Any):
        valid = {f.name for f in fields(MathConfig)}
        unknown = sorted(set(config) - valid)
        if unknown:
            raise TypeError(f"math verifier: unknown option(s) {unknown}; valid options: {', '.join(sorted(valid))}")
        if "rules" in config:
            config["rules"] = tuple([config["rules"]] if isinstance(config["rules"], str) else config["rules"])
        self.config = MathConfig(**config)
        self._ref_cache: dict[str, tuple[str, str]] = {}

    def __repr__(self) -> str:
        return f"MathVerifier({asdict(self.config)})"

    def _reference(self, answer: Any) -> tuple[str, str] | None:
        if answer is None:
            return None
        if isinstance(answer, bool):
            answer = str(answer)
        elif isinstance(answer, (int, float)):
            answer = repr(answer) if isinstance(answer, float) else str(answer)
        elif not isinstance(answer, str):
            answer = str(answer)
        cached = self._ref_cache.get(answer)
        if cached is None:
            value, how = extract_reference(answer)
            cached = (normalize(value), how)
            if len(self._ref_cache) > 4096:  # a training run sees each reference G times in a row
                self._ref_cache.clear()
            self._ref_cache[answer] = cached
        return cached if cached[0] else None

    def __call__(self, completion: str, answer: Any, *, meta: Mapping[str, Any] | None = None) -> VerifyResult:
        try:
            return self._verify(completion, answer)
        except Exception as exc:  # noqa: BLE001 - the contract is "never raise"; the runtime counts this
            return VerifyResult(score=None, error=f"math verifier failed: {type(exc).__name__}: {exc}"[:500])

    def _verify(self, completion: str, answer: Any) -> VerifyResult:
        if isinstance(answer, (list, tuple)):  # accepted alternatives: right if any one matches
            results = [self._verify(completion, a) for a in answer if a is not None]
            scored = [r for r in results if r.score is not None]
            if not scored:
                return VerifyResult(score=None, metrics={"no_reference": 1.0})
            return max(scored, key=lambda r: r.score)
        cfg = self.config
        ref = self._reference(answer)
        if ref is None:
            return VerifyResult(score=None, metrics={"no_reference": 1.0})
        if not isinstance(completion, str):
            completion = "" if completion is None else str(completion)
        if len(completion) > cfg.max_completion_chars:
            completion = completion[-cfg.max_completion_chars:]
        found, rule = extract(completion, cfg.rules, cfg.think_close if cfg.answer_after_think else None)
        if found is None:
            return VerifyResult(score=0.0, metrics={"no_answer": 1.0})
        pred = normalize(found)
        metrics: dict[str, float] = {f"extract/{rule}": 1.0, "no_answer": 0.0}
        if rule == "boxed" and cfg.join_final_boxes:
            joined = _final_line_boxes(completion, cfg.think_close if cfg.answer_after_think else None)
            if len(joined) > 1:
                pred, found = ",".join(joined), ", ".join(joined)
                metrics["extract/joined_boxes"] = 1.0
        ok, how = equivalent(pred, ref[0], cfg.rel_tol, cfg.ordered_lists)
        metrics[f"equiv/{how}"] = 1.0
        return VerifyResult(score=1.0 if ok else 0.0, extracted=found, metrics=metrics)


def _final_line_boxes(text: str, after: str | None) -> list[str]:
    """Distinct normalised box contents on the last line that has a box (order kept)."""
    if after and after in text:
        text = text[text.rfind(after) + len(after):]
    at = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    line_start = text.rfind("\n", 0, at) + 1
    line_end = text.find("\n", at)
    line = text[line_start: line_end if line_end >= 0 else len(text)]
    out: list[str] = []
    for content in boxed_contents(line):
        value = normalize(content)
        if value and value not in out:
            out.append(value)
    return out
