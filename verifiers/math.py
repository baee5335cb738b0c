"""The ``math`` verifier: 1.0 when the completion's final answer equals the reference, else 0.0.

Pipeline: extract (``math_extract``) -> normalise (``math_normalize``) -> compare (``math_equiv``, which parses
with our own guarded LaTeX parser in ``math_parse``; the module docstring there explains why not antlr).

Contract:
- never raises; an internal bug becomes ``VerifyResult(score=None, error=...)`` so the runtime counts it;
- ``score=None`` (does not apply) only when there is no reference answer; a completion without an answer
  scores 0.0 (the model's fault, not the verifier's);
- ``answer`` is a bare value, ``$…$`` LaTeX, ``\\boxed{…}``, a worked solution ending ``#### 42`` (or ``A: 42``),
  a number, or a list of accepted alternatives (right if any one matches);
- ``metrics`` say which extraction rule fired (``extract/<rule>``; ``extract/weak`` as well for a guess such as
  ``last_number``; ``extract/joined_boxes`` / ``extract/joined_spans`` when several boxes or math spans formed one
  answer list), which comparison layer decided (``equiv/<layer>``), and ``no_answer``; a monitor can then see a
  reward earned only by ``last_number``;
- the completion and the reference are read by the same extraction (``math_extract``), and an answer part that is
  literally the reference (after normalisation) is right (``extract/identical``) whatever the rules found.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from rlvr.verifiers.base import VerifyResult
from rlvr.verifiers.math_equiv import equivalent
from rlvr.verifiers.math_extract import RULES, WEAK_RULES, answer_part, extract_parts, extract_reference
from rlvr.verifiers.math_normalize import normalize, strip_math_delimiters

STRICTNESS: dict[str, dict[str, Any]] = {
    "default": {},
    "math_verify": {"answer_after_think": False, "decimal_comma": False, "rel_tol": 1e-5},
}
"""Named presets for ``strictness``: option values applied before the explicit options (which win).

``math_verify`` mirrors math-verify 0.9.0's default ``parse``/``verify`` where this verifier has a knob: the
whole completion is searched (no ``</think>`` split), a comma is never a decimal mark, and decimals get the
looser tolerance of its 6-decimal rounding (``0.333333`` = 1/3; ours is relative, its is absolute). Like
math-verify it joins the boxes of the final line. docs/verifiers.md says where it differs from ``default``."""

_TIGHT_COMMA = re.compile(r"-?\d+,\d+")  # "3,5": a decimal-comma candidate; "3, 5" (with a space) is a list


@dataclass(frozen=True)
class MathConfig:
    rules: tuple[str, ...] = RULES
    """Extraction rules in priority order (``math_extract.RULES``: answer_tag, boxed, gsm8k, answer_is, answer_line,
    last_math, bare, last_number); drop ``last_number`` for a strict reward that demands an explicit answer
    (recommended once the model has learned the format: the fallback rewards lucky trailing numbers)."""
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
    decimal_comma: bool = True
    """A reference written ``3,5`` / ``0,25`` (no space after the comma, not a 3-digit group) is read as 3.5 /
    0.25 when the prediction is a decimal, so European answer keys work. The price: a two-answer reference
    written without a space (``3,5``) then accepts ``3.5``. A reference ``3, 5`` is always a list. False never
    reads a comma as a decimal mark (``2{,}5`` stays 2.5: that LaTeX spelling is unambiguous)."""
    max_completion_chars: int = 200_000
    """Longer completions are cut to their last this-many characters before extraction (bounded time)."""
    strictness: str = "default"
    """A named preset (``STRICTNESS``) applied first: ``default`` (this project's choices) or ``math_verify``
    (math-verify 0.9.0's defaults: no ``</think>`` split, no decimal comma, ``rel_tol`` 1e-5). Options given
    explicitly override the preset."""

    def __post_init__(self) -> None:
        unknown = [r for r in self.rules if r not in RULES]
        if unknown:
            raise ValueError(f"math verifier: unknown extraction rule(s) {unknown}; valid: {', '.join(RULES)}")
        if not self.rel_tol >= 0:
            raise ValueError("math verifier: rel_tol must be >= 0")
        if self.strictness not in STRICTNESS:
            raise ValueError(f"math verifier: unknown strictness {self.strictness!r}; valid: {', '.join(STRICTNESS)}")


class MathVerifier:
    name = "math"

    def __init__(self, **config: Any):
        valid = {f.name for f in fields(MathConfig)}
        unknown = sorted(set(config) - valid)
        if unknown:
            raise TypeError(f"math verifier: unknown option(s) {unknown}; valid options: {', '.join(sorted(valid))}")
        if "rules" in config:
            config["rules"] = tuple([config["rules"]] if isinstance(config["rules"], str) else config["rules"])
        preset = STRICTNESS.get(config.get("strictness", "default"), {})  # an unknown name fails in MathConfig
        self.config = MathConfig(**{**preset, **config})
        self._ref_cache: dict[str, tuple[str, str, bool]] = {}

    def __repr__(self) -> str:
        return f"MathVerifier({asdict(self.config)})"

    def _reference(self, answer: Any) -> tuple[str, str, bool] | None:
        """``(normalised value, how it was found, may be a decimal comma)`` of a reference, cached."""
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
            cached = (normalize(value), how, bool(_TIGHT_COMMA.fullmatch(strip_math_delimiters(value))))
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
        after = cfg.think_close if cfg.answer_after_think else None
        found, rule, parts = extract_parts(completion, cfg.rules, after, cfg.join_final_boxes)
        if found is None:
            if _identical(completion, after, ref[0]):
                return VerifyResult(score=1.0, extracted=completion.strip(),
                                    metrics={"extract/identical": 1.0, "no_answer": 0.0})
            return VerifyResult(score=0.0, metrics={"no_answer": 1.0})
        pred = normalize(found)
        metrics: dict[str, float] = {f"extract/{rule}": 1.0, "no_answer": 0.0}
        if rule in WEAK_RULES:
            metrics["extract/weak"] = 1.0
        if parts > 1:
            metrics["extract/joined_boxes" if rule == "boxed" else "extract/joined_spans"] = 1.0
        ok, how = equivalent(pred, ref[0], cfg.rel_tol, cfg.ordered_lists, cfg.decimal_comma and ref[2])
        if not ok and _identical(completion, after, ref[0]):
            ok, how = True, "identical"
            metrics["extract/identical"] = 1.0
        metrics[f"equiv/{how}"] = 1.0
        return VerifyResult(score=1.0 if ok else 0.0, extracted=found, metrics=metrics)


def _identical(completion: str, after: str | None, ref: str) -> bool:
    """The answer part is the reference itself, written the same way (``$[0,1)$`` for ``$[0,1)$``)."""
    region = answer_part(completion, after).strip()
    if len(region) > 2 * len(ref) + 40:  # a bare answer is about as long as the reference; skip the normalise
        return False
    return normalize(region) == ref
