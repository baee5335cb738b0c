"""The generator of equivalent / near-miss answer forms (rlvr.verifiers.math_forms)."""

from __future__ import annotations

import random
import re
from collections import Counter
from fractions import Fraction

import pytest

from rlvr.verifiers.math_forms import CLOSING_STYLES, DataNotFoundError, Form, forms_for, generate, iter_cases


@pytest.fixture(scope="module")
def cases(data_dir):
    try:
        return generate(data_dir, seed=0)
    except DataNotFoundError as exc:
        pytest.skip(str(exc))


def _forms(gold: str) -> dict[str, tuple[str, bool]]:
    """text (or "A | B" for a hedge) -> (kind, equivalent)."""
    return {(f.text if f.hedge is None else " | ".join(f.hedge)): (f.kind, f.equivalent)
            for f in forms_for(gold, random.Random(0))}


def test_deterministic_under_seed(cases, data_dir):
    again = generate(data_dir, seed=0)
    assert [c.as_dict() for c in again] == [c.as_dict() for c in cases]
    other = generate(data_dir, seed=1)
    assert [c.completion for c in other] != [c.completion for c in cases]
    # a gold's cases do not depend on which other golds are generated with it
    one = [c for c in cases if c.source == "math500/7"]
    alone = list(iter_cases([("math500/7", one[0].reference)], seed=0))
    assert [c.as_dict() for c in alone] == [c.as_dict() for c in one]


def test_size_and_coverage(cases):
    assert len(cases) >= 1000
    styles = Counter(c.closing_style for c in cases)
    assert set(styles) == set(CLOSING_STYLES) and min(styles.values()) > len(cases) / 10
    labels = Counter(c.expected_equivalent for c in cases)
    assert labels[True] > 500 and labels[False] > 500
    kinds = {c.kind for c in cases}
    for kind in ("frac_slash", "dfrac", "tfrac", "frac_shorthand", "decimal_exact", "sqrt_shorthand",
                 "reordered_list", "interval_inequality", "labelled", "thousands_sep", "text_unit", "left_right",
                 "matrix_env", "matrix_array", "unicode_minus", "near_sign_flip", "near_off_by_one",
                 "near_swapped_bracket", "near_wrong_fraction", "near_dropped_element", "near_hedge"):
        assert kind in kinds, kind
    assert all(c.kind.startswith("near_") != c.expected_equivalent for c in cases)
    assert {c.source.split("/")[0] for c in cases} == {"math500", "aime24", "amc23"}


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(DataNotFoundError, match="PROVENANCE"):
        generate(tmp_path)


# hand-checked rows: gold -> {form: (kind, equivalent)}
HAND_CHECKED = {
    "\\frac{14}{3}": {"14/3": ("frac_slash", True), "\\dfrac{14}{3}": ("dfrac", True),
                      "\\frac{28}{6}": ("frac_unreduced", True), "\\frac{14}3": ("frac_shorthand", True),
                      "4.667": ("near_rounded_decimal", False), "\\frac{3}{14}": ("near_reciprocal", False),
                      "-\\frac{14}{3}": ("near_sign_flip", False)},
    "\\frac 34": {"\\frac{3}{4}": ("shorthand_braced", True), "0.75": ("decimal_exact", True)},
    "(3,4]": {"3 < x \\le 4": ("interval_inequality", True), "x \\in (3, 4]": ("labelled", True),
              "[3, 4)": ("near_swapped_bracket", False), "3 < x < 4": ("near_inequality_strictness", False),
              "(4, 3]": ("near_reversed_endpoints", False)},
    "(2,\\infty)": {"x > 2": ("interval_inequality", True), "2 < x": ("interval_inequality_reversed", True),
                    "x \\ge 2": ("near_inequality_strictness", False)},
    "10,\\!080": {"10080": ("thousands_sep", True), "10{,}080": ("thousands_sep", True),
                  "10,\\!090": ("near_thousands_off", False)},
    "11\\sqrt2": {"11\\sqrt{2}": ("sqrt_braced", True), "\\sqrt{242}": ("radical_unsimplified", True),
                  "\\sqrt{22}": ("near_radical_wrong", False)},
    "3, 5, 7": {"7, 5, 3": ("reordered_list", True), "3, 5, and 7": ("list_and", True)},
    "1 \\pm \\sqrt{19}": {"1 - \\sqrt{19}, 1 + \\sqrt{19}": ("pm_expanded", True),
                          "1 + \\sqrt{19}": ("near_dropped_element", False)},
    "\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}": {
        "\\begin{bmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{bmatrix}": ("matrix_env", True),
        "\\left[\\begin{array}{c} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{array}\\right]": ("matrix_array", True),
        "\\begin{pmatrix} 1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}": ("near_sign_flip", False)},
    "-50": {"\u221250": ("unicode_minus", True), "50": ("near_sign_flip", False)},
    "025": {"25": ("leading_zero", True)},
    "5x - 7y + 11z + 4 = 0": {"-5x + 7y - 11z - 4 = 0": ("equation_negated", True),
                              "5x - 7y + 11z = -4": ("equation_rearranged", True),
                              "5x - 7y + 11z - 4 = 0": ("near_sign_flip_term", False)},
    "x=5": {"5": ("label_dropped", True), "x = 6": ("near_off_by_one", False)},
}


@pytest.mark.parametrize("gold", sorted(HAND_CHECKED))
def test_hand_checked_labels(gold):
    got = _forms(gold)
    assert got[gold] == ("identity", True)
    for text, expected in HAND_CHECKED[gold].items():
        assert got.get(text) == expected, (text, got.get(text))


def test_hedge_is_a_near_miss_rendered_per_style():
    hedge = next(f for f in forms_for("50", random.Random(0)) if f.kind == "near_hedge")
    assert hedge.hedge[0] == "50" and not hedge.equivalent
    case = next(c for c in iter_cases([("t/0", "50")], seed=3, styles=("minerva",)) if c.kind == "near_hedge")
    assert re.search(r"The final answer is \$50\$ or \$(49|51)\$\. I hope it is correct\.$", case.completion)
    case = next(c for c in iter_cases([("t/0", "50")], seed=3, styles=("boxed",)) if c.kind == "near_hedge")
    assert "\\text{ or }" in case.answer


def _value(s: str) -> Fraction | None:
    """An independent reading of a plain numeric LaTeX form (None when it is not one)."""
    s = s.replace("\u2212", "-").strip()
    s = re.sub(r"^[a-z]\s*=\s*", "", s)
    s = re.sub(r"\s*\\text\{[^{}]*\}$", "", s)
    s = re.sub(r",\\!\s*|\{,\}|\\,", "", s)
    m = re.fullmatch(r"(-?)\\[dt]?frac\s*(?:\{(-?\d+)\}|(\d))\s*(?:\{(\d+)\}|(\d))", s)
    if m:
        num, den = int(m.group(2) or m.group(3)), int(m.group(4) or m.group(5))
        return Fraction(num, den) * (-1 if m.group(1) else 1)
    m = re.fullmatch(r"(-?\d+)/(\d+)", s)
    if m:
        return Fraction(int(m.group(1)), int(m.group(2)))
    m = re.fullmatch(r"(-?\d*\.?\d+) \\times 10\^\{(-?\d+)\}", s)
    if m:
        return Fraction(m.group(1)) * Fraction(10) ** int(m.group(2))
    if re.fullmatch(r"-?(\d+\.?\d*|\.\d+)", s):
        return Fraction(s)
    return None


def test_numeric_labels_agree_with_an_independent_reading(cases):
    """For every numeric gold, a form's label says exactly whether its value equals the gold's."""
    checked = 0
    for gold in sorted({c.reference for c in cases}):
        g = _value(gold)
        if g is None:
            continue
        for form in forms_for(gold, random.Random(0)):
            v = None if form.hedge else _value(form.text)
            if v is None:
                continue
            if form.kind == "near_rounded_decimal":
                assert abs(v - g) < Fraction(1, 1000) and v != g, (gold, form)
                continue
            assert (v == g) == form.equivalent, (gold, form)
            checked += 1
    assert checked > 1500


_CLOSINGS = {
    "boxed": r"\\boxed\{(.*)\}\$?\.?\s*(?:\\\])?$",
    "answer_tag": r"<answer>\$?(.*?)\$?</answer>$",
    "bold_answer": r"\*\*Answer:\*\* \$(.*)\$$",
    "final_answer_is": r"The final answer is \$(.*)\$\.$",
    "minerva": r"Final Answer: The final answer is \$(.*)\$\. I hope it is correct\.$",
    "final_dollar": r"(?<!\\)\$((?:[^$\\]|\\.)*)\$\.?$",  # the last $...$ (a "\\$" inside is a dollar sign)
    "final_display": r"\\\[\n?(.*?)\n?\\\]$",
}


def test_forms_parse_back_from_the_completion(cases):
    """The closing of every completion gives back exactly the answer that was placed there."""
    for c in cases:
        m = re.search(_CLOSINGS[c.closing_style], c.completion, re.DOTALL)
        assert m and m.group(1).strip() == c.answer.strip(), (c.closing_style, c.completion[-120:], c.answer)
        assert "\\boxed" not in c.completion or c.closing_style == "boxed"
        plain = re.sub(r"\\[{}]", "", c.answer)  # \{ \} are set braces, not groups
        assert plain.count("{") == plain.count("}") and plain.count("\\left") == plain.count("\\right"), c.answer
        if c.closing_style == "answer_tag":
            assert c.completion.startswith("<think>") and "</think>" in c.completion
    # the draft case carries the gold only in the reasoning, and a different final answer
    draft = [c for c in cases if c.kind == "near_draft_had_gold"]
    assert draft and all(f"gave {c.reference}," in c.completion and c.answer != c.reference for c in draft)


def test_distractor_numbers_avoid_the_answer():
    for c in iter_cases([("t/0", "42"), ("t/1", "\\frac{3}{7}")], seed=5):
        body = c.completion[: c.completion.rfind(c.answer)]
        gold_numbers = "|".join(re.findall(r"\d+", c.reference))
        if c.kind != "near_draft_had_gold":
            assert not re.search(rf"(?<![\d.])({gold_numbers})(?![\d.])", body), body


def test_forms_are_unique_and_labelled():
    for gold in ("\\frac{3}{2}", "(-\\infty, 0]", "\\text{east}", "2k+2", "\\$32,\\!348", "90^\\circ"):
        forms = forms_for(gold, random.Random(0))
        assert forms[0] == Form(gold, "identity", True)
        keys = [(f.text, f.hedge) for f in forms]
        assert len(keys) == len(set(keys))
        assert all(f.kind and (f.text or f.hedge) for f in forms)
