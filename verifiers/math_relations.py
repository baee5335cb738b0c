"""Inequalities, chains, intervals and unions as subsets of the real line, so ``x \\geq 5`` = ``[5,\\infty)``.

A *region* is a sorted tuple of disjoint pieces ``(lo, hi, lo_closed, hi_closed)`` with sympy endpoints (``-oo``
and ``oo`` included; a point is ``(p, p, True, True)``). It comes from:

- a relation in one variable whose two sides differ by a polynomial of degree <= 4 (``-x > -1``, ``x^2 < 4``,
  ``x \\neq 3``): the real roots split the line, and the sign at one point of each piece decides it;
- a chain ``-2 \\le x < 7`` (the parser's ``And`` of two inequalities): the intersection of both;
- an interval ``[a, b)`` (two-item ``seq`` with real endpoints, lo <= hi);
- a union (``\\cup``), or a list of disjoint conditions (``x < 2, x > 3``; an overlapping list such as
  ``x > 1, x < 5`` may mean "and", so it is not read as a union): the merged pieces.

Guards: the polynomial's degree and coefficient size are bounded before sympy finds roots, irrational roots
of cubics (``CRootOf``) are compared numerically or refused, and anything else returns None (not a region):
the caller then keeps its structural verdict, so this layer can only add equivalences it can prove.
"""

from __future__ import annotations

import itertools

import sympy

from rlvr.verifiers.math_scalar import exprs_equal, numeric_value

Region = tuple[tuple[object, object, bool, bool], ...]
MAX_DEGREE = 4
MAX_COEFF_DIGITS = 30
_INEQUALITIES = (sympy.Lt, sympy.Le, sympy.Gt, sympy.Ge, sympy.Ne, sympy.Eq)
_HOLDS = {
    sympy.Lt: lambda v: v < 0, sympy.Le: lambda v: v <= 0, sympy.Gt: lambda v: v > 0, sympy.Ge: lambda v: v >= 0,
    sympy.Ne: lambda v: v != 0, sympy.Eq: lambda v: v == 0,
}


def _real(e) -> float | None:
    """Float value of a real constant (``±inf`` for infinities), None when not a real number."""
    if e is sympy.oo:
        return float("inf")
    if e is sympy.S.NegativeInfinity:
        return float("-inf")
    if e.free_symbols:
        return None
    v = numeric_value(e)
    if v is None or abs(v.imag) > 1e-12 * max(1.0, abs(v.real)):
        return None
    return v.real


def _roots(f, x) -> list | None:
    """Sorted distinct real roots of polynomial ``f`` in ``x``, or None when out of bounds / not a polynomial."""
    try:
        poly = sympy.Poly(f, x)
    except (sympy.PolynomialError, sympy.GeneratorsNeeded, TypeError, ValueError):
        return None
    coeffs = poly.all_coeffs()
    if poly.degree() == 1 or not 1 <= poly.degree() <= MAX_DEGREE:
        return _linear_root(coeffs) if poly.degree() == 1 else None
    if not (poly.domain.is_QQ or poly.domain.is_ZZ):
        return None
    if any(len(str(abs(c.p))) > MAX_COEFF_DIGITS or len(str(c.q)) > MAX_COEFF_DIGITS for c in coeffs):
        return None
    roots = []
    for r in poly.real_roots():
        if isinstance(r, sympy.CRootOf):
            return None
        if not roots or r != roots[-1]:
            roots.append(r)
    return roots


def _linear_root(coeffs) -> list | None:
    """Root of ``a*x + b`` for any real constants (``sqrt(2)``, decimals), without root finding."""
    a, b = coeffs
    if _real(a) in (None, 0.0) or _real(b) is None:
        return None
    return [-b / a]


def _degree_bound(e) -> float:
    """Upper bound on the polynomial degree of ``e`` (inf when not a polynomial), without expanding it."""
    if not e.free_symbols:
        return 0
    if e.is_Symbol:
        return 1
    if e.is_Add:
        return max(_degree_bound(a) for a in e.args)
    if e.is_Mul:
        return sum(_degree_bound(a) for a in e.args)
    if e.is_Pow and e.exp.is_Integer and 0 <= e.exp <= MAX_DEGREE:
        return _degree_bound(e.base) * int(e.exp)
    return float("inf")


def relation_region(rel) -> tuple[sympy.Symbol, Region] | None:
    """``(variable, region)`` of a relation in one variable, or None."""
    if type(rel) not in _HOLDS:
        return None
    if len(rel.free_symbols) != 1 or sympy.count_ops(rel) > 60 or \
            max(_degree_bound(rel.lhs), _degree_bound(rel.rhs)) > MAX_DEGREE:
        return None
    f = sympy.expand(rel.lhs - rel.rhs)
    if len(f.free_symbols) != 1:
        return None
    (x,) = f.free_symbols
    if f.has(sympy.oo, sympy.S.NegativeInfinity, sympy.zoo):
        return None
    roots = _roots(f, x)
    if roots is None:
        return None
    holds = _HOLDS[type(rel)]
    floats = [float(r) for r in roots]
    samples = ([floats[0] - 1.0] + [(a + b) / 2 for a, b in itertools.pairwise(floats)] + [floats[-1] + 1.0]
               if floats else [0.0])
    gaps = []
    for s in samples:
        v = numeric_value(f, {x: complex(s)})
        if v is None:
            return None
        gaps.append(holds(v.real))
    ends = [sympy.S.NegativeInfinity, *roots, sympy.oo]
    at_root = holds(0)
    pieces = []
    for k, inside in enumerate(gaps):
        if inside:
            pieces.append((ends[k], ends[k + 1], False, False))
        if k < len(roots) and at_root:
            pieces.append((roots[k], roots[k], True, True))
    return x, _merge(pieces)


def _key(piece) -> tuple[float, int]:
    return _real(piece[0]), 0 if piece[2] else 1


def _merge(pieces: list) -> Region | None:
    """Sort and merge touching/overlapping pieces; None when an endpoint is not a real number."""
    for lo, hi, lo_c, hi_c in pieces:
        lf, hf = _real(lo), _real(hi)
        if lf is None or hf is None or lf > hf or (lf == hf and not (lo_c and hi_c)):
            return None
    out: list = []
    for piece in sorted(pieces, key=_key):
        if out:
            lo, hi, lo_c, hi_c = out[-1]
            hf, nf = _real(hi), _real(piece[0])
            if nf < hf or (nf == hf and (hi_c or piece[2])):
                nh = _real(piece[1])
                if nh > hf or (nh == hf and piece[3]):
                    out[-1] = (lo, piece[1], lo_c, piece[3] or (nh == hf and hi_c))
                continue
        out.append(piece)
    return tuple(out)


def _intersect(a: Region, b: Region) -> Region | None:
    pieces = []
    for alo, ahi, alc, ahc in a:
        for blo, bhi, blc, bhc in b:
            fa, fb = _real(alo), _real(blo)
            lo, lo_c = (alo, alc) if fa > fb else (blo, blc) if fb > fa else (alo, alc and blc)
            ga, gb = _real(ahi), _real(bhi)
            hi, hi_c = (ahi, ahc) if ga < gb else (bhi, bhc) if gb < ga else (ahi, ahc and bhc)
            lf, hf = _real(lo), _real(hi)
            if lf < hf or (lf == hf and lo_c and hi_c):
                pieces.append((lo, hi, lo_c, hi_c))
    return _merge(pieces)


def _interval(items, brackets: str) -> Region | None:
    if len(items) != 2 or brackets not in ("()", "[]", "[)", "(]") or any(p.kind != "expr" for p in items):
        return None
    lo, hi = items[0].value, items[1].value
    return _merge([(lo, hi, brackets[0] == "[" and lo is not sympy.S.NegativeInfinity,
                    brackets[1] == "]" and hi is not sympy.oo)])


def region(p, depth: int = 0) -> tuple[sympy.Symbol | None, Region] | None:
    """``(variable or None, region)`` of a parsed answer (duck-typed ``Parsed``), or None."""
    if depth > 3:
        return None
    if p.kind == "seq":
        found = _interval(p.value, p.brackets)
        return None if found is None else (None, found)
    if p.kind == "rel" and isinstance(p.value, sympy.And):
        parts = [relation_region(r) for r in p.value.args]
        if len(parts) != 2 or None in parts or parts[0][0] != parts[1][0]:
            return None
        both = _intersect(parts[0][1], parts[1][1])
        return None if both is None else (parts[0][0], both)
    if p.kind == "rel":
        return relation_region(p.value)
    if p.kind == "multi":
        parts = [region(item, depth + 1) for item in p.value]
        if not parts or None in parts:
            return None
        names = {name for name, _ in parts if name is not None}
        if len(names) > 1:
            return None
        pieces = [piece for _, r in parts for piece in r]
        merged = _merge(pieces)
        if merged is None or (p.brackets != "cup" and len(merged) != len(pieces)):
            # "x>1, x<5" (normalised from "x>1 and x<5") means both; only disjoint pieces read as "or"
            return None
        return next(iter(names), None), merged
    return None


def bears_inequality(p) -> bool:
    """Is this answer a condition on a variable (an inequality, a chain, ``\\neq``) or a union of intervals?"""
    if p.kind == "rel":
        return not isinstance(p.value, sympy.Eq)
    if p.kind == "multi":
        return p.brackets == "cup" or any(bears_inequality(item) for item in p.value)
    return False


def regions_equal(p, r, rel_tol: float) -> bool:
    """Same set of reals (and the same variable when both name one)."""
    a, b = region(p), region(r)
    if a is None or b is None or (a[0] is not None and b[0] is not None and a[0] != b[0]):
        return False
    if len(a[1]) != len(b[1]):
        return False
    for (alo, ahi, alc, ahc), (blo, bhi, blc, bhc) in zip(a[1], b[1]):
        if alc != blc or ahc != bhc:
            return False
        for u, v in ((alo, blo), (ahi, bhi)):
            if u.is_infinite or v.is_infinite:
                if u != v:
                    return False
            elif not exprs_equal(u, v, rel_tol):
                return False
    return True
