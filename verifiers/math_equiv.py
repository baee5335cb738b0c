"""Is an extracted answer mathematically the same as the reference?

Layers, cheapest first, so that the typical numeric answer never touches the CAS:

1. identical normalised strings;
2. both sides plain numbers (integer, decimal, ``a/b``, ``\\frac{a}{b}``, mixed, scientific) -> ``Fraction``;
3. structure (``parse_answer``): matrices, ``\\pm``, unions, sets ``\\{…\\}`` (unordered), tuples and intervals
   (ordered; bracket kinds must match, so ``[1,2)`` != ``(1,2)``), bare comma lists (multiple answers:
   unordered unless configured), relations, and single expressions via ``math_parse``;
4. expressions: exact equality, else numeric evaluation at 30 digits (constants) or at several fixed points
   (free symbols). Random-point testing is how a CAS answers "is a-b identically 0" in practice; unlike
   ``simplify`` it runs in bounded time on anything a model can write.

Floats: two values match within ``rel_tol`` when either side was written as a decimal; exact values
(integers, fractions, radicals, pi) must be equal to ~1e-20. An equation ``x=5`` matches the value ``5``.
"""

from __future__ import annotations

import cmath
import functools
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import sympy

from rlvr.verifiers.math_parse import MAX_CHARS, ParseError, parse_expression


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


def _wrapped(s: str) -> bool:
    """True when s[0] and s[-1] are one bracket pair enclosing everything (``[1,2)`` counts)."""
    if len(s) < 2 or s[0] not in "([" or s[-1] not in ")]":
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


@functools.lru_cache(maxsize=8192)
def parse_answer(s: str) -> Parsed:
    """Structure of a normalised answer; never raises (unknown syntax becomes ``text``)."""
    m = _MATRIX.match(s)
    if m:
        rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip()]
        try:
            cells = tuple(tuple(parse_expression(c.strip()) for c in r.split("&")) for r in rows)
            return Parsed("matrix", cells)
        except ParseError:
            return Parsed("text", s)
    for pm in ("\\pm", "\\mp"):
        if s.count(pm) == 1:
            plus, minus = ("+", "-") if pm == "\\pm" else ("-", "+")
            return Parsed("multi", (parse_answer(s.replace(pm, plus)), parse_answer(s.replace(pm, minus))))
    union = split_top_level(s, ("\\cup",))
    if len(union) > 1:
        return Parsed("multi", tuple(parse_answer(u) for u in union))
    if s.startswith("\\{") and s.endswith("\\}"):
        inner = s[2:-2].strip()
        return Parsed("set", tuple(parse_answer(p) for p in split_top_level(inner) if p) if inner else ())
    if _wrapped(s):
        items = split_top_level(s[1:-1])
        if len(items) > 1:
            return Parsed("seq", tuple(parse_answer(p) for p in items), s[0] + s[-1])
    items = split_top_level(s, (",", ";"))
    if len(items) > 1 and all(items):
        return Parsed("multi", tuple(parse_answer(p) for p in items))
    try:
        value = parse_expression(s)
    except ParseError:
        return Parsed("text", s)
    return Parsed("rel" if isinstance(value, sympy.core.relational.Relational) else "expr", value)


# -- scalar comparison -----------------------------------------------------------------------------------------------
_POINTS = (0.7390851332, 1.3247179572, 2.2360679775, -0.5772156649, 3.1415926536)


def _has_float(e) -> bool:
    return any(isinstance(a, sympy.Float) for a in sympy.preorder_traversal(e))


class _Unsupported(Exception):
    pass


_CMATH = {
    sympy.sin: cmath.sin, sympy.cos: cmath.cos, sympy.tan: cmath.tan, sympy.asin: cmath.asin,
    sympy.acos: cmath.acos, sympy.atan: cmath.atan, sympy.sinh: cmath.sinh, sympy.cosh: cmath.cosh,
    sympy.tanh: cmath.tanh, sympy.exp: cmath.exp, sympy.log: cmath.log,
    sympy.cot: lambda z: 1 / cmath.tan(z), sympy.sec: lambda z: 1 / cmath.cos(z), sympy.csc: lambda z: 1 / cmath.sin(z),
}


def _approx(e, subs: dict) -> complex:
    """Double-precision value of ``e``; raises ``OverflowError``/``ZeroDivisionError``/``_Unsupported``.

    Why not ``evalf`` directly: mpmath happily works on ``exp(exp(exp(exp(100))))`` for minutes. Doubles fail in
    nanoseconds on anything that large, and a finite double bounds every intermediate, which makes the
    follow-up 30-digit ``evalf`` safe.
    """
    if e.is_Number:
        if e in (sympy.oo, -sympy.oo, sympy.zoo, sympy.nan):
            raise OverflowError("infinite")
        return complex(float(e.p) / float(e.q)) if e.is_Rational else complex(float(e))
    if e.is_Symbol:
        if e not in subs:
            raise _Unsupported(str(e))
        return subs[e]
    if e is sympy.pi:
        return complex(cmath.pi)
    if e is sympy.E:
        return complex(cmath.e)
    if e is sympy.I:
        return 1j
    args = e.args
    if e.is_Add:
        return sum((_approx(a, subs) for a in args), 0j)
    if e.is_Mul:
        out = 1 + 0j
        for a in args:
            out *= _approx(a, subs)
        return out
    if e.is_Pow:
        base, exp = _approx(args[0], subs), _approx(args[1], subs)
        if base == 0:
            if exp.real <= 0:
                raise ZeroDivisionError("0 to a non-positive power")
            return 0j
        if exp.real * math.log(abs(base)) > 700:
            raise OverflowError("power too large")
        return base ** exp
    if isinstance(e, sympy.Abs):
        return complex(abs(_approx(args[0], subs)))
    if isinstance(e, sympy.factorial):
        n = _approx(args[0], subs)
        if n.imag or n.real > 170:
            raise OverflowError("factorial too large")
        return complex(math.gamma(n.real + 1))
    fn = _CMATH.get(type(e))
    if fn is not None and len(args) == 1:
        z = _approx(args[0], subs)
        if type(e) is sympy.exp and z.real > 700:
            raise OverflowError("exp too large")
        return complex(fn(z))
    raise _Unsupported(type(e).__name__)


def _value(e, subs: dict | None = None) -> complex | None:
    try:
        v = _approx(e, subs or {})
    except (OverflowError, ZeroDivisionError, ValueError, TypeError, _Unsupported):
        return None
    if v != v or abs(v) == float("inf"):
        return None
    return v


def _precise_equal(a, b, tol: float) -> bool:
    """30-digit check for exact values that agree to double precision; only called once doubles were finite."""
    try:
        va, vb = complex(a.evalf(30)), complex(b.evalf(30))
    except (TypeError, ValueError, OverflowError, ZeroDivisionError, AttributeError):
        return False
    return _close(va, vb, tol)


def _close(a: complex, b: complex, tol: float) -> bool:
    # The absolute floor only matters next to zero, where a relative test is meaningless.
    return abs(a - b) <= tol * max(abs(a), abs(b)) or abs(a - b) <= 1e-15


def exprs_equal(a, b, rel_tol: float) -> bool:
    if a == b:
        return True
    if a.is_Rational and b.is_Rational:
        return False
    if a.has(sympy.oo, -sympy.oo, sympy.zoo) or b.has(sympy.oo, -sympy.oo, sympy.zoo):
        return False  # infinities only match structurally (above)
    exact = not (_has_float(a) or _has_float(b))
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    if not symbols:
        va, vb = _value(a), _value(b)
        if va is None or vb is None or not _close(va, vb, max(rel_tol, 1e-9)):
            return False
        # Doubles agree; exact answers (sqrt(2) vs 1.41421356237) must also agree at 30 digits.
        return _precise_equal(a, b, 1e-20) if exact else _close(va, vb, rel_tol)
    if len(symbols) > 10:
        return False
    checked = 0
    for k in range(4):
        subs = {s: complex(_POINTS[(k + j) % len(_POINTS)] + 0.37 * j) for j, s in enumerate(symbols)}
        va, vb = _value(a, subs), _value(b, subs)
        if va is None or vb is None:
            continue
        if not _close(va, vb, 1e-9 if exact else max(rel_tol, 1e-9)):
            return False
        checked += 1
    return checked >= 2


def _lone_symbol_value(rel) -> Any | None:
    """``x = 5`` or ``5 = x`` -> 5 (the value a bare reference would state)."""
    if not isinstance(rel, sympy.Eq):
        return None
    lhs, rhs = rel.lhs, rel.rhs
    if isinstance(lhs, sympy.Symbol) and lhs not in rhs.free_symbols:
        return rhs
    if isinstance(rhs, sympy.Symbol) and rhs not in lhs.free_symbols:
        return lhs
    return None


_FLIP = {sympy.Gt: sympy.Lt, sympy.Ge: sympy.Le}


def relations_equal(a, b, rel_tol: float) -> bool:
    if isinstance(a, sympy.Eq) and isinstance(b, sympy.Eq):
        va, vb = _lone_symbol_value(a), _lone_symbol_value(b)
        if va is not None and vb is not None:
            sa = a.lhs if isinstance(a.lhs, sympy.Symbol) and a.lhs not in a.rhs.free_symbols else a.rhs
            sb = b.lhs if isinstance(b.lhs, sympy.Symbol) and b.lhs not in b.rhs.free_symbols else b.rhs
            return sa == sb and exprs_equal(va, vb, rel_tol)
        fa, fb = a.lhs - a.rhs, b.lhs - b.rhs
        # Same solution set: f_a = c * f_b for a nonzero constant c.
        return exprs_equal(fa, fb, rel_tol) or exprs_equal(fa, -fb, rel_tol) or _proportional(fa, fb)
    ta, tb = type(a), type(b)
    la, ra = (a.rhs, a.lhs) if ta in _FLIP else (a.lhs, a.rhs)
    lb, rb = (b.rhs, b.lhs) if tb in _FLIP else (b.lhs, b.rhs)
    return _FLIP.get(ta, ta) is _FLIP.get(tb, tb) and exprs_equal(la, lb, rel_tol) and exprs_equal(ra, rb, rel_tol)


def _proportional(fa, fb) -> bool:
    symbols = sorted(fa.free_symbols | fb.free_symbols, key=str)
    if not symbols or len(symbols) > 10:
        return False
    ratios = []
    for k in range(3):
        subs = {s: complex(_POINTS[(k + j) % len(_POINTS)] + 0.37 * j) for j, s in enumerate(symbols)}
        va, vb = _value(fa, subs), _value(fb, subs)
        if va is None or vb is None or abs(vb) < 1e-15:
            return False
        ratios.append(va / vb)
    return abs(ratios[0]) > 1e-12 and all(_close(r, ratios[0], 1e-9) for r in ratios)


# -- structural comparison -------------------------------------------------------------------------------------------
def _canon_text(s: str) -> str:
    s = re.sub(r"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\s+", "", s).lower()
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


def parsed_equal(p: Parsed, r: Parsed, rel_tol: float, ordered_lists: bool = False) -> bool:
    """Structural equality of a prediction ``p`` and a reference ``r``."""
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
        value = _lone_symbol_value(rel)
        return value is not None and exprs_equal(value, expr, rel_tol)
    if kinds == {"seq"}:
        return p.brackets == r.brackets and len(p.value) == len(r.value) and all(
            parsed_equal(x, y, rel_tol, ordered_lists) for x, y in zip(p.value, r.value))
    if kinds == {"multi"} and ordered_lists:
        return len(p.value) == len(r.value) and all(
            parsed_equal(x, y, rel_tol, ordered_lists) for x, y in zip(p.value, r.value))
    if kinds <= {"set", "multi"}:
        return _unordered_equal(p.value, r.value, rel_tol, ordered_lists)
    if kinds == {"matrix"}:
        if len(p.value) != len(r.value) or any(len(a) != len(b) for a, b in zip(p.value, r.value)):
            return False
        return all(exprs_equal(x, y, rel_tol) for ra, rb in zip(p.value, r.value) for x, y in zip(ra, rb))
    return False


def equivalent(pred: str, ref: str, rel_tol: float = 1e-6, ordered_lists: bool = False) -> tuple[bool, str]:
    """``(equal, how)`` for two *normalised* answers; ``how`` names the layer that decided."""
    if pred == ref:
        return True, "exact_string"
    if len(pred) > MAX_CHARS or len(ref) > MAX_CHARS:  # not an answer; structure checks would cost O(n^2)
        return False, "too_long"
    fp, fr = fast_number(pred), fast_number(ref)
    if fp is not None and fr is not None:
        return numbers_equal(fp, fr, rel_tol), "fast_number"
    p, r = parse_answer(pred), parse_answer(ref)
    how = "text" if "text" in (p.kind, r.kind) else "symbolic"
    return parsed_equal(p, r, rel_tol, ordered_lists), how
