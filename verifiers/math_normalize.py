"""String normalisation of a math answer before it is parsed or compared.

Both the model's extracted answer and the reference go through the same function, so the rules here are
symmetric by construction. The goal is to remove *presentation* (``\\left``, ``\\dfrac``, ``$``, units,
thousands separators, ``\\text{}`` wrappers, trailing full stops) and never *content*: anything we are not
sure is presentation stays, and the equivalence checker decides.
"""

from __future__ import annotations

import re

# Words that follow a number as a unit in GSM8K/MATH answers; dropped only when something is left after.
MAX_NORMALIZE_CHARS = 4000
_PLAIN_NUMBER = re.compile(r"-?[1-9]\d{0,30}(?:\.\d*[1-9])?|-?0\.\d*[1-9]|0")

_UNITS = (
    "dollars|dollar|cents|cent|euros|euro|pounds|pound|lbs|lb|ounces|ounce|oz|kg|kilograms|grams|gram|g|mg|"
    "km|kilometers|kilometres|meters|metres|meter|metre|m|cm|centimeters|centimetres|mm|millimeters|"
    "miles|mile|mph|feet|foot|ft|inches|inch|in|yards|yard|yd|units|unit|square|sq|cubic|"
    "liters|litres|liter|litre|l|ml|gallons|gallon|cups|cup|"
    "hours|hour|hrs|hr|h|minutes|minute|mins|min|seconds|second|secs|sec|s|days|day|weeks|week|"
    "months|month|years|year|yrs|degrees|degree|percent|points|point|people|students|times|"
    "apples|cookies|pages|books|eggs|marbles|boxes|bags|pieces|items|tickets|cars|trees|dogs|cats"
)
_UNIT_TAIL = re.compile(
    rf"(?:\s*(?:\\mbox|\\text|\\mathrm|\\textbf)?\{{?\s*(?:{_UNITS})(?:\^?\{{?[23]\}}?)?\s*\}}?\.?)+$", re.IGNORECASE)
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname|textnormal|mathit)\s*\{([^{}]*)\}")
_SPACES = re.compile(r"(?<!\\)\\[,;:! ]|\\quad|\\qquad|~|\\displaystyle|\\limits|\\nolimits")
_THOUSANDS_MARK = re.compile(r"(?<=\d)(?:,\s*\\!|\{,\})\s*(?=\d{3}(?!\d))")
_DECIMAL_MARK = re.compile(r"(?<=\d)\{,\}(?=\d)")
_THOUSANDS_WHOLE = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
# 1\frac{1}{2} and 1 \frac12 are mixed numbers in every contest answer key: 1 + 1/2, not 1 * 1/2.
_MIXED = re.compile(r"(?<![\d.}^_a-zA-Z])(\d+)\s*\\frac\s*(?:\{\s*(\d+)\s*\}|(\d))\s*(?:\{\s*(\d+)\s*\}|(\d))")
_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u00d7": r"\times ", "\u00f7": r"\div ", "\u22c5": r"\cdot ", "\u00b7": r"\cdot ",
    "\u03c0": r"\pi ", "\u221a": r"\sqrt", "\u221e": r"\infty ", "\u2264": r"\le ", "\u2265": r"\ge ",
    "\u2260": r"\ne ", "\u00b0": "", "\u00a0": " ", "\u2009": "", "\u202f": "",
}
_ONE_CHAR_SUBSCRIPT = re.compile(r"_\{(\w)\}")
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))


def strip_math_delimiters(s: str) -> str:
    """``$x$``, ``$$x$$``, ``\\(x\\)``, ``\\[x\\]`` -> ``x`` (only when they wrap the whole string)."""
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            inner = s[len(left): len(s) - len(right)]
            if left != "$" or "$" not in inner:
                return inner.strip()
    return s


def _replace_text_commands(s: str) -> str:
    """Unwrap ``\\text{..}``; drop it entirely when it is a unit or word tail after a value."""

    def repl(m: re.Match[str]) -> str:
        content = m.group(1).strip()
        before = s[: m.start()].strip()
        # "5\text{ cm}" / "12 \text{ apples}": a unit after a value; "\text{(C)}" alone: the answer itself.
        if before and re.fullmatch(r"[A-Za-z .]*", content) and m.end() == len(s.rstrip(" .")):
            return ""
        # "x = 1 \text{ or } x = 2": words between values separate multiple answers.
        if before and content.lower() in ("or", "and", ",") and m.end() < len(s):
            return ","
        return content

    prev = None
    while prev != s:
        prev, s = s, _TEXT_CMD.sub(repl, s, count=1)
    return s


def normalize(s: str) -> str:
    """Canonical text form of an answer; cheap (regex only), idempotent, never raises on str input."""
    if len(s) > MAX_NORMALIZE_CHARS:  # not an answer; it can only match verbatim, so skip the regex passes
        return s.strip()
    if _PLAIN_NUMBER.fullmatch(s):  # the common case in RL rewards: nothing to normalise
        return s
    s = strip_math_delimiters(s)
    s = _UNICODE_RE.sub(lambda m: _UNICODE[m.group(0)], s)
    s = s.replace("\n", " ").strip()
    # 64,\!800 and 10{,}000: a comma then a 3-digit group is a thousands separator; 2{,}5 is a decimal comma
    s = _THOUSANDS_MARK.sub("", s)
    s = _DECIMAL_MARK.sub(".", s)
    s = _SPACES.sub(" ", s)
    s = s.replace("{,}", ",").replace("\\left", "").replace("\\right", "")
    s = re.sub(r"\\[dtc]frac", r"\\frac", s)
    s = s.replace("\\bigl", "").replace("\\bigr", "").replace("\\Bigl", "").replace("\\Bigr", "")
    s = re.sub(r"\\(?:big|Big|bigg|Bigg)(?![a-zA-Z])", "", s)
    s = re.sub(r"\\(?:le|leqslant)(?![a-zA-Z])", r"\\leq", s)
    s = re.sub(r"\\(?:ge|geqslant)(?![a-zA-Z])", r"\\geq", s)
    s = re.sub(r"\\(?:neq)(?![a-zA-Z])", r"\\ne", s)
    # Degrees and percent are presentation in answer keys ("30^\circ" == "30", "25\%" == "25").
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree", "", s)
    s = re.sub(r"\\?%", "", s)
    s = re.sub(r"^\\\$|^\$|\\\$", "", s).strip()
    s = _replace_text_commands(s)
    s = re.sub(r"(?<=\S)\s*,?\s+(?:or|and)\s+(?=\S)", ",", s)  # "x=1 or x=2", "1, 2, and 3": several answers
    s = re.sub(r"^(?:[a-zA-Z]\s*(?:\\in|=)\s*)(?=[\[(\\{])", "", s) if re.match(r"^[a-zA-Z]\s*\\in", s) else s
    s = s.strip().rstrip(".").strip()
    stripped = _UNIT_TAIL.sub("", s).strip()
    if stripped and stripped != s and re.search(r"[\d}]\s*$", stripped):
        s = stripped
    s = _MIXED.sub(lambda m: f"({m.group(1)}+\\frac{{{m.group(2) or m.group(3)}}}{{{m.group(4) or m.group(5)}}})", s)
    if _THOUSANDS_WHOLE.match(s):
        s = s.replace(",", "")
    s = re.sub(r"(?<=\d)\s+(?=\d{3}(?!\d))", "", s) if re.fullmatch(r"\d{1,3}(?: \d{3})+", s) else s
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"\s*([=+\-*/^_,(){}\[\]<>])\s*", r"\1", s)
    s = _ONE_CHAR_SUBSCRIPT.sub(r"_\1", s)  # 52_{8} -> 52_8, x_{1} -> x_1: the braces hold one token
    return s
