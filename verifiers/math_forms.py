"""Equivalent and near-miss forms of real benchmark answers, wrapped in model-style completions.

A test bench for any math verifier (ours, or yours): for every gold answer of MATH-500, AIME24 and AMC23 (read
from ``../shared/data/math`` relative to the project root, or ``$RLVR_DATA_DIR``, or an explicit folder), this
module writes the answer in other ways a model writes it, and in ways that are *almost* right, and places each form
at the end of a short reasoning text closed in one of several styles. Every case carries its label:

- ``expected_equivalent=True``  the form has the gold's value by construction (``\\frac{14}{3}`` -> ``14/3``,
  ``\\dfrac{14}{3}``, ``\\frac{28}{6}``; ``(3,4]`` -> ``3 < x \\le 4``; ``10,\\!080`` -> ``10080``; ...);
- ``expected_equivalent=False`` a near miss: sign flipped, off by one, brackets swapped, a wrong fraction, one
  element dropped, a hedge ("A or B"), a right number only in an earlier draft, ...

A form is emitted only when its label is certain from how it was built; gold answers of an unrecognised shape get
only the shape-independent rewrites (``\\dfrac``, ``\\left``/``\\right``, shorthand braces, a hedge).

    from rlvr.verifiers.math_forms import generate
    for case in generate(seed=0):
        result = my_verifier(case.completion, case.reference)
        ...

``case.kind`` names the form (``frac_slash``, ``interval_inequality``, ``near_sign_flip``, ...; near misses start
with ``near_``) and ``case.closing_style`` one of ``CLOSING_STYLES``. The output depends only on the data and the
seed (each gold answer draws from its own ``random.Random(f"{seed}:{source}")``).
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from rlvr.verifiers.math_forms_shapes import (
    _ANTONYMS,
    _BASE,
    _CHOICE,
    _COMPLEX,
    _DEC,
    _DEGREES,
    _EQ_VALUE,
    _FRAC,
    _INT,
    _MIXED,
    _MONEY,
    _PI,
    _SIMPLE_SCALAR,
    _SQRT,
    _TEXT,
    _THOUSANDS,
    _UNIT,
    Form,
    _arg,
    _decimal_forms,
    _equation_forms,
    _exact_decimal,
    _expression_forms,
    _frac_tex,
    _fraction_forms,
    _generic_forms,
    _int_forms,
    _interval_forms,
    _list_forms,
    _matched_outer,
    _matrix_forms,
    _negate,
    _pm_forms,
    _split_top,
    _sqrt_forms,
    _strip_left_right,
    _terms,
    _tuple_forms,
)

CLOSING_STYLES = (
    "boxed",            # ... $\boxed{X}$.
    "answer_tag",       # <think>...</think> <answer>X</answer>
    "bold_answer",      # **Answer:** $X$
    "final_answer_is",  # The final answer is $X$.
    "minerva",          # Final Answer: The final answer is $X$. I hope it is correct.
    "final_dollar",     # ... a final unboxed $X$
    "final_display",    # ... a final \[X\]
)

SOURCES = {"math500": "math500_test.jsonl", "aime24": "aime24_test.jsonl", "amc23": "amc23_test.jsonl"}

REPO = Path(__file__).resolve().parents[1]


class DataNotFoundError(FileNotFoundError):
    """The benchmark data folder (``../shared/data``) is not there; callers should skip, not fail."""


@dataclass(frozen=True)
class Case:
    completion: str
    reference: str
    expected_equivalent: bool
    kind: str
    closing_style: str
    answer: str      # the form placed in the closing, as written there
    source: str      # "math500/17"

    def as_dict(self) -> dict:
        return {"completion": self.completion, "reference": self.reference,
                "expected_equivalent": self.expected_equivalent, "kind": self.kind,
                "closing_style": self.closing_style, "answer": self.answer, "source": self.source}


# ---------------------------------------------------------------------------------------------------- data


def default_data_dir() -> Path:
    env = os.environ.get("RLVR_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


def load_gold_answers(data_dir: str | Path | None = None) -> list[tuple[str, str]]:
    """``[(source_id, gold_answer), ...]`` from MATH-500, AIME24 and AMC23; AMC's float answers become integers."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    math_dir = root / "math"
    present = [name for name, fname in SOURCES.items() if (math_dir / fname).is_file()]
    if not present:
        raise DataNotFoundError(
            f"no MATH-500 / AIME24 / AMC23 answers under {math_dir} (expected {', '.join(SOURCES.values())}); "
            "set RLVR_DATA_DIR or place the data at ../shared/data beside the project (see PROVENANCE.md there)")
    out: list[tuple[str, str]] = []
    for name in present:
        for i, line in enumerate((math_dir / SOURCES[name]).read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            answer = json.loads(line)["answer"]
            if isinstance(answer, float) and answer.is_integer():
                answer = str(int(answer))
            out.append((f"{name}/{i}", str(answer).strip()))
    return out


# ----------------------------------------------------------------------------------------------- helpers
# ------------------------------------------------------------------------------------------- dispatch


def _number_forms(g: str, rng: random.Random) -> list[Form] | None:
    """Forms of numbers (integers, money, decimals, fractions, radicals, degrees, complex, bases), or None."""
    out: list[Form] = []
    if _INT.fullmatch(g):
        out += _int_forms(int(g), g, rng)
    elif (m := _THOUSANDS.fullmatch(g)) and not m.group(1):
        out += _int_forms(int(re.sub(r"\D", "", m.group(2))), g, rng)
    elif m := _MONEY.fullmatch(g) or (m := _THOUSANDS.fullmatch(g)):
        digits = re.sub(r"[^\d.]", "", m.group(2) if m.re is _THOUSANDS else m.group(1))
        out += [Form(digits, "money_bare", True), Form(f"\\${digits}", "money_plain", True)]
        if "." not in digits:
            n = int(digits)
            out += [Form(f"{n} \\text{{ dollars}}", "text_unit", True),
                    Form(f"\\${n + 1}", "near_off_by_one", False)]
        else:
            out += [Form(str(Decimal(digits).normalize()), "money_bare", True),
                    Form(f"\\${Decimal(digits) + Decimal('0.01')}", "near_last_digit", False)]
    elif _DEC.fullmatch(g):
        out += _decimal_forms(g, rng)
    elif m := _FRAC.fullmatch(g):
        a, b = int(_arg(m, 2)), int(_arg(m, 4))
        q = Fraction(a, b) * (-1 if m.group(1) else 1)
        if Fraction(a, b).denominator == b and b != 1:  # reduced as written: forms are built from the value
            out += _fraction_forms(q, rng, single_digit=bool(re.search(r"frac\s*\d", g)))
        out += _generic_forms(g)
    elif m := _MIXED.fullmatch(g):
        whole, a, b = (int(x) for x in m.groups())
        if a < b:
            q = whole + Fraction(a, b)
            out.append(Form(_frac_tex(q), "mixed_as_fraction", True))
            dec = _exact_decimal(q)
            if dec:
                out.append(Form(dec, "decimal_exact", True))
            out.append(Form(_frac_tex(Fraction(whole * a, b)) if whole * a != 0 else "0", "near_mixed_as_product",
                            False) if Fraction(whole * a, b) != q else Form("", "", False))
            out.append(Form(f"{whole + 1}\\frac{{{a}}}{{{b}}}", "near_off_by_one", False))
    elif m := _SQRT.fullmatch(g):
        out += _sqrt_forms(m.group(1), m.group(2), int(_arg(m, 3)), g)
    elif m := _DEGREES.fullmatch(g):
        n = int(m.group(1))
        out += [Form(f"{n}^{{\\circ}}", "degrees", True), Form(f"{n}\u00b0", "degrees", True),
                Form(str(n), "degrees_dropped", True), Form(f"{n} \\text{{ degrees}}", "text_unit", True),
                Form(f"{n + 1}^\\circ", "near_off_by_one", False), Form(f"{180 - n}^\\circ" if n != 90 else
                                                                       f"{n + 10}^\\circ", "near_supplement", False)]
    elif m := _COMPLEX.fullmatch(g.replace(" ", "")):
        re_, op, im = m.groups()
        out += [Form(f"{op if op == '-' else ''}{im}i + {re_}".replace("+ -", "- "), "terms_reordered", True),
                Form(f"{re_} {'-' if op == '+' else '+'} {im}i", "near_conjugate", False)]
    elif m := _BASE.fullmatch(g):
        digits, base = m.group(1), int(_arg(m, 2))
        other = f"{digits}_{{{base}}}" if m.group(3) else f"{digits}_{base}"
        last = int(digits[-1])
        wrong = digits[:-1] + str(last - 1 if last > 0 else last + 1)
        out += [Form(other, "base_subscript", True), Form(f"{wrong}_{{{base}}}", "near_last_digit", False)]
    else:
        return None
    return out


def _word_forms(g: str, rng: random.Random) -> list[Form] | None:
    """Forms of choices, words, units, multiples of pi and ``x = n``, or None."""
    out: list[Form] = []
    if m := _CHOICE.fullmatch(g):
        letter = m.group(1)
        other = "ABCDE"[("ABCDE".index(letter) + 1) % 5]
        out += [Form(f"({letter})", "choice_letter", True), Form(f"\\textbf{{({letter})}}", "choice_letter", True),
                Form(f"\\text{{({other})}}", "near_other_choice", False)]
    elif m := _TEXT.fullmatch(g):
        word = m.group(1)
        out += [Form(f"\\textnormal{{{word}}}", "text_command", True), Form(f"\\mathrm{{{word}}}", "text_command",
                                                                           True),
                Form(f"\\text{{ {word} }}", "text_spacing", True)]
        other = _ANTONYMS.get(word.lower())
        if other:
            out.append(Form(f"\\text{{{other}}}", "near_other_word", False))
    elif m := _UNIT.fullmatch(g):
        num, cmd, unit, sq = m.groups()
        other_cmd = "mbox" if cmd == "text" else "text"
        out += [Form(num, "unit_dropped", True), Form(f"{num}\\{other_cmd}{{ {unit}}}{sq or ''}", "text_unit", True)]
        bumped = str(Decimal(num) + (Decimal("0.1") if "." in num else 1))
        out.append(Form(f"{bumped} \\{cmd}{{ {unit}}}{sq or ''}", "near_off_by_one", False))
    elif m := _PI.fullmatch(g):
        n = int(m.group(1))
        out += [Form(f"{n}\\pi", "spacing", True), Form(f"{n} \\cdot \\pi", "pi_cdot", True),
                Form(f"\\pi \\cdot {n}", "pi_cdot", True),
                Form(f"{n + 1}\\pi", "near_off_by_one", False), Form(str(n), "near_pi_dropped", False)]
    elif m := _EQ_VALUE.fullmatch(g):
        var, val = m.groups()
        out += [Form(val, "label_dropped", True), Form(f"{var}={val}", "spacing", True),
                Form(f"{var} = {int(val) + 1}", "near_off_by_one", False)]
    else:
        return None
    return out


def _structure_forms(g: str, rng: random.Random) -> list[Form] | None:
    """Forms of intervals, unions, sets, tuples, lists, matrices, equations and expressions."""
    out: list[Form] = []
    m_interval = re.fullmatch(r"(?:\\left\s*)?([\[(])\s*(.+?)\s*,\s*(.+?)\s*(?:\\right\s*)?([\])])", g)
    if (m := re.fullmatch(r"x \\in (.+)", g)) and (iv := re.fullmatch(r"([\[(])\s*(.+?)\s*,\s*(.+?)\s*([\])])",
                                                                       m.group(1))):
        lb, lo, hi, rb = iv.groups()
        out.append(Form(m.group(1), "label_dropped", True))
        out += [x for x in _interval_forms(lo, hi, lb, rb, rng) if x.kind != "labelled"]
    elif "\\cup" in g:
        parts = [p.strip() for p in g.split("\\cup")]
        if len(parts) >= 2:
            out.append(Form(" \\cup ".join(reversed(parts)), "union_reordered", True))
            first = parts[0]
            swapped = ("[" + first[1:]) if first.startswith("(") and "infty" not in first.split(",")[0] else None
            if swapped:
                out.append(Form(" \\cup ".join([swapped] + parts[1:]), "near_swapped_bracket", False))
            out.append(Form(" \\cup ".join(parts[1:]), "near_dropped_element", False))
    elif g.startswith("\\{") and g.endswith("\\}"):
        inner = g[2:-2]
        elems = _split_top(inner)
        if len(elems) >= 2 and all(elems):
            out += _list_forms(elems, True, rng)
    elif m := re.fullmatch(r"(.+?)\s*\\pm\s*(.+)", g):
        a, b = m.group(1).strip(), m.group(2).strip()
        if _terms(a) and len(_terms(a)) == 1 and _terms(b) and len(_terms(b)) == 1 and "," not in g:
            out += _pm_forms(a, b)
    elif m := re.fullmatch(r"\\begin\{(pmatrix|bmatrix)\}(.+)\\end\{\1\}", g, re.DOTALL):
        rows = [[e.strip() for e in r.split("&")] for r in m.group(2).split("\\\\")]
        if all(len(r) == len(rows[0]) and all(r) for r in rows):
            out += _matrix_forms(m.group(1), rows)
    elif m_interval and (m_interval.group(1) != "(" or m_interval.group(4) != ")" or "infty" in g) and \
            "," not in m_interval.group(2) + m_interval.group(3):
        lb, lo, hi, rb = m_interval.groups()
        if all(_SIMPLE_SCALAR.fullmatch(x.replace(" ", "")) or "\\frac" in x or "\\pi" in x for x in (lo, hi)):
            out += _interval_forms(lo, hi, lb, rb, rng)
        out += _generic_forms(g)
    elif (_matched_outer(_strip_left_right(g).strip(), "(", ")")
          and len(elems := _split_top(_strip_left_right(g).strip()[1:-1])) >= 2):
        out += _tuple_forms(elems, "\\left" in g, rng)
        out += [x for x in _generic_forms(g) if x.kind != "left_right"]
    elif "," in g and len(elems := _split_top(g)) >= 2 and all(elems) and not re.search(r"[=<>]", g):
        out += _list_forms(elems, False, rng)
    elif "=" in g:
        out += _equation_forms(g)
    else:
        out += _expression_forms(g)
        out += _generic_forms(g)
        if _SIMPLE_SCALAR.fullmatch(g.replace(" ", "")) or re.fullmatch(r"\\frac\{[^{}]+\}\{[^{}]+\}", g):
            neg = _negate(g)
            if neg:
                out.append(Form(neg, "near_sign_flip", False))
    return out


def forms_for(gold: str, rng: random.Random) -> list[Form]:
    """Equivalent and near-miss forms of one gold answer (the gold itself first, kind ``identity``)."""
    g = gold.strip()
    out = [Form(g, "identity", True)]
    for shape in (_number_forms, _word_forms, _structure_forms):
        found = shape(g, rng)
        if found is not None:
            out += found
            break
    # a hedge between the gold and one of its near misses (once per gold)
    if not any(x.kind == "near_hedge" for x in out):
        near = [x for x in out if not x.equivalent and x.text and "\\begin" not in x.text]
        if near:
            out.append(Form("", "near_hedge", False, hedge=(g, near[0].text)))
    seen, unique = set(), []
    for x in out:
        key = x.text if x.hedge is None else ("hedge",) + x.hedge
        if x.kind and (x.text or x.hedge) and key not in seen and (x.text != g or x.kind == "identity"):
            seen.add(key)
            unique.append(x)
    return unique


# ------------------------------------------------------------------------------------------ completions

_OPENERS = ["Let me work through this step by step.", "We need to find the requested quantity.",
            "Let's think about this carefully.", "First, let's set up the problem."]


def _filler_number(rng: random.Random, avoid: set[str]) -> int:
    while True:
        n = rng.randint(2, 99)
        if str(n) not in avoid:
            return n


def reasoning(rng: random.Random, avoid: set[str]) -> str:
    """A few sentences of model-style working with distractor numbers (never one of ``avoid``)."""
    a, b, c = (_filler_number(rng, avoid) for _ in range(3))
    lines = [rng.choice(_OPENERS),
             f"From the given conditions, $a + b = {a}$ and $a - b = {b}$, so we combine the two equations.",
             rng.choice([f"Multiplying through by ${c}$ clears the denominators.",
                         f"There are ${c}$ cases to check, and by symmetry only a few of them matter.",
                         f"Substituting back, the expression simplifies term by term (we drop a factor of ${c}$)."]),
             "Checking the boundary cases confirms the result."]
    return "\n\n".join(lines)


def _render(form: Form, style: str) -> str:
    """The answer as written inside the closing (a hedge reads "A or B")."""
    if form.hedge is None:
        return form.text
    a, b = form.hedge
    if style in ("final_answer_is", "minerva", "bold_answer"):
        return f"{a}$ or ${b}"  # the closing puts $...$ around it: "$A$ or $B$"
    return f"{a} \\text{{ or }} {b}"


def close(answer: str, style: str, rng: random.Random) -> str:
    """The closing line(s) of a completion in ``style`` around the answer text ``answer``."""
    if style == "boxed":
        return rng.choice([f"Therefore, the answer is $\\boxed{{{answer}}}$.", f"\\[\n\\boxed{{{answer}}}\n\\]",
                           f"So the final answer is $\\boxed{{{answer}}}$."])
    if style == "answer_tag":
        return f"<answer>{answer}</answer>" if rng.random() < 0.5 else f"<answer>${answer}$</answer>"
    if style == "bold_answer":
        return f"**Answer:** ${answer}$"
    if style == "final_answer_is":
        return f"The final answer is ${answer}$."
    if style == "minerva":
        return f"Final Answer: The final answer is ${answer}$. I hope it is correct."
    if style == "final_dollar":
        return rng.choice([f"Putting everything together, we get\n\n${answer}$", f"Hence the answer is ${answer}$.",
                           f"Thus, the result is ${answer}$."])
    if style == "final_display":
        return rng.choice([f"Therefore,\n\\[\n{answer}\n\\]", f"So we obtain\n\\[{answer}\\]"])
    raise ValueError(f"unknown closing style {style!r}; valid: {', '.join(CLOSING_STYLES)}")


def completion_for(form: Form, gold: str, style: str, rng: random.Random) -> tuple[str, str]:
    """``(completion, answer_as_written)`` for one form in one closing style."""
    avoid = set(re.findall(r"\d+", gold)) | set(re.findall(r"\d+", form.text)) | \
        set(re.findall(r"\d+", " ".join(form.hedge or ())))
    body = reasoning(rng, avoid)
    if form.kind == "near_draft_had_gold":
        body += f"\n\nAn earlier draft of this computation gave {gold}, but that used the wrong count."
    answer = _render(form, style)
    ending = close(answer, style, rng)
    if style == "answer_tag":
        return f"<think>\n{body}\n</think>\n{ending}", answer
    return f"{body}\n\n{ending}", answer


def generate(data_dir: str | Path | None = None, seed: int = 0, styles: tuple[str, ...] = CLOSING_STYLES,
             identity_styles: int = 2) -> list[Case]:
    """All cases for the gold answers in ``data_dir`` (raises ``DataNotFoundError`` when absent).

    Each form is closed in one style (rotating through ``styles`` from a per-gold random offset, so every style
    sees every kind); the gold itself is closed in ``identity_styles`` styles.
    """
    return list(iter_cases(load_gold_answers(data_dir), seed, styles, identity_styles))


def iter_cases(golds: list[tuple[str, str]], seed: int = 0, styles: tuple[str, ...] = CLOSING_STYLES,
               identity_styles: int = 2) -> Iterator[Case]:
    for source, gold in golds:
        rng = random.Random(f"{seed}:{source}")
        offset = rng.randrange(len(styles))
        k = 0
        for form in forms_for(gold, rng):
            reps = identity_styles if form.kind == "identity" else 1
            for _ in range(reps):
                style = styles[(offset + k) % len(styles)]
                k += 1
                completion, answer = completion_for(form, gold, style, rng)
                yield Case(completion, gold, form.equivalent, form.kind, style, answer, source)
