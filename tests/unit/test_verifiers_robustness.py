"""Hostile and fuzzed inputs: every verifier call returns a VerifyResult, never raises, and stays within its
timeout; the math verifier's guards keep pathological LaTeX from reaching sympy's big-number arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlvr.rewards.runtime import RewardRuntime, RewardsConfig
from rlvr.verifiers import VerifyResult, load
from rlvr.verifiers.math_equiv import parse_answer
from rlvr.verifiers.math_normalize import normalize
from rlvr.verifiers.testing import HOSTILE_COMPLETIONS, HOSTILE_MATH

MATH = load("math")
FORMAT = load("format", max_tokens=1000, overlong_buffer=100)
REFERENCES = ["1", "x", "\\frac{1}{2}", "(1,2)", "\\{1\\}", "10^{10^{10}}", "x^{10^{10}}", "\\infty", None, ""]


@pytest.mark.parametrize("completion", [*HOSTILE_MATH, *HOSTILE_COMPLETIONS])
def test_math_hostile_inputs_never_raise(completion):
    verifier = MATH
    for ref in REFERENCES:
        result = verifier(completion, ref)
        assert isinstance(result, VerifyResult)
        assert result.error is None, (completion[:60], ref, result.error)


def test_hostile_inputs_finish_within_the_runtime_timeout():
    # The same inputs through the pool: a call that overran its hard timeout would show up as an error.
    completions = [*HOSTILE_MATH, *HOSTILE_COMPLETIONS]
    with RewardRuntime(RewardsConfig(num_workers=2, timeout_s=10, abort_error_rate=1.0)) as rt:
        batch = rt.score(completions, ["1"] * len(completions), ["math", {"name": "format", "weight": 0.1}])
    assert batch.last_errors == {}
    assert all(r is not None for r in batch.rewards)


latex_atoms = st.sampled_from([
    "\\frac", "\\sqrt", "\\boxed", "\\pi", "\\left(", "\\right)", "{", "}", "(", ")", "[", "]", "^", "_", "x", "y",
    "1", "0", "10", "-", "+", "=", ",", "\\{", "\\}", "\\cdot", "\\text{cm}", "!", "\\infty", "\\cup", "\\pm", ".",
    "\\begin{pmatrix}", "\\end{pmatrix}", "&", "\\\\", "e", "\\%", "^\\circ", "$", "#### ", "<answer>", "</think>",
])
latexish = st.lists(latex_atoms, max_size=40).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(completion=st.one_of(latexish, st.text(max_size=200)), reference=st.one_of(latexish, st.text(max_size=50)))
def test_fuzz_math_never_raises(completion, reference):
    result = MATH(completion, reference)
    assert isinstance(result, VerifyResult)
    assert result.error is None
    assert result.score in (0.0, 1.0, None)


@settings(max_examples=100, deadline=None)
@given(text=st.one_of(latexish, st.text(max_size=200)))
def test_fuzz_normalise_and_parse_are_total(text):
    once = normalize(text)
    assert isinstance(once, str)
    assert parse_answer(once).kind in {"expr", "rel", "seq", "set", "multi", "matrix", "text"}


@settings(max_examples=100, deadline=None)
@given(value=st.integers(-10**12, 10**12), den=st.integers(1, 10**6))
def test_fuzz_numbers_match_their_other_forms(value, den):
    verifier = MATH
    assert verifier(f"\\boxed{{{value}}}", f"{value:,}").score == 1.0          # thousands separators
    assert verifier(f"\\boxed{{\\frac{{{value}}}{{{den}}}}}", f"{value}/{den}").score == 1.0
    assert verifier(f"\\boxed{{{value + 1}}}", str(value)).score == 0.0


@settings(max_examples=100, deadline=None)
@given(completion=st.one_of(latexish, st.text(max_size=300)), num_tokens=st.integers(0, 10**6))
def test_fuzz_format_never_raises(completion, num_tokens):
    result = FORMAT(completion, None, meta={"num_tokens": num_tokens})
    assert result.error is None and 0.0 <= result.score <= 1.0
