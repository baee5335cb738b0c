"""Form builders for ``rlvr.verifiers.math_forms``: one small function per answer shape.

Each ``_*_forms`` function returns the equivalent and near-miss ``Form``s of one gold answer of a known shape; the
dispatcher that picks the shape (``forms_for``), the data loading and the completion text live in ``math_forms``.
Split from ``math_forms`` only to keep files short; the output is unchanged.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction


@dataclass(frozen=True)
class Form:
    text: str
    kind: str
    equivalent: bool
    hedge: tuple[str, str] | None = None  # ("A", "B") rendered per closing style as "A or B"



_INT = re.compile(r"-?\d+")
_DEC = re.compile(r"-?\d*\.\d+")
_ARG = r"(?:\{(\d+)\}|(\d))"
_FRAC = re.compile(r"(-?)\\[dt]?frac\s*" + _ARG + r"\s*" + _ARG)
_SLASH = re.compile(r"(-?)(\d+)/(\d+)")
_SQRT = re.compile(r"(-?)(\d*)\s*\\sqrt\s*" + _ARG)
_MIXED = re.compile(r"(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}")
_THOUSANDS = re.compile(r"(\\\$)?(\d{1,3}(?:(?:,\\!\s*|\{,\}|,)\d{3})+)")
_DEGREES = re.compile(r"(\d+)\^\{?\\circ\}?")
_COMPLEX = re.compile(r"(-?\d+)\s*([+-])\s*(\d*)i")
_BASE = re.compile(r"(\d+)_(?:\{(\d+)\}|(\d))")
_TEXT = re.compile(r"\\text\{\s*([A-Za-z]+)\s*\}")
_CHOICE = re.compile(r"\\text\{\(([A-E])\)\}")
_UNIT = re.compile(r"(\d+(?:\.\d+)?)\s*\\(text|mbox)\{\s*([a-z]+)\s*\}(\^2)?")
_PI = re.compile(r"(\d+)\s*\\pi")
_MONEY = re.compile(r"\\\$(\d+(?:\.\d+)?)")
_EQ_VALUE = re.compile(r"([a-z])\s*=\s*(-?\d+)")
_SIMPLE_SCALAR = re.compile(r"-?(?:\d+(?:\.\d+)?|\\frac\{\d+\}\{\d+\}|\d*\\sqrt\{\d+\}|\\infty|\\pi)")
_ANTONYMS = {"east": "west", "west": "east", "north": "south", "south": "north", "even": "odd", "odd": "even",
             "yes": "no", "no": "yes"}
_OPEN, _CLOSE = "({[", ")}]"


def _arg(m: re.Match, i: int) -> str:
    return m.group(i) if m.group(i) is not None else m.group(i + 1)


def _thousands(n: int, sep: str) -> str:
    s = f"{abs(n):,}".replace(",", sep)
    return ("-" if n < 0 else "") + s


def _frac_tex(q: Fraction, cmd: str = "\\frac") -> str:
    if q.denominator == 1:
        return str(q.numerator)
    sign = "-" if q < 0 else ""
    return f"{sign}{cmd}{{{abs(q.numerator)}}}{{{q.denominator}}}"


def _exact_decimal(q: Fraction) -> str | None:
    """The terminating decimal of ``q`` (None when it does not terminate or is long)."""
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d != 1:
        return None
    s = format(Decimal(q.numerator) / Decimal(q.denominator), "f")
    return s if len(s) <= 12 else None


def _split_top(s: str, sep: str = ",") -> list[str]:
    """Split at ``sep`` outside (), {}, [] (balanced brackets only)."""
    parts, depth, start = [], 0, 0
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            i += 2
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        elif depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i].strip())
            start = i + len(sep)
        i += 1
    parts.append(s[start:].strip())
    return parts


def _terms(s: str) -> list[tuple[str, str]] | None:
    """Top-level additive terms ``[(sign, body), ...]`` of an expression (None when brackets do not balance)."""
    out: list[tuple[str, str]] = []
    depth, start, sign = 0, 0, "+"
    s = s.strip()
    i = 0
    if s.startswith(("-", "+")):
        sign, start, i = s[0], 1, 1
    while i < len(s):
        c = s[i]
        if c == "\\":
            m = re.match(r"\\[a-zA-Z]+|\\.", s[i:])
            i += len(m.group(0)) if m else 1
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
            if depth < 0:
                return None
        elif depth == 0 and c in "+-":
            prev = s[:i].rstrip()
            if prev and prev[-1] not in "^_({[,=":
                out.append((sign, s[start:i].strip()))
                sign, start = c, i + 1
        i += 1
    if depth != 0:
        return None
    out.append((sign, s[start:].strip()))
    return out if all(body for _, body in out) else None


def _join_terms(terms: list[tuple[str, str]]) -> str:
    text = ""
    for k, (sign, body) in enumerate(terms):
        if k == 0:
            text = ("-" if sign == "-" else "") + body
        else:
            text += f" {sign} {body}"
    return text


def _negate(e: str) -> str | None:
    """``-e`` for a simple signed term (None when it has top-level +/- or is zero)."""
    e = e.strip()
    if e in ("0", "0.0") or not e:
        return None
    terms = _terms(e)
    if terms is None or len(terms) != 1:
        return None
    return e[1:].lstrip() if e.startswith("-") else "-" + e


def _matched_outer(s: str, open_: str, close: str) -> bool:
    """``s`` is ``open_ ... close`` where the first bracket closes at the very end."""
    if not (s.startswith(open_) and s.endswith(close)):
        return False
    depth = 0
    for i, c in enumerate(s):
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
            if depth == 0:
                return i == len(s) - 1
    return False


def _strip_left_right(s: str) -> str:
    return re.sub(r"\\(?:left|right)\s*(?=[()\[\]]|\\[{}])", "", s)


# -------------------------------------------------------------------------------------------- form makers


def _int_forms(n: int, gold: str, rng: random.Random) -> list[Form]:
    f: list[Form] = []
    if gold != str(n):  # "025" (AIME) or a thousands-separated gold
        f.append(Form(str(n), "leading_zero" if gold.lstrip("-").startswith("0") else "thousands_sep", True))
    if abs(n) >= 1000:
        for sep, kind in ((",\\!", "thousands_sep"), ("{,}", "thousands_sep"), ("\\,", "thousands_thin")):
            text = _thousands(n, sep)
            if text != gold:
                f.append(Form(text, kind, True))
    var = rng.choice("xnk")
    f.append(Form(f"{var} = {n}", "labelled", True))
    f.append(Form(f"{n}.0", "decimal_exact", True))
    f.append(Form(f"{n} \\text{{ {rng.choice(['units', 'cm', 'dollars', 'ways'])}}}", "text_unit", True))
    if n < 0:
        f.append(Form(f"\u2212{-n}", "unicode_minus", True))
    # near misses
    delta = rng.choice([1, -1])
    f.append(Form(str(n + delta), "near_off_by_one", False))
    if n != 0:
        f.append(Form(str(-n), "near_sign_flip", False))
        if n > 0:
            f.append(Form(f"\u2212{n}", "near_sign_flip_unicode", False))
    f.append(Form("", "near_hedge", False, hedge=(str(n), str(n + delta))))
    f.append(Form(str(n - delta), "near_draft_had_gold", False))  # gold appears only in an earlier draft
    if abs(n) >= 1000:
        f.append(Form(_thousands(n + 10 * delta, ",\\!"), "near_thousands_off", False))
    return f


def _fraction_forms(q: Fraction, rng: random.Random, single_digit: bool) -> list[Form]:
    a, b = abs(q.numerator), q.denominator
    s = "-" if q < 0 else ""
    f = [Form(f"{s}{a}/{b}", "frac_slash", True),
         Form(f"{s}\\dfrac{{{a}}}{{{b}}}", "dfrac", True),
         Form(f"{s}\\tfrac{{{a}}}{{{b}}}", "tfrac", True),
         Form(f"{s}\\frac{{{2 * a}}}{{{2 * b}}}", "frac_unreduced", True)]
    if single_digit:
        f.append(Form(f"{s}\\frac{{{a}}}{{{b}}}", "shorthand_braced", True))
    elif a < 10 and b < 10:
        f.append(Form(f"{s}\\frac{a}{b}", "frac_shorthand", True))
    elif b < 10:
        f.append(Form(f"{s}\\frac{{{a}}}{b}", "frac_shorthand", True))
    if s:
        f.append(Form(f"\\frac{{-{a}}}{{{b}}}", "frac_neg_numerator", True))
        f.append(Form(f"\u2212\\frac{{{a}}}{{{b}}}", "unicode_minus", True))
    dec = _exact_decimal(q)
    if dec is not None:
        f.append(Form(dec, "decimal_exact", True))
    else:
        f.append(Form(f"{float(q):.3f}", "near_rounded_decimal", False))
    if a != b:
        f.append(Form(f"{s}\\frac{{{b}}}{{{a}}}", "near_reciprocal", False))
    f.append(Form(f"{s}\\frac{{{a + 1}}}{{{b}}}", "near_wrong_fraction", False))
    f.append(Form(("" if s else "-") + f"\\frac{{{a}}}{{{b}}}", "near_sign_flip", False))
    f.append(Form("", "near_hedge", False, hedge=(_frac_tex(q), f"{s}\\frac{{{a + 1}}}{{{b}}}")))
    return f


def _decimal_forms(gold: str, rng: random.Random) -> list[Form]:
    q = Fraction(gold)
    neg = gold.startswith("-")
    body = gold.lstrip("-")
    f = [Form(_frac_tex(q), "decimal_as_fraction", True), Form(gold + "0", "decimal_trailing_zero", True)]
    if body.startswith("."):
        f.append(Form(("-" if neg else "") + "0" + body, "decimal_leading_zero", True))
    elif body.startswith("0."):
        f.append(Form(("-" if neg else "") + body[1:], "decimal_leading_zero", True))
    if q != 0 and abs(q) < Fraction(1, 100):
        d = Decimal(body if not body.startswith(".") else "0" + body)
        exp = d.adjusted()
        mant = format((d.scaleb(-exp)).normalize(), "f")
        f.append(Form(f"{'-' if neg else ''}{mant} \\times 10^{{{exp}}}", "decimal_scientific", True))
    digits = body.split(".")[1]
    ulp = Fraction(1, 10 ** len(digits))
    f.append(Form(format(Decimal((q + ulp).numerator) / Decimal((q + ulp).denominator), "f"),
                  "near_last_digit", False))
    f.append(Form(format(Decimal((q * 10).numerator) / Decimal((q * 10).denominator), "f"),
                  "near_decimal_shift", False))
    if q != 0:
        f.append(Form(("" if neg else "-") + body, "near_sign_flip", False))
    return f


def _sqrt_forms(sign: str, k: str, n: int, gold: str) -> list[Form]:
    kk = int(k) if k else 1
    f: list[Form] = []
    if n < 10:
        f.append(Form(f"{sign}{k}\\sqrt{n}", "sqrt_shorthand", True))
        f.append(Form(f"{sign}{k}\\sqrt{{{n}}}", "sqrt_braced", True))
    if k:
        f.append(Form(f"{sign}{k} \\cdot \\sqrt{{{n}}}", "sqrt_cdot", True))
        f.append(Form(f"{sign}\\sqrt{{{kk * kk * n}}}", "radical_unsimplified", True))
        f.append(Form(f"{sign}\\sqrt{{{kk * n}}}", "near_radical_wrong", False))
        f.append(Form(f"{sign}{kk + 1}\\sqrt{{{n}}}", "near_off_by_one", False))
    else:
        f.append(Form(f"{sign}{n}^{{1/2}}", "sqrt_power", True))
        f.append(Form(f"{sign}\\sqrt{{{n + 1}}}", "near_off_by_one", False))
    f.append(Form(("" if sign else "-") + f"{k}\\sqrt{{{n}}}", "near_sign_flip", False))
    if sign:
        f.append(Form(f"\u2212{k}\\sqrt{{{n}}}", "unicode_minus", True))
    return f


def _interval_text(lo: str, hi: str, lb: str, rb: str) -> str:
    return f"{lb}{lo}, {hi}{rb}"


def _inequality(lo: str, hi: str, lb: str, rb: str, var: str, geq: str = "\\ge") -> str | None:
    lo_inf, hi_inf = lo == "-\\infty", hi in ("\\infty", "+\\infty")
    if lo_inf and hi_inf:
        return None
    le = "\\le" if geq == "\\ge" else "\\leq"
    if lo_inf:
        return f"{var} {'<' if rb == ')' else le} {hi}"
    if hi_inf:
        return f"{var} {'>' if lb == '(' else geq} {lo}"
    return f"{lo} {'<' if lb == '(' else le} {var} {'<' if rb == ')' else le} {hi}"


def _interval_forms(lo: str, hi: str, lb: str, rb: str, rng: random.Random) -> list[Form]:
    f = [Form(f"\\left{lb} {lo}, {hi} \\right{rb}", "left_right", True),
         Form(f"x \\in {_interval_text(lo, hi, lb, rb)}", "labelled", True)]
    ineq = _inequality(lo, hi, lb, rb, "x")
    if ineq:
        f.append(Form(ineq, "interval_inequality", True))
        alt = _inequality(lo, hi, lb, rb, "x", "\\geq")
        if alt != ineq:
            f.append(Form(alt, "interval_inequality", True))
    lo_inf, hi_inf = lo == "-\\infty", hi in ("\\infty", "+\\infty")
    if hi_inf and not lo_inf:
        f.append(Form(f"{lo} {'<' if lb == '(' else chr(92) + 'le'} x", "interval_inequality_reversed", True))
    # near misses: every other bracket choice that stays legal at an infinite end
    for nlb in "([":
        for nrb in ")]":
            if (nlb, nrb) == (lb, rb) or (lo_inf and nlb != "(") or (hi_inf and nrb != ")"):
                continue
            f.append(Form(_interval_text(lo, hi, nlb, nrb), "near_swapped_bracket", False))
            wrong = _inequality(lo, hi, nlb, nrb, "x")
            if wrong:
                f.append(Form(wrong, "near_inequality_strictness", False))
    if not lo_inf and not hi_inf:
        f.append(Form(_interval_text(hi, lo, lb, rb), "near_reversed_endpoints", False))
    return f


def _tuple_forms(elems: list[str], had_left: bool, rng: random.Random) -> list[Form]:
    inner = ", ".join(elems)
    f = [Form(f"({inner})" if had_left else f"\\left( {inner} \\right)", "left_right", True),
         Form(f"({','.join(elems)})", "spacing", True)]
    # "(x, y) = (a, b)" only where (a, b) cannot be an open interval (a >= b, or three entries)
    ints = [int(e) for e in elems if _INT.fullmatch(e)]
    if len(elems) == 3 or (len(elems) == 2 and len(ints) == 2 and ints[0] >= ints[1]):
        names = "(x, y)" if len(elems) == 2 else "(x, y, z)"
        f.append(Form(f"{names} = ({inner})", "labelled_tuple", True))
    if len(set(elems)) > 1:
        f.append(Form(f"({', '.join(reversed(elems))})", "near_reversed_tuple", False))
    for i, e in enumerate(elems):
        neg = _negate(e)
        if neg is not None:
            f.append(Form(f"({', '.join(elems[:i] + [neg] + elems[i + 1:])})", "near_sign_flip", False))
            break
    if len(elems) > 2:
        f.append(Form(f"({', '.join(elems[:-1])})", "near_dropped_element", False))
    return f


def _list_forms(elems: list[str], braces: bool, rng: random.Random) -> list[Form]:
    def wrap(items: list[str]) -> str:
        return ("\\{" + ", ".join(items) + "\\}") if braces else ", ".join(items)

    f = []
    rev = list(reversed(elems))
    if rev != elems:
        f.append(Form(wrap(rev), "reordered_set" if braces else "reordered_list", True))
    rot = elems[1:] + elems[:1]
    if len(elems) > 2 and rot != rev:
        f.append(Form(wrap(rot), "reordered_set" if braces else "reordered_list", True))
    if not braces:
        f.append(Form(" and ".join(elems) if len(elems) == 2 else ", ".join(elems[:-1]) + ", and " + elems[-1],
                      "list_and", True))
    else:
        f.append(Form(", ".join(elems), "set_braces_dropped", True))
    if len(set(elems)) > 1:
        drop = rng.randrange(len(elems))
        f.append(Form(wrap(elems[:drop] + elems[drop + 1:]), "near_dropped_element", False))
    for i, e in enumerate(elems):
        neg = _negate(e)
        if neg is not None and neg not in elems:
            f.append(Form(wrap(elems[:i] + [neg] + elems[i + 1:]), "near_sign_flip", False))
            break
    return f


def _pm_forms(a: str, b: str) -> list[Form]:
    plus, minus = f"{a} + {b}", f"{a} - {b}"
    return [Form(f"{plus}, {minus}", "pm_expanded", True), Form(f"{minus}, {plus}", "pm_expanded", True),
            Form(f"\\{{{minus}, {plus}\\}}", "pm_expanded_set", True),
            Form(plus, "near_dropped_element", False), Form(minus, "near_dropped_element", False)]


def _matrix_forms(env: str, rows: list[list[str]]) -> list[Form]:
    def body(rs: list[list[str]]) -> str:
        return " \\\\ ".join(" & ".join(r) for r in rs)

    cols = "c" * len(rows[0])
    f = []
    for e in ("pmatrix", "bmatrix"):
        if e != env:
            f.append(Form(f"\\begin{{{e}}} {body(rows)} \\end{{{e}}}", "matrix_env", True))
    f.append(Form(f"\\left[\\begin{{array}}{{{cols}}} {body(rows)} \\end{{array}}\\right]", "matrix_array", True))
    f.append(Form(f"\\left(\\begin{{array}}{{{cols}}} {body(rows)} \\end{{array}}\\right)", "matrix_array", True))
    fr = [[re.sub(r"^(-?)(\d+)/(\d+)$", r"\1\\frac{\2}{\3}", e) for e in r] for r in rows]
    if fr != rows:
        f.append(Form(f"\\begin{{{env}}} {body(fr)} \\end{{{env}}}", "matrix_entries_frac", True))
    for i, r in enumerate(rows):
        for j, e in enumerate(r):
            neg = _negate(e)
            if neg is not None:
                wrong = [list(x) for x in rows]
                wrong[i][j] = neg
                f.append(Form(f"\\begin{{{env}}} {body(wrong)} \\end{{{env}}}", "near_sign_flip", False))
                break
        else:
            continue
        break
    flat = [e for r in rows for e in r]
    if len(rows) > 1 and len(rows[0]) == 1 and flat[0] != flat[1]:
        swapped = [[flat[1]], [flat[0]]] + rows[2:]
        f.append(Form(f"\\begin{{{env}}} {body(swapped)} \\end{{{env}}}", "near_swapped_entries", False))
    return f


def _generic_forms(gold: str) -> list[Form]:
    """Shape-independent rewrites that keep the value: spelling of \\frac, shorthand braces, \\left/\\right."""
    f = []
    if "\\frac" in gold and "\\dfrac" not in gold:
        f.append(Form(gold.replace("\\frac", "\\dfrac"), "dfrac", True))
    if "\\dfrac" in gold:
        f.append(Form(gold.replace("\\dfrac", "\\frac"), "dfrac", True))
    braced = re.sub(r"\\([dt]?frac)\s*(\d)(\d)", r"\\\1{\2}{\3}", gold)
    braced = re.sub(r"\\([dt]?frac)\s*\{(\d+)\}\s*(\d)(?!\d)", r"\\\1{\2}{\3}", braced)
    braced = re.sub(r"\\sqrt\s*(\d)", r"\\sqrt{\1}", braced)
    if braced != gold:
        f.append(Form(braced, "shorthand_braced", True))
    short = re.sub(r"\\sqrt\{(\d)\}", r"\\sqrt\1", gold)
    short = re.sub(r"\\frac\{(\d)\}\{(\d)\}", r"\\frac\1\2", short)
    if short != gold:
        f.append(Form(short, "shorthand", True))
    if "\\left" in gold:
        f.append(Form(_strip_left_right(gold), "left_right", True))
    return f


def _expression_forms(gold: str) -> list[Form]:
    """Sums and products of a polynomial-like gold: reorder terms / factors; flip one sign."""
    if re.search(r"[=<>,:]|\\(?:text|mbox|begin|le|ge|pm|infty|cup|cdot|times|div|circ)|_", gold):
        return []
    f = []
    terms = _terms(gold)
    if terms and len(terms) >= 2:
        f.append(Form(_join_terms(list(reversed(terms))), "terms_reordered", True))
        last_sign, last_body = terms[-1]
        if last_body not in ("0",):
            flipped = terms[:-1] + [("-" if last_sign == "+" else "+", last_body)]
            f.append(Form(_join_terms(flipped), "near_sign_flip_term", False))
    groups = re.fullmatch(r"((?:\([^()]+\)){2,})", gold.replace(" ", ""))
    if groups:
        parts = re.findall(r"\([^()]+\)", groups.group(1))
        if len(set(parts)) > 1:
            f.append(Form("".join(reversed(parts)), "factors_reordered", True))
        if "+" in parts[0]:
            f.append(Form(parts[0].replace("+", "-", 1) + "".join(parts[1:]), "near_sign_flip_term", False))
    return f


def _equation_forms(gold: str) -> list[Form]:
    """``lhs = 0`` planes/lines and ``y = ...`` lines: negate both sides, move the constant, swap sides."""
    f = []
    m = re.fullmatch(r"(.+?)\s*=\s*0", gold)
    if m:
        terms = _terms(m.group(1))
        if terms and len(terms) >= 2:
            neg = [("-" if s == "+" else "+", b) for s, b in terms]
            f.append(Form(_join_terms(neg) + " = 0", "equation_negated", True))
            if re.fullmatch(r"\d+", terms[-1][1]):
                const = ("-" if terms[-1][0] == "+" else "") + terms[-1][1]
                f.append(Form(_join_terms(terms[:-1]) + f" = {const}", "equation_rearranged", True))
                f.append(Form(_join_terms(terms[:-1] + [("-" if terms[-1][0] == "+" else "+", terms[-1][1])])
                              + " = 0", "near_sign_flip_term", False))
        return f
    m = re.fullmatch(r"([a-z])\s*=\s*(.+)", gold)
    if m and not re.search(r"[=<>,]", m.group(2)):
        var, rhs = m.groups()
        f.append(Form(f"{rhs} = {var}", "equation_swapped", True))
        terms = _terms(rhs)
        if terms and len(terms) >= 2:
            f.append(Form(f"{var} = {_join_terms(list(reversed(terms)))}", "terms_reordered", True))
            s, b = terms[-1]
            f.append(Form(f"{var} = {_join_terms(terms[:-1] + [('-' if s == '+' else '+', b)])}",
                          "near_sign_flip_term", False))
        elif terms:
            neg = _negate(rhs)
            if neg:
                f.append(Form(f"{var} = {neg}", "near_sign_flip", False))
    return f
