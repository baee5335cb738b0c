"""Scalar comparison for the math verifier: are two sympy expressions (or two equations) the same value?

Exact equality first, else numeric evaluation: at 30 digits for constants, at several fixed points for free
symbols. Random-point testing is how a CAS answers "is a-b identically 0" in practice; unlike ``simplify`` it
runs in bounded time on anything a model can write. Evaluation goes through doubles first (``_approx``), which
fail in nanoseconds on huge values, so the follow-up 30-digit ``evalf`` only ever sees bounded numbers.

Floats: two values match within ``rel_tol`` when either side was written as a decimal; exact values
(integers, fractions, radicals, pi) must be equal to ~1e-20.
"""

from __future__ import annotations

import cmath
import math
from typing import Any

import sympy

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


def numeric_value(e, subs: dict | None = None) -> complex | None:
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
    return close(va, vb, tol)


def close(a: complex, b: complex, tol: float) -> bool:
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
        va, vb = numeric_value(a), numeric_value(b)
        if va is None or vb is None or not close(va, vb, max(rel_tol, 1e-9)):
            return False
        # Doubles agree; exact answers (sqrt(2) vs 1.41421356237) must also agree at 30 digits.
        return _precise_equal(a, b, 1e-20) if exact else close(va, vb, rel_tol)
    if len(symbols) > 10:
        return False
    checked = 0
    for k in range(4):
        subs = {s: complex(_POINTS[(k + j) % len(_POINTS)] + 0.37 * j) for j, s in enumerate(symbols)}
        va, vb = numeric_value(a, subs), numeric_value(b, subs)
        if va is None or vb is None:
            continue
        if not close(va, vb, 1e-9 if exact else max(rel_tol, 1e-9)):
            return False
        checked += 1
    return checked >= 2


def _is_label(e) -> bool:
    """A name that labels a value: ``x``, ``V_1``, or a product of names written together (``AB``)."""
    return isinstance(e, sympy.Symbol) or (e.is_Mul and len(e.args) <= 4 and all(isinstance(a, sympy.Symbol)
                                                                                 for a in e.args))


def labelled_value(rel) -> tuple[Any, Any] | None:
    """``x = 5``, ``5 = x``, ``AB = 4`` -> (label, value): the value a bare reference would state."""
    if not isinstance(rel, sympy.Eq):
        return None
    lhs, rhs = rel.lhs, rel.rhs
    if _is_label(lhs) and not (lhs.free_symbols & rhs.free_symbols):
        return lhs, rhs
    if _is_label(rhs) and not (rhs.free_symbols & lhs.free_symbols):
        return rhs, lhs
    return None


def expression_value(rel) -> Any | None:
    """``a+b = 7`` / ``7 = m+n`` -> 7: an expression in two or more variables stated equal to a constant.

    The labelled answer to "find a+b". Only with two or more distinct variables: ``2a = 3`` names no value (it
    is an equation whose solution is a = 3/2), so it is never read as "3". The caller also demands a constant
    reference.
    """
    if not isinstance(rel, sympy.Eq):
        return None
    for expr, value in ((rel.lhs, rel.rhs), (rel.rhs, rel.lhs)):
        if not value.free_symbols and len(expr.free_symbols) >= 2:
            return value
    return None


_FLIP = {sympy.Gt: sympy.Lt, sympy.Ge: sympy.Le}


def relations_equal(a, b, rel_tol: float) -> bool:
    """Structural equality of two relations; equations also match when they have the same solution set."""
    if isinstance(a, sympy.Eq) and isinstance(b, sympy.Eq):
        la, lb = labelled_value(a), labelled_value(b)
        if la is not None and lb is not None and la[0] == lb[0]:
            return exprs_equal(la[1], lb[1], rel_tol)
        fa, fb = a.lhs - a.rhs, b.lhs - b.rhs
        # Same solution set: f_a = c * f_b for a nonzero constant c ("x = 2y" and "y = x/2" included).
        return exprs_equal(fa, fb, rel_tol) or exprs_equal(fa, -fb, rel_tol) or _proportional(fa, fb)
    if not (isinstance(a, sympy.core.relational.Relational) and isinstance(b, sympy.core.relational.Relational)):
        return False
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
        va, vb = numeric_value(fa, subs), numeric_value(fb, subs)
        if va is None or vb is None or abs(vb) < 1e-15:
            return False
        ratios.append(va / vb)
    return abs(ratios[0]) > 1e-12 and all(close(r, ratios[0], 1e-9) for r in ratios)
