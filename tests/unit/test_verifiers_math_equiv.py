"""Equivalence of the math verifier: each row is (model's boxed answer, reference, expected score)."""

from __future__ import annotations

import pytest

from rlvr.verifiers import load
from rlvr.verifiers.math_equiv import equivalent, fast_number
from rlvr.verifiers.math_normalize import normalize

EQUIV_CASES = [
    # integers, decimals, separators
    ("42", "42", 1),                                        # identical
    ("42", "43", 0),                                        # different integers
    ("042", "42", 1),                                       # leading zero
    ("1,234", "1234", 1),                                   # thousands separator
    ("10{,}000", "10000", 1),                               # LaTeX thousands separator (a known-wrong source label)
    ("10\\,000", "10000", 1),                               # thin-space separator
    ("1,2", "12", 0),                                       # not a thousands group: a list
    ("37.50", "37.5", 1),                                   # trailing decimal zero
    ("0.5", "\\frac{1}{2}", 1),                             # decimal vs fraction
    ("0.333", "\\frac13", 0),                               # rounded decimal is not exact (rel_tol 1e-6)
    ("3.14", "\\pi", 0),                                    # 3 digits of pi: rel. error 5e-4 > rel_tol
    ("3.1415926536", "\\pi", 1),                            # pi to 1e-11: within rel_tol
    ("-4", "-4", 1),                                        # negative
    ("-4", "4", 0),                                         # sign matters
    # fractions, mixed numbers, scientific notation
    ("\\dfrac{3}{8}", "\\frac{3}{8}", 1),                   # \dfrac
    ("3/8", "\\frac{3}{8}", 1),                             # slash fraction
    ("\\frac{6}{16}", "\\frac38", 1),                       # unreduced fraction
    ("\\frac{5}{16}", "\\frac{3}{8}", 0),                   # wrong fraction
    ("12\\frac{3}{5}", "12.6", 1),                          # mixed number = 12 + 3/5
    ("-1\\frac{1}{2}", "-1.5", 1),                          # negative mixed number
    ("\\frac{63}{5}", "12\\frac35", 1),                     # improper vs mixed
    ("1.5\\times10^{3}", "1500", 1),                        # scientific notation, LaTeX
    ("1.5e3", "1500", 1),                                   # scientific notation, plain
    ("2\\cdot 10^{-3}", "0.002", 1),                        # negative exponent
    # radicals, pi, symbolic
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt3", 1),     # radical arrangement
    ("2\\sqrt{2}", "\\sqrt{8}", 1),                         # simplified radical
    ("\\sqrt[3]{27}", "3", 1),                              # cube root
    ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}", 1),    # rationalised denominator
    ("7\\pi", "7\\pi", 1),                                  # pi
    ("\\pi \\cdot 7", "7\\pi", 1),                          # pi, reordered
    ("22/7", "\\pi", 0),                                    # approximation is wrong
    ("x^2+2x+1", "(x+1)^2", 1),                             # polynomial identity
    ("x^2+2x+2", "(x+1)^2", 0),                             # not identical
    ("4a-2", "2(2a-1)", 1),                                 # factored form
    ("4t", "4x", 0),                                        # different variable
    ("\\sin^2 x + \\cos^2 x", "1", 1),                      # trig identity
    ("\\ln(e^2)", "2", 0),                                  # "e" is a plain variable (on both sides alike)
    ("\\binom{5}{2}", "10", 1),                             # binomial
    ("5!", "120", 1),                                       # factorial
    ("|-3|", "3", 1),                                       # absolute value
    # equations and relations
    ("x=5", "5", 1),                                        # equation vs value
    ("5", "x=5", 1),                                        # value vs equation
    ("x=5", "x=6", 0),                                      # different value
    ("y=2x+1", "y=1+2x", 1),                                # same line
    ("2y=4x+2", "y=2x+1", 1),                               # proportional equation
    ("x>3", "3<x", 1),                                      # flipped inequality
    ("x\\geq 3", "x>3", 0),                                 # strictness differs
    # tuples, intervals, sets, lists
    ("(1,2)", "(1, 2)", 1),                                 # tuple
    ("(2,1)", "(1,2)", 0),                                  # tuple order matters
    ("[1,2)", "[1,2)", 1),                                  # half-open interval
    ("(1,2)", "[1,2]", 0),                                  # open vs closed interval
    ("\\{2,1\\}", "\\{1,2\\}", 1),                          # set order does not matter
    ("\\{1,2\\}", "\\{1,2,3\\}", 0),                        # set size
    ("2,-3", "-3, 2", 1),                                   # multiple answers, any order
    ("x=2, x=-3", "-3,2", 1),                               # multiple answers as equations
    ("x=2 \\text{ or } x=-3", "-3,2", 1),                   # answers joined by \text{ or }
    ("x = 2 or x = -3", "-3,2", 1),                         # answers joined by a plain "or"
    ("2", "2, -3", 0),                                      # incomplete multiple answers
    ("\\pm 3", "3,-3", 1),                                  # plus-minus expands
    ("(-\\infty,2)\\cup(3,\\infty)", "(3,\\infty)\\cup(-\\infty,2)", 1),  # union of intervals
    ("(-\\infty, 2]", "(-\\infty,2)", 0),                   # endpoint included vs not
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", 1),  # matrix
    ("\\begin{pmatrix}1&2\\\\4&3\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", 0),          # entries
    ("\\begin{bmatrix}0.5\\\\1\\end{bmatrix}", "\\begin{pmatrix}\\frac12\\\\1\\end{pmatrix}", 1),         # kinds
    # presentation: units, text, degrees, percent, delimiters
    ("18 \\text{ dollars}", "18", 1),                       # \text unit
    ("18 dollars", "18", 1),                                # plain unit word
    ("\\$18.00", "18", 1),                                  # currency and cents
    ("5\\text{ cm}^2", "5", 1),                             # squared unit
    ("30^\\circ", "30", 1),                                 # degrees
    ("25\\%", "25", 1),                                     # percent sign
    ("$\\frac{1}{9}$", "\\frac19", 1),                      # $ delimiters
    ("\\left( 1, 2 \\right)", "(1,2)", 1),                  # \left \right
    ("\\text{(C)}", "C", 1),                                # multiple choice letter
    ("\\text{Monday}", "\\text{monday}", 1),                # words, case-insensitive
    ("4:30", "4:30p..", 0),                                 # garbled reference text does not match
    # conditions, labels and several answers (the full table is test_verifiers_math_equiv_cases.py)
    ("x \\geq 5", "x \\ge 5", 1),                               # inequality, two spellings
    ("x \\geq 5", "[5,\\infty)", 1),                             # inequality vs interval
    ("-x > -1", "x<1", 1),                                    # inequality multiplied by -1
    ("x \\geq 5", "(5,\\infty)", 0),                             # closed vs open
    ("(p,q)=(3,2)", "(3,2)", 1),                              # labelled tuple
    ("\\{\\pm 1, 2\\}", "\\{-1,1,2\\}", 1),                      # set with \pm
    ("\\text{the circle}", "\\text{Circle}", 1),                # words: article and case
    # guarded hostile values
    ("10^{10^{10}}", "1", 0),                               # refused power: compared as text
    ("10^{10^{10}}", "10^{10^{10}}", 1),                    # identical strings still match
    ("\\frac{1}{0}", "1", 0),                               # division by zero is not a number
]


@pytest.fixture(scope="module")
def math_verifier():
    return load("math")


@pytest.mark.parametrize("pred, ref, expected", EQUIV_CASES)
def test_equivalence(math_verifier, pred, ref, expected):
    result = math_verifier(f"The result is \\boxed{{{pred}}}.", ref)
    assert result.error is None
    assert result.score == float(expected), (pred, ref, result)


# (completion, reference, expected): several boxes on the final line are one answer list, so hedging fails
BOX_LINE_CASES = [
    ("so \\boxed{1} or \\boxed{2}", "2", 0),                    # hedging between two values
    ("roots \\boxed{2} and \\boxed{-3}", "-3, 2", 1),            # a two-part answer boxed separately
    ("\\boxed{4} \\boxed{4}", "4", 1),                           # the same box repeated
    ("try \\boxed{1}\nfinally \\boxed{2}", "2", 1),             # earlier lines do not count
    ("grid \\boxed{\\phantom{2}}\nso \\boxed{4}", "4", 1),      # diagram boxes above the answer
]


@pytest.mark.parametrize("completion, ref, expected", BOX_LINE_CASES)
def test_boxes_on_the_final_line(math_verifier, completion, ref, expected):
    assert math_verifier(completion, ref).score == float(expected)
    if expected == 0:  # the permissive option takes the last box and rewards the hedge
        assert load("math", join_final_boxes=False)(completion, ref).score == 1.0


def test_float_tolerance_is_configurable():
    loose = load("math", rel_tol=1e-2)
    assert loose("\\boxed{0.333}", "\\frac13").score == 1.0
    assert load("math")("\\boxed{0.333}", "\\frac13").score == 0.0


def test_bare_lists_can_be_ordered():
    assert load("math", ordered_lists=True)("\\boxed{2, -3}", "-3, 2").score == 0.0


def test_typical_numbers_take_the_fast_path(math_verifier):
    # integers and fractions must never reach sympy: the metric names the deciding layer
    assert math_verifier("\\boxed{\\frac{2}{4}}", "0.5").metrics["equiv/fast_number"] == 1.0
    assert math_verifier("#### 1,200", "1200").metrics["equiv/exact_string"] == 1.0
    assert fast_number("\\frac{1}{0}") is None


def test_reference_forms(math_verifier):
    assert math_verifier("\\boxed{18}", "She makes $18 a day.\n#### 18").score == 1.0   # GSM8K solution
    assert math_verifier("\\boxed{18}", "\\boxed{18}").score == 1.0                     # boxed reference
    assert math_verifier("\\boxed{18}", "$18$").score == 1.0                           # $-wrapped reference
    assert math_verifier("\\boxed{18}", 18).score == 1.0                               # non-string reference
    assert math_verifier("\\boxed{0.5}", 0.5).score == 1.0
    assert math_verifier("\\boxed{0.5}", ["1/3", "\\frac12"]).score == 1.0         # alternatives: any one
    assert math_verifier("\\boxed{0.5}", ["1/3", "2"]).score == 0.0
    assert math_verifier("\\boxed{0.5}", [None]).score is None


def test_not_applicable_and_no_answer(math_verifier):
    none = math_verifier("\\boxed{1}", None)
    assert none.score is None and none.error is None                  # no reference: does not apply
    empty = math_verifier("I don't know", "5")
    assert empty.score == 0.0 and empty.metrics["no_answer"] == 1.0    # model's fault: 0, not an error


def test_normalize_is_idempotent():
    for pred, ref, _ in EQUIV_CASES:
        for s in (pred, ref):
            once = normalize(s)
            assert normalize(once) == once, s
    assert equivalent("1", "1") == (True, "exact_string")
