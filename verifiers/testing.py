"""Conformance checks for verifier authors: ``check_verifier(MyVerifier())`` in your own test suite.

It exercises the contract the reward runtime relies on (see ``rlvr.verifiers.base``) with ordinary and hostile
inputs and raises one ``AssertionError`` listing every violation, so a plugin can be fixed in one pass:

- ``name`` is a non-empty str; the verifier is callable as ``v(completion, answer, meta=...)``;
- every call returns a ``VerifyResult`` (never raises, never returns a bare float/bool);
- ``score`` is None or a finite float (in [0, 1] when ``unit_interval``); ``extracted``/``error`` are str|None;
  ``metrics`` maps str to finite float;
- identical input gives identical output (rewards must be reproducible);
- each call returns within ``time_budget_s`` (the runtime kills slower calls and counts them as errors);
- ``cases``: your own ``(completion, answer, expected_score)`` rows are scored as expected.
"""

from __future__ import annotations

import math
import time
from typing import Any, Iterable, Mapping

from rlvr.verifiers.base import VerifyResult

HOSTILE_COMPLETIONS = (
    "",
    " ",
    "\\boxed{",
    "}}}{{{\\frac{",
    "\\boxed{10^{10^{10}}}",
    "\\boxed{\\frac{1}{0}}",
    "{" * 2000 + "1" + "}" * 2000,
    "x" * 100_000,
    "\x00\x01\ufffd\udcff junk \u202e",
    "<think>" * 50 + "</answer>",
)
# Pathological math the reward must survive (each: returns fast, no exception); see tests/unit.
HOSTILE_MATH = (
    "\\boxed{10^{10^{10}}}",                                   # power tower: refused, not computed
    "\\boxed{2^{3^{4^{5}}}}",                                  # another tower
    "\\boxed{\\frac{1}{0}}",                                   # division by zero
    "\\boxed{(10^{100})!}",                                    # huge factorial
    "\\boxed{1e99999}",                                        # huge scientific exponent
    "\\boxed{" + "9" * 900 + "^{" + "9" * 90 + "}}",           # huge base and exponent
    "\\boxed{" + "\\frac{1}{" * 300 + "2" + "}" * 300 + "}",   # deep nesting
    "\\boxed{" + "(" * 3000 + "1" + ")" * 3000 + "}",          # deeper nesting than the recursion limit
    "\\boxed{" + "\\sqrt{" * 200 + "2" + "}" * 200 + "}",      # nested radicals
    "\\boxed{" + "x+" * 400 + "1}",                            # long sum
    "\\boxed{" + "1," * 400 + "1}",                            # long list
    "\\boxed{\\exp(\\exp(\\exp(\\exp(100))))}",                # numeric overflow in evaluation
    "\\boxed{\\sin(10^{100})}",                                # needs high precision to evaluate
    "\\boxed{x^{10^{10}}}",                                    # huge symbolic power
    "\\boxed{\\left(\\right.}",                                # unbalanced delimiters
    "\\boxed{{{{{{{{{{}}}}}}}}}}",                             # empty nested braces
    "\\boxed{\\log_{0}{0}}",                                   # undefined log
    "\\boxed{0^{-1}}",                                         # zoo
    "\\boxed{\\infty-\\infty}",                                # nan
    "\\boxed{x=y=z}",                                          # chained relation
    "The answer is " + "1" * 100_000,                          # 100 KB number
    "#### " + "9," * 30_000,                                   # 60 KB separators
    "\\boxed{" * 20_000,                                       # many unbalanced boxes
    "junk \udcff\x00\x1b[31m \ufffd" * 1000,                   # non-UTF-8-ish junk
)
HOSTILE_ANSWERS: tuple[Any, ...] = ("", "42", None, 0, "\\frac{1}{2}", {"weird": [1, 2]})


def _problems(result: Any, where: str, unit_interval: bool) -> list[str]:
    if not isinstance(result, VerifyResult):
        return [f"{where}: returned {type(result).__name__}, expected VerifyResult"]
    out = []
    s = result.score
    if s is not None:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
            out.append(f"{where}: score {s!r} is not a finite float or None")
        elif unit_interval and not 0.0 <= s <= 1.0:
            out.append(f"{where}: score {s!r} outside [0, 1]")
    for field in ("extracted", "error"):
        value = getattr(result, field)
        if value is not None and not isinstance(value, str):
            out.append(f"{where}: {field} is {type(value).__name__}, expected str or None")
    if not isinstance(result.metrics, Mapping):
        out.append(f"{where}: metrics is {type(result.metrics).__name__}, expected a dict")
    else:
        for k, v in result.metrics.items():
            if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                out.append(f"{where}: metrics[{k!r}] = {v!r} (need str -> finite float)")
    return out


def check_verifier(
    verifier: Any,
    cases: Iterable[tuple[str, Any, float | None]] = (),
    *,
    meta: Mapping[str, Any] | None = None,
    unit_interval: bool = True,
    time_budget_s: float = 5.0,
    hostile: bool = True,
) -> list[VerifyResult]:
    """Run the contract checks; return the results of ``cases`` (in order) or raise ``AssertionError``."""
    problems: list[str] = []
    name = getattr(verifier, "name", None)
    if not isinstance(name, str) or not name:
        problems.append(f"`name` must be a non-empty str, got {name!r}")
    if not callable(verifier):
        raise AssertionError(f"verifier {verifier!r} is not callable")

    def call(completion: Any, answer: Any, where: str) -> Any:
        t0 = time.perf_counter()
        try:
            result = verifier(completion, answer, meta=meta)
        except Exception as exc:  # noqa: BLE001 - this is what we check for
            problems.append(f"{where}: raised {type(exc).__name__}: {exc}")
            return None
        took = time.perf_counter() - t0
        if took > time_budget_s:
            problems.append(f"{where}: took {took:.1f}s > {time_budget_s}s")
        problems.extend(_problems(result, where, unit_interval))
        return result

    results = []
    for i, (completion, answer, expected) in enumerate(cases):
        result = call(completion, answer, f"case {i}")
        results.append(result)
        if isinstance(result, VerifyResult) and result.score != expected:
            problems.append(f"case {i}: score {result.score!r}, expected {expected!r} "
                            f"(completion {completion[:60]!r}, answer {answer!r})")
        again = call(completion, answer, f"case {i} (repeat)")
        if isinstance(again, VerifyResult) and isinstance(result, VerifyResult) and again != result:
            problems.append(f"case {i}: not deterministic ({result} then {again})")
    if hostile:
        for ci, completion in enumerate(HOSTILE_COMPLETIONS):
            for ai, answer in enumerate(HOSTILE_ANSWERS):
                call(completion, answer, f"hostile completion #{ci} x answer #{ai}")
    if problems:
        raise AssertionError(f"verifier {name!r} breaks the contract:\n  - " + "\n  - ".join(problems))
    return results


# -- misbehaving verifiers, for testing runtimes (use by import path, e.g. "rlvr.verifiers.testing:Hang") ------------
class Hang:
    """Never returns (a verifier stuck in C code or an infinite loop)."""

    name = "hang"

    def __init__(self, seconds: float = 3600.0, when: str = ""):
        self.seconds, self.when = seconds, when

    def __call__(self, completion: str, answer: Any, *, meta: Mapping[str, Any] | None = None) -> VerifyResult:
        if self.when in completion:
            time.sleep(self.seconds)
        return VerifyResult(score=1.0)


class Crash:
    """Kills its own process with SIGSEGV when ``when`` occurs in the completion (a native-extension crash)."""

    name = "crash"

    def __init__(self, when: str = ""):
        self.when = when

    def __call__(self, completion: str, answer: Any, *, meta: Mapping[str, Any] | None = None) -> VerifyResult:
        if self.when in completion:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGSEGV)
        return VerifyResult(score=1.0)


class Raise:
    """Raises when ``when`` occurs in the completion (a verifier bug)."""

    name = "raise"

    def __init__(self, when: str = ""):
        self.when = when

    def __call__(self, completion: str, answer: Any, *, meta: Mapping[str, Any] | None = None) -> VerifyResult:
        if self.when in completion:
            raise RuntimeError("boom")
        return VerifyResult(score=0.5)
