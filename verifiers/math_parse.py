"""A small recursive-descent parser: normalised LaTeX / plain-text math -> sympy expression.

Why our own parser rather than ``sympy.parsing.latex`` or ``latex2sympy2_extended``:

- sympy's LaTeX parser needs the antlr4 runtime pinned to one exact version (a dependency conflict waiting to
  happen) and is slow to import and to run; latex2sympy2_extended is the same grammar plus another dependency.
- Answers in RL rewards are short and come from a narrow dialect (numbers, ``\\frac``, ``\\sqrt``, ``\\pi``,
  powers, a few functions, implicit multiplication). ~300 lines cover it and let us put *guards* where a
  general parser has none: nesting depth, input length, and the size of numeric powers and factorials, so
  ``10^{10^{10}}`` is refused in microseconds instead of allocating gigabytes inside sympy.
- Unknown syntax raises ``ParseError`` and the caller falls back to comparing normalised strings; a parse
  failure can therefore cost recall, never crash a reward.

Only expressions and single relations are parsed here; lists, intervals, sets and matrices are split apart by
``math_equiv`` first.
"""

from __future__ import annotations

import math
import re

import sympy

MAX_CHARS = 1000          # longer "answers" are not answers; compare them as strings
MAX_DEPTH = 40            # nesting of groups; each level costs ~10 Python frames
MAX_POW_DIGITS = 2000     # an exact numeric power with more digits than this is refused
MAX_FACTORIAL = 300


class ParseError(ValueError):
    """The text is not an expression this parser understands (not a verifier failure)."""


_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+\.?\d*(?:[eE][-+]?\d+(?![\d.]))?|\.\d+)"
    r"|(?P<cmd>\\[a-zA-Z]+|\\[{}|])"
    r"|(?P<word>[a-zA-Z]+)"
    r"|(?P<op>\*\*|<=|>=|!=|[-+*/^_(){}\[\]=<>!|,'&]))"
)
_GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
    "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi",
    "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega",
}
_FUNCS = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot, "sec": sympy.sec, "csc": sympy.csc,
    "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan, "sinh": sympy.sinh, "cosh": sympy.cosh,
    "tanh": sympy.tanh, "ln": sympy.log, "exp": sympy.exp, "log": None,  # log handled for its base
}
_PLAIN_WORDS = {"sqrt", "pi", "inf", "infty", "infinity", "oo", *_FUNCS}
_RELATIONS = {"=": sympy.Eq, "<": sympy.Lt, ">": sympy.Gt, "<=": sympy.Le, ">=": sympy.Ge, "!=": sympy.Ne,
              "\\leq": sympy.Le, "\\geq": sympy.Ge, "\\lt": sympy.Lt, "\\gt": sympy.Gt, "\\ne": sympy.Ne}
_DIRECTION = {sympy.Lt: "<", sympy.Le: "<", sympy.Gt: ">", sympy.Ge: ">"}


def tokenize(s: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos, n = 0, len(s)
    while pos < n:
        m = _TOKEN.match(s, pos)
        if not m or m.end() == pos:
            if s[pos:].strip() == "":
                break
            raise ParseError(f"unexpected character {s[pos]!r}")
        pos = m.end()
        kind = m.lastgroup
        text = m.group(kind)
        if kind == "word":
            if text in _PLAIN_WORDS:
                tokens.append(("cmd", "\\" + text))
            elif len(text) >= 4:  # a word ("Monday", "even"): compared as text by the caller
                raise ParseError(f"word {text!r}")
            else:  # "xy" is x*y, as in every answer key
                tokens.extend(("word", ch) for ch in text)
            continue
        tokens.append((kind, text))
    return tokens


def _check_pow(base: sympy.Expr, exp: sympy.Expr) -> None:
    if not (base.is_Number and exp.is_Number):
        if exp.is_Number and abs(float(exp)) > 10**6 and base.has(sympy.Symbol):
            raise ParseError("exponent too large")
        return
    if base.is_Rational and exp.is_Integer and abs(exp) > 1:
        p, q = abs(base.p), abs(base.q)
        if max(p, q) > 1:
            digits = abs(int(exp)) * math.log10(max(p, q))
            if digits > MAX_POW_DIGITS:
                raise ParseError("numeric power too large to evaluate exactly")
    elif base.is_Rational and exp.is_Rational and abs(exp.p) > 10**4:
        raise ParseError("numeric power too large to evaluate exactly")


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]):
        self.toks = tokens
        self.i = 0
        self.depth = 0

    # -- token helpers -------------------------------------------------------------------------------------------
    def peek(self, k: int = 0) -> tuple[str, str] | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise ParseError("unexpected end of expression")
        self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[1] == text:
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            got = self.peek()
            raise ParseError(f"expected {text!r}, got {got[1] if got else 'end'!r}")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("expression nested too deeply")

    # -- grammar ---------------------------------------------------------------------------------------------------
    def relation(self):
        lhs = self.additive()
        tok = self.peek()
        if tok is not None and tok[1] in _RELATIONS:
            self.i += 1
            rhs = self.additive()
            first = _RELATIONS[tok[1]](lhs, rhs, evaluate=False)
            tok2 = self.peek()
            if tok2 is None or tok2[1] not in _RELATIONS:
                return first
            # "-2 <= x < 7": a chain of two inequalities in one direction is their conjunction
            op2 = _RELATIONS[tok2[1]]
            if _DIRECTION.get(_RELATIONS[tok[1]]) is None or _DIRECTION.get(_RELATIONS[tok[1]]) != _DIRECTION.get(op2):
                raise ParseError("only inequalities in one direction can be chained")
            self.i += 1
            last = self.additive()
            if self.peek() is not None and self.peek()[1] in _RELATIONS:
                raise ParseError("chains of more than two relations are not supported")
            return sympy.And(first, op2(rhs, last, evaluate=False), evaluate=False)
        return lhs

    def additive(self):
        terms = []
        sign = 1
        if self.accept("-"):
            sign = -1
        else:
            self.accept("+")
        terms.append(sign * self.term())
        while True:
            if self.accept("+"):
                terms.append(self.term())
            elif self.accept("-"):
                terms.append(-self.term())
            else:
                break
        return sympy.Add(*terms)

    def _starts_primary(self) -> bool:
        tok = self.peek()
        if tok is None:
            return False
        kind, text = tok
        if kind in ("num", "word"):
            return True
        if kind == "cmd":
            return text not in _RELATIONS and text not in ("\\cdot", "\\times", "\\div", "\\pm", "\\mp", "\\}")
        return text in ("(", "[", "{")

    def term(self):
        value = self.unary()
        while True:
            if self.accept("*") or self.accept("\\cdot") or self.accept("\\times"):
                value = value * self.unary()
            elif self.accept("/") or self.accept("\\div"):
                den = self.unary()
                if den == 0:
                    raise ParseError("division by zero")
                value = value / den
            elif self._starts_primary():
                value = value * self.power()
            else:
                return value

    def unary(self):
        if self.accept("-"):
            return -self.unary()
        if self.accept("+"):
            return self.unary()
        return self.power()

    def power(self):
        base = self.postfix()
        if self.accept("^") or self.accept("**"):
            exp = self.script_argument()
            _check_pow(base, exp)
            return sympy.Pow(base, exp)
        return base

    def script_argument(self):
        """What follows ``^``: a braced group, or one token (with a sign in plain text)."""
        tok = self.peek()
        if tok is not None and tok[1] == "{":
            return self.group("{", "}")
        if self.accept("-"):
            return -self.postfix()
        return self.postfix()

    def postfix(self):
        value = self.primary()
        while True:
            if self.accept("!"):
                if not (value.is_Integer and 0 <= value <= MAX_FACTORIAL):
                    raise ParseError("factorial of a non-integer or too large a number")
                value = sympy.factorial(value)
            elif self.accept("'"):
                raise ParseError("primes are not supported")
            else:
                return value

    def group(self, open_: str, close: str):
        self.expect(open_)
        self.enter()
        value = self.relation()
        self.depth -= 1
        self.expect(close)
        return value

    def braced_or_single(self):
        """A LaTeX macro argument: ``{…}`` or a single token (``\\frac12`` -> 1, 2)."""
        tok = self.peek()
        if tok is None:
            raise ParseError("missing argument")
        if tok[1] == "{":
            return self.group("{", "}")
        if tok[0] == "num" and len(tok[1]) > 1 and tok[1].isdigit():
            self.toks[self.i] = ("num", tok[1][1:])  # \frac12: LaTeX takes one digit per argument
            return sympy.Integer(tok[1][0])
        return self.postfix()

    def primary(self):
        tok = self.take()
        kind, text = tok
        if kind == "num":
            if re.fullmatch(r"\d+", text):
                return sympy.Integer(text)
            if "e" in text.lower():
                return _sci(text)
            # A written decimal is a Float, so the comparison knows to apply rel_tol to it.
            return sympy.Float(text, max(30, len(text)))
        if kind == "word":
            if self.peek() is not None and self.peek()[1] == "_":
                self.i += 1
                sub = self.take() if self.peek()[1] != "{" else ("", self._raw_group())
                return sympy.Symbol(f"{text}_{sub[1]}")
            return sympy.Symbol(text)
        if text == "(":
            self.i -= 1
            return self.group("(", ")")
        if text == "[":
            self.i -= 1
            return self.group("[", "]")
        if text == "{":
            self.i -= 1
            return self.group("{", "}")
        if text == "|":
            self.enter()
            inner = self.additive()
            self.depth -= 1
            self.expect("|")
            return sympy.Abs(inner)
        if kind == "cmd":
            return self.command(text)
        raise ParseError(f"unexpected {text!r}")

    def _raw_group(self) -> str:
        self.expect("{")
        parts = []
        while not self.accept("}"):
            parts.append(self.take()[1])
        return "".join(parts)

    def command(self, cmd: str):
        name = cmd[1:]
        if name == "frac" or name == "over":
            num = self.braced_or_single()
            den = self.braced_or_single()
            if den == 0:
                raise ParseError("division by zero")
            return num / den
        if name == "sqrt":
            index = None
            if self.peek() is not None and self.peek()[1] == "[":
                index = self.group("[", "]")
            arg = self.braced_or_single()
            return sympy.sqrt(arg) if index is None else sympy.root(arg, index)
        if name == "binom":
            n, k = self.braced_or_single(), self.braced_or_single()
            if n.is_Integer and k.is_Integer and n > 10**4:
                raise ParseError("binomial too large")
            return sympy.binomial(n, k)
        if name == "pi":
            return sympy.pi
        if name in ("infty", "inf", "infinity", "oo"):
            return sympy.oo
        if name in _GREEK:
            return sympy.Symbol(name)
        if name in ("{", "}"):
            raise ParseError("braces as delimiters belong to sets")
        if name in ("mathbf", "mathrm", "text", "operatorname", "boldsymbol", "mathit", "textbf", "mbox"):
            return self.group("{", "}")
        if name == "log":
            base = None
            if self.accept("_"):
                base = self.braced_or_single()
            arg = self.function_argument()
            return sympy.log(arg) if base is None else sympy.log(arg, base)
        if name in _FUNCS:
            power = None
            if self.accept("^"):  # \sin^2 x
                power = self.script_argument()
            value = _FUNCS[name](self.function_argument())
            return value if power is None else value ** power
        raise ParseError(f"unsupported command {cmd}")

    def function_argument(self):
        tok = self.peek()
        if tok is None:
            raise ParseError("function without argument")
        if tok[1] in ("(", "{", "["):
            return self.postfix()
        return self.power()


def _sci(text: str) -> sympy.Rational:
    mantissa, _, exponent = text.lower().partition("e")
    if abs(int(exponent)) > MAX_POW_DIGITS:
        raise ParseError("exponent too large")
    return sympy.Rational(mantissa) * sympy.Integer(10) ** int(exponent)


def parse_expression(s: str):
    """sympy expression (or relation) for one normalised answer; raises ``ParseError`` on anything unknown."""
    if len(s) > MAX_CHARS:
        raise ParseError("answer too long to parse")
    tokens = tokenize(s)
    if not tokens:
        raise ParseError("empty answer")
    parser = _Parser(tokens)
    try:
        value = parser.relation()
    except RecursionError as exc:  # belt and braces: MAX_DEPTH should stop this first
        raise ParseError("expression nested too deeply") from exc
    except (TypeError, AttributeError, ZeroDivisionError, OverflowError) as exc:
        raise ParseError(f"cannot build expression: {type(exc).__name__}") from exc
    if parser.i != len(tokens):
        raise ParseError(f"unexpected {tokens[parser.i][1]!r}")
    return value
