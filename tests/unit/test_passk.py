"""pass@k against the closed form, maj@k votes/abstentions/ties, and the per-problem aggregation (errors excluded)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from rlvr.eval.metrics import ProblemSamples, aggregate, maj_at_k, pass_at_k


def closed_form(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))  # comb(a, k) = 0 when a < k


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 10, 16])
def test_pass_at_k_matches_closed_form_everywhere(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(float(closed_form(n, c, k)), abs=1e-12), (n, c, k)


def test_pass_at_k_edge_cases():
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 0, 10) == 0.0  # nothing right: never passes
    assert pass_at_k(10, 10, 1) == 1.0 and pass_at_k(7, 7, 7) == 1.0  # everything right
    assert pass_at_k(10, 3, 8) == 1.0  # n - c = 7 < k: every draw of 8 contains a right one
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 = c / n
    assert pass_at_k(5, 2, 5) == 1.0  # k = n: right iff any is right


def test_pass_at_k_is_stable_for_large_n():
    # comb(1000, 500) overflows float; the product form stays exact to ~1e-12
    for n, c, k in [(200, 1, 100), (1000, 13, 500), (1000, 1, 1), (1000, 999, 2)]:
        assert pass_at_k(n, c, k) == pytest.approx(float(closed_form(n, c, k)), rel=1e-9)


@pytest.mark.parametrize("args,match", [((4, 1, 5), "k <= n"), ((4, 1, 0), "k >= 1"), ((4, 5, 1), "0 <= c <= n"),
                                        ((4, -1, 1), "0 <= c <= n")])
def test_pass_at_k_invalid_arguments_raise_clearly(args, match):
    with pytest.raises(ValueError, match=match):
        pass_at_k(*args)
    with pytest.raises(TypeError, match="must be an int"):
        pass_at_k(4.0, 1, 1)


def test_maj_at_k_majority_and_first_k_only():
    answers = ["7", "7", "3", "3", "3"]
    correct = [1, 1, 0, 0, 0]
    assert maj_at_k(answers, correct, 2) == 1.0  # first two vote 7
    assert maj_at_k(answers, correct, 5) == 0.0  # 3 wins 3-2
    assert maj_at_k(answers, correct, 1) == 1.0  # maj@1 is the first sample


def test_maj_at_k_ties_count_fraction_of_tied_answers_that_are_right():
    assert maj_at_k(["7", "3"], [1, 0], 2) == 0.5  # 1-1 tie, one of two right
    assert maj_at_k(["7", "3", "3", "7"], [1, 0, 0, 1], 4) == 0.5  # 2-2 tie
    assert maj_at_k(["7", "3", "5", "7", "3", "5"], [1, 0, 0, 1, 0, 0], 6) == pytest.approx(1 / 3)  # 3-way tie
    assert maj_at_k(["7", "3", "7", "1"], [1, 0, 1, 0], 4) == 1.0  # no tie: 7 wins 2-1-1
    # the result does not depend on the order of the tied answers
    assert maj_at_k(["3", "7"], [0, 1], 2) == maj_at_k(["7", "3"], [1, 0], 2)


def test_maj_at_k_abstentions_and_invalid_k():
    assert maj_at_k([None, None, "3"], [0, 0, 0], 3) == 0.0  # one vote, wrong
    assert maj_at_k([None, "7", "3", "3"], [0, 1, 0, 0], 2) == 1.0  # None abstains: 7 alone in the first two
    assert maj_at_k([None, None], [0, 0], 2) == 0.0  # nobody answered
    with pytest.raises(ValueError, match="k <= n"):
        maj_at_k(["1"], [1], 2)
    with pytest.raises(ValueError, match="k >= 1"):
        maj_at_k(["1"], [1], 0)


def test_aggregate_excludes_verifier_errors_and_short_problems():
    problems = [
        ProblemSamples([1.0, 0.0, 1.0, 1.0], ["5", "4", "5", "5"]),  # 3/4 right
        ProblemSamples([None, 0.0, 0.0, 1.0], [None, "2", "2", "9"]),  # one error: 1/3 of the judged right
        ProblemSamples([None, None, None, None], [None] * 4),  # verifier broke every time: excluded
    ]
    out = aggregate(problems, [1, 2, 4])
    assert out["pass@1"] == pytest.approx((0.75 + 1 / 3) / 2)
    assert out["problems_judged"] == 2
    assert out["pass@2"] == pytest.approx((pass_at_k(4, 3, 2) + pass_at_k(3, 1, 2)) / 2)
    assert out["pass@4"] == pytest.approx(1.0)  # only problem 0 has 4 judged samples
    assert out["maj@1"] == pytest.approx(0.5)  # first judged samples: right, wrong
    assert out["maj@4"] == 1.0
    assert math.isnan(aggregate([problems[2]], [1])["pass@1"])  # nothing judged: NaN, never a silent 0
    with pytest.raises(ValueError, match=">= 1"):
        aggregate(problems, [0])
