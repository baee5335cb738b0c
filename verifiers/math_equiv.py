"""Is an extracted answer mathematically the same as the reference?

Layers, cheapest first, so that the typical numeric answer never touches the CAS:

1. identical normalised strings;
2. both sides plain numbers (integer, decimal, ``a/b``, ``\\frac{a}{b}``, mixed, scientific) -> ``Fraction``;
   a reference ``3,5`` / ``0,25`` (not a 3-digit group) is a decimal comma against a decimal prediction;
3. structure (``parse_answer``): matrices (any environment, ``\\left[\\begin{array}..\\right]`` too), unions,
   sets ``\\{…\\}`` or ``{…}`` (unordered; a ``\\pm`` item is two elements), tuples and intervals (ordered;
   bracket kinds must match, so ``[1,2)`` != ``(1,2)``), bare comma lists (multiple answers: unordered unless
   configured), ``\\pm``, labelled answers (``(p,q)=(3,2)`` is p=3, q=2; ``V_1:V_2=11:21`` and ``f(x)=..``
   are their right-hand side), ratios and times ``11:21``, relations (chains ``a<x\\le b`` included), and single
   expressions via ``math_parse``;
4. scalars (``math_scalar``): exact equality, else numeric evaluation; equations match when they have the
   same solution set (``2x+4y-3=0`` = ``y=-\\frac12x+\\frac34``), ``x=5`` / ``AB=4`` match the value;
5. conditions (``math_relations``): an inequality, chain, ``\\neq`` or union is compared as a set of reals, so
   ``x \\geq 5`` = ``[5,\\infty)`` and ``-x>-1`` = ``x<1``;
6. words (``\\text{The circles}`` = ``circle``): case, spacing, a leading article and a plural ``s`` ignored.

Each layer can only add an equality it can establish; anything it cannot read falls back to the verdict of the
layers above, and nothing here catches more than ``ParseError`` (an internal bug surfaces as an error).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import sympy

from rlvr.verifiers.math_parse import MAX_CHARS, ParseError, parse_expression
from rlvr.verifiers.math_relations import bears_inequality, regions_equal
from rlvr.verifiers.math_scalar import expression_value, exprs_equal, labelled_value, relations_equal


@dataclass(frozen=True)
class Parsed:
    kind: str            # expr | rel | seq | set | multi | matrix | text
    value: Any           # sympy object, tuple[Parsed, ...], tuple of rows, or the text
    brackets: str = ""   # for seq: opening+closing bracket, e.g. "[)"


_INT = re.compile(r"^[-+]?\d+$")
_DEC = re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+)$")
_SCI = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+))[eE]([-+]?\d{1,4})$")
_SLASH = re.compile(r"^([-+]?)(\d+)/(\d+)$")
_FRAC = re.compile(r"^([-+]?)\\frac(?:\{(\d+)\}|(\d))(?:\{(\d+)\}|(\d))$")
_MIXED = re.compile(r"^([-+]?)\((\d+)\+\\frac\{(\d+)\}\{(\d+)\}\)$")
_MATRIX = re.compile(r"^\\begin\{([pbBvV]?matrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}$", re.DOTALL)


def fast_number(s: str) -> tuple[Fraction, bool] | None:
    """``(value, written_as_decimal)`` for plain numbers, without sympy; None for anything else."""
    if _INT.match(s):
        return Fraction(int(s)), False
    if _DEC.match(s):
        return Fraction(s), True
    m = _SCI.match(s)
    if m:
        return Fraction(m.group(1)) * Fraction(10) ** int(m.group(2)), True
    for rx in (_SLASH, _FRAC):
        m = rx.match(s)
        if m:
            groups = [g for g in m.groups()[1:] if g is not None]
            if int(groups[1]) == 0:
                return None
            value = Fraction(int(groups[0]), int(groups[1]))
            return (-value if m.group(1) == "-" else value), False
    m = _MIXED.match(s)
    if m and int(m.group(4)) != 0:
        value = int(m.group(2)) + Fraction(int(m.group(3)), int(m.group(4)))
        return (-value if m.group(1) == "-" else value), False
    return None


def numbers_equal(a: tuple[Fraction, bool], b: tuple[Fraction, bool], rel_tol: float) -> bool:
    if a[0] == b[0]:
        return True
    if a[1] or b[1]:
        return abs(a[0] - b[0]) <= Fraction(rel_tol) * max(abs(a[0]), abs(b[0]))
    return False


def split_top_level(s: str, seps: tuple[str, ...] = (",",)) -> list[str]:
    """Split at separators outside any bracket; ``\\{``/``\\}`` count as brackets."""
    parts, depth, start, i, n = [], 0, 0, 0, len(s)
    while i < n:
        if s.startswith("\\{", i):
            depth += 1
            i += 2
            continue
        if s.startswith("\\}", i):
            depth -= 1
            i += 2
            continue
        c = s[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            for sep in seps:
                if s.startswith(sep, i):
                    parts.append(s[start:i])
                    start = i + len(sep)
                    i += len(sep) - 1
                    break
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


def _wrapped(s: str, opens: str = "([", closes: str = ")]") -> bool:
    """True when s[0] and s[-1] are one bracket pair enclosing everything (``[1,2)`` counts)."""
    if len(s) < 2 or s[0] not in opens or s[-1] not in closes:
        return False
    depth = 0
    for i, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return False
    return depth == 0


_NAME = re.compile(r"^[a-zA-Z](?:_(?:\{\w+\}|\w))?$")
_FUNC_LABEL = re.compile(r"^[a-zA-Z](?:_(?:\{\w+\}|\w))?\([a-z](?:,[a-z])*\)$")


def _items(parts: list[str]) -> tuple[Parsed, ...]:
    r"""Parsed items of a list; a ``\pm`` item stands for its two values (``\{\pm 1, 2\}`` has three)."""
    out: list[Parsed] = []
    for part in parts:
        item = parse_answer(part)
        out.extend(item.value if item.kind == "multi" and item.brackets == "pm" else (item,))
    return tuple(out)


def _labelled(s: str) -> Parsed | None:
    """``(p,q)=(3,2)`` -> p=3, q=2; ``V_1:V_2=11:21`` -> 11:21; ``f(x)=2x+1`` -> 2x+1; None when not labelled."""
    sides = split_top_level(s, ("=",))
    if len(sides) != 2 or not all(sides) or sides[0][-1] in "<>!" or sides[1][0] == "=":
        return None
    lhs, rhs = sides
    if _wrapped(lhs) and _wrapped(rhs):
        names, values = split_top_level(lhs[1:-1]), split_top_level(rhs[1:-1])
        if len(names) == len(values) > 1 and all(_NAME.match(n) for n in names):
            try:
                eqs = [sympy.Eq(parse_expression(n), parse_expression(v), evaluate=False)
                       for n, v in zip(names, values)]
            except ParseError:
                return parse_answer(rhs)
            return Parsed("multi", tuple(Parsed("rel", e) for e in eqs), "labels")
    ratio = split_top_level(lhs, (":",))
    if (len(ratio) > 1 and all(_NAME.match(n) for n in ratio)) or _FUNC_LABEL.match(lhs):
        return parse_answer(rhs)
    return None


def _parse_matrix(m: re.Match) -> Parsed:
    rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip()]
    try:
        cells = tuple(tuple(parse_expression(c.strip()) for c in r.split("&")) for r in rows)
    except ParseError:
        return Parsed("text", m.group(0))
    return Parsed("matrix", cells)


@functools.lru_cache(maxsize=8192)
def parse_answer(s: str) -> Parsed:
    """Structure of a normalised answer; never raises (unknown syntax becomes ``text``)."""
    m = _MATRIX.match(s[1:-1].strip() if _wrapped(s) and s[1:].startswith("\\begin{array}") else s)
    if m:  # \left[\begin{array}{cc}...\end{array}\right]: the brackets are the matrix's own
        return _parse_matrix(m)
    union = split_top_level(s, ("\\cup",))
    # "A \cup B, B" (a hedge joined from two spans) is a list whose first item is a union, not a union
    if len(union) > 1 and len(split_top_level(s, (",", ";"))) == 1:
        return Parsed("multi", tuple(parse_answer(u) for u in union), "cup")
    if s.startswith("\\{") and s.endswith("\\}"):
        inner = s[2:-2].strip()
        return Parsed("set", _items([p for p in split_top_level(inner) if p]) if inner else ())
    if _wrapped(s, "{", "}") and len(split_top_level(s[1:-1])) > 1:  # {1,2,3}: a set written without \{
        return Parsed("set", _items([p for p in split_top_level(s[1:-1]) if p]))
    if _wrapped(s):
        items = split_top_level(s[1:-1])
        if len(items) > 1:
            return Parsed("seq", tuple(parse_answer(p) for p in items), s[0] + s[-1])
    items = split_top_level(s, (",", ";"))
    if len(items) > 1 and all(items):
        return Parsed("multi", _items(items))
    for pm in ("\\pm", "\\mp"):
        if s.count(pm) == 1:
            plus, minus = ("+", "-") if pm == "\\pm" else ("-", "+")
            return Parsed("multi", (parse_answer(s.replace(pm, plus)), parse_answer(s.replace(pm, minus))), "pm")
    labelled = _labelled(s)
    if labelled is not None:
        return labelled
    ratio = split_top_level(s, (":",))
    if len(ratio) > 1 and all(ratio):  # 11:21, 12:00
        return Parsed("seq", tuple(parse_answer(p) for p in ratio), "::")
    try:
        value = parse_expression(s)
    except ParseError:
        return Parsed("text", s)
    rel = isinstance(value, (sympy.core.relational.Relational, sympy.And))
    return Parsed("rel" if rel else "expr", value)


# -- structural comparison -------------------------------------------------------------------------------------------
_ARTICLES = ("a", "an", "the")


def _canon_text(s: str) -> str:
    """Words compared without case, spacing, a leading article or a plural ``s`` (``The circles`` = ``circle``)."""
    s = re.sub(r"\\(?:text|mathrm|textbf|mbox|textnormal)\{([^{}]*)\}", r"\1", s)
    words = s.lower().split()
    if len(words) > 1 and words[0] in _ARTICLES and len(words[1]) >= 3:
        words = words[1:]
    words = [w[:-1] if len(w) >= 4 and w.isalpha() and w.endswith("s") and not w.endswith("ss") else w
             for w in words]
    s = "".join(words)
    for _ in range(3):  # "((C))" -> "c"; bounded, each check is O(len)
        if len(s) > 2 and s[0] == "(" and s[-1] == ")" and _wrapped(s):
            s = s[1:-1]
    return s


def _unordered_equal(xs: tuple[Parsed, ...], ys: tuple[Parsed, ...], rel_tol: float, ordered_lists: bool) -> bool:
    if len(xs) != len(ys):
        return False
    used = [False] * len(ys)
    for x in xs:
        for j, y in enumerate(ys):
            if not used[j] and parsed_equal(x, y, rel_tol, ordered_lists):
                used[j] = True
                break
        else:
            return False
    return True


def _named_components(m: Parsed) -> tuple[Any, ...] | None:
    """``x=1, y=2`` (or a labelled tuple) -> the values in order, when every item names a different variable."""
    found = [labelled_value(item.value) if item.kind == "rel" else None for item in m.value]
    if len(found) < 2 or None in found or len({label for label, _ in found}) != len(found):
        return None
    return tuple(value for _, value in found)


def _structural_equal(p: Parsed, r: Parsed, rel_tol: float, ordered_lists: bool) -> bool:
    kinds = {p.kind, r.kind}
    if "text" in kinds:
        return _canon_text(p.value if p.kind == "text" else str(p.value)) == _canon_text(
            r.value if r.kind == "text" else str(r.value)) if kinds == {"text"} else False
    if kinds == {"expr"}:
        return exprs_equal(p.value, r.value, rel_tol)
    if kinds == {"rel"}:
        return relations_equal(p.value, r.value, rel_tol)
    if kinds == {"rel", "expr"}:
        rel, expr = (p.value, r.value) if p.kind == "rel" else (r.value, p.value)
        found = labelled_value(rel)
        if found is not None:
            return exprs_equal(found[1], expr, rel_tol)
        value = expression_value(rel) if not getattr(expr, "free_symbols", True) else None
        return value is not None and exprs_equal(value, expr, rel_tol)  # "a+b=7" vs "7"
    if kinds == {"seq"}:
        return p.brackets == r.brackets and len(p.value) == len(r.value) and all(
            parsed_equal(x, y, rel_tol, ordered_lists) for x, y in zip(p.value, r.value))
    if kinds == {"multi", "seq"}:  # "x=1, y=2" vs "(1, 2)": named components in the order written
        multi, seq = (p, r) if p.kind == "multi" else (r, p)
        values = _named_components(multi)
        return values is not None and seq.brackets == "()" and len(values) == len(seq.value) and all(
            parsed_equal(Parsed("expr", v), y, rel_tol, ordered_lists) for v, y in zip(values, seq.value))
    if kinds == {"multi"} and ordered_lists and p.brackets == r.brackets == "":
        return len(p.value) == len(r.value) and all(
            parsed_equal(x, y, rel_tol, ordered_lists) for x, y in zip(p.value, r.value))
    if kinds <= {"set", "multi"}:
        named = [_named_components(x) if x.kind == "multi" else None for x in (p, r)]
        if (named[0] is None) != (named[1] is None):  # "x=2, y=1" is a point: ordered, and never a set
            (values,), other = [v for v in named if v is not None], p if named[0] is None else r
            return other.kind == "multi" and len(values) == len(other.value) and all(
                y.kind != "rel" and parsed_equal(Parsed("expr", v), y, rel_tol, ordered_lists)
                for v, y in zip(values, other.value))
        return _unordered_equal(p.value, r.value, rel_tol, ordered_lists)
    if kinds == {"matrix"}:
        if len(p.value) != len(r.value) or any(len(a) != len(b) for a, b in zip(p.value, r.value)):
            return False
        return all(exprs_equal(x, y, rel_tol) for ra, rb in zip(p.value, r.value) for x, y in zip(ra, rb))
    return False


def parsed_equal(p: Parsed, r: Parsed, rel_tol: float, ordered_lists: bool = False) -> bool:
    """Equality of a prediction ``p`` and a reference ``r``: structure first, then as sets of reals when either
    side is a condition (``x \\geq 5`` vs ``[5,\\infty)``, ``-x > -1`` vs ``x < 1``, ``x \\neq 3`` vs a union)."""
    if _structural_equal(p, r, rel_tol, ordered_lists):
        return True
    if {p.kind, r.kind} <= {"rel", "seq", "multi"} and (bears_inequality(p) or bears_inequality(r)):
        return regions_equal(p, r, rel_tol)
    return False


_DECIMAL_COMMA = re.compile(r"^(-?)(0|\d+(?=,(?:\d{1,2}|\d{4,})$)|0),(\d+)$")
_WORDS = re.compile(r"^[A-Za-z]{3,}(?: [A-Za-z]+)*$")


def equivalent(pred: str, ref: str, rel_tol: float = 1e-6, ordered_lists: bool = False,
               decimal_comma: bool = True) -> tuple[bool, str]:
    """``(equal, how)`` for two *normalised* answers; ``how`` names the layer that decided.

    ``decimal_comma`` allows a reference ``3,5`` to be read as 3.5 against a decimal prediction; the verifier
    passes False when the reference was written with a space after the comma (``3, 5``, a list) or when
    ``MathConfig.decimal_comma`` is off.
    """
    if pred == ref:
        return True, "exact_string"
    if len(pred) > MAX_CHARS or len(ref) > MAX_CHARS:  # not an answer; structure checks would cost O(n^2)
        return False, "too_long"
    fp, fr = fast_number(pred), fast_number(ref)
    if fp is not None and fr is not None:
        return numbers_equal(fp, fr, rel_tol), "fast_number"
    comma = _DECIMAL_COMMA.match(ref) if decimal_comma else None
    if comma and fp is not None and fp[1] and "." in pred:
        # "3,5" in the reference is a decimal comma when the prediction is a decimal (a 3-digit group, "1,234",
        # stays a thousands separator); a prediction "3,5" is never read so: it may be two answers.
        return numbers_equal(fp, (Fraction(f"{comma.group(1)}{comma.group(2)}.{comma.group(3)}"), True),
                             rel_tol), "decimal_comma"
    p, r = parse_answer(pred), parse_answer(ref)
    how = "text" if "text" in (p.kind, r.kind) else "symbolic"
    if parsed_equal(p, r, rel_tol, ordered_lists):
        return True, how
    if _WORDS.match(pred) and _WORDS.match(ref):  # "Yes" vs "yes": words, even where they parse as products
        return _canon_text(pred) == _canon_text(ref), "text"
    return False, how
