"""The math verifier's strictness presets (``MathConfig.strictness``) behave as docs/verifiers.md says."""

from __future__ import annotations

import pytest

from rlvr.verifiers import load
from rlvr.verifiers.math import STRICTNESS, MathConfig
from rlvr.verifiers.registry import VerifierError

# (completion, reference, default verdict, math_verify-preset verdict, why they differ)
DIFFERENCES = [
    ("<think>so \\boxed{7}</think> I am not sure.", "7", 0.0, 1.0),    # default scores only the committed part
    ("<think>it is \\boxed{7}</think> Final: \\boxed{8}", "7", 0.0, 0.0),  # ... a later box wins in both
    ("The answer is $3.5$.", "3,5", 1.0, 0.0),                         # decimal comma read only by default
    ("The answer is $3.5$.", "3, 5", 0.0, 0.0),                        # a spaced list is a list in both
    (r"\boxed{0.333333}", r"\frac13", 0.0, 1.0),                        # 6-decimal rounding passes in the preset
    (r"\boxed{0.3333}", r"\frac13", 0.0, 0.0),                          # ... a 4-decimal one in neither
]

SAME = [
    (r"So \boxed{1} or \boxed{2}", "1, 2", 1.0),                      # both join the final boxed line
    (r"So \boxed{1} or \boxed{2}", "2", 0.0),                         # ... so a hedge is wrong in both
    (r"\boxed{\frac{14}{3}}", "14/3", 1.0),                           # ordinary answers agree
    ("Final Answer: The final answer is $34$. I hope it is correct.", "34", 1.0),  # Minerva closing
]


@pytest.fixture(scope="module")
def presets():
    return load("math"), load("math", strictness="math_verify")


@pytest.mark.parametrize("completion, reference, default, mirror", DIFFERENCES)
def test_presets_differ_as_documented(presets, completion, reference, default, mirror):
    ours, mv_like = presets
    assert ours(completion, reference).score == default
    assert mv_like(completion, reference).score == mirror


@pytest.mark.parametrize("completion, reference, score", SAME)
def test_presets_agree_elsewhere(presets, completion, reference, score):
    ours, mv_like = presets
    assert ours(completion, reference).score == mv_like(completion, reference).score == score


def test_preset_values_and_explicit_options_win():
    assert load("math").config == MathConfig()
    mv_like = load("math", strictness="math_verify").config
    assert (mv_like.answer_after_think, mv_like.decimal_comma, mv_like.rel_tol) == (False, False, 1e-5)
    assert set(STRICTNESS) == {"default", "math_verify"}
    tuned = load("math", strictness="math_verify", decimal_comma=True).config
    assert tuned.decimal_comma is True and tuned.answer_after_think is False


def test_unknown_preset_is_rejected_at_start_up():
    with pytest.raises(VerifierError, match="strictness"):
        load("math", strictness="lenient")


def test_decimal_comma_option():
    off = load("math", decimal_comma=False)
    assert off("The answer is $3.5$.", "3,5").score == 0.0
    assert off("The answer is $3.5$.", r"3{,}5").score == 1.0        # the LaTeX spelling stays a decimal
    assert off("The answer is $3, 5$.", "3,5").score == 1.0          # the list reading is unaffected


def test_mirror_agrees_with_math_verify_on_the_differences():
    mv = pytest.importorskip("math_verify")
    mv_like = load("math", strictness="math_verify")
    for completion, reference, _, mirror in DIFFERENCES:
        got = mv.verify(mv.parse(f"${reference}$"), mv.parse(completion))
        assert float(got) == mirror == mv_like(completion, reference).score, (completion, reference)
