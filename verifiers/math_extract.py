"""Find the final answer in free model text, and in a reference answer.

Extraction is kept apart from equivalence so that a reward can say *how* it found the answer: every rule has a
name, the verifier records which one fired, and a monitor can then tell a model that writes ``\\boxed{}`` from
one that is rewarded only because the last number in its rambling happened to match.

Rules (``RULES``), tried in the configured order; the first that finds something wins, and within a rule the
*last* occurrence wins (models restate the question's numbers first and the answer last):

- ``answer_tag``   ``<answer>…</answer>``; a ``\\boxed{}`` inside it is preferred over the whole tag body
- ``boxed``        ``\\boxed{…}`` / ``\\fbox{…}`` with nested braces, and ``\\boxed 5``
- ``gsm8k``        ``#### 42``
- ``answer_is``    "the (final) answer is …", "answer: …"
- ``answer_line``  a line starting ``A: …`` (OpenAI's GSM8K model solutions)
- ``last_number``  the last number in the text (a configurable fallback; weakest evidence)

All regexes are linear-time (no nested quantifiers) so a 100 KB completion costs milliseconds.
"""

from __future__ import annotations

import re

RULES = ("answer_tag", "boxed", "gsm8k", "answer_is", "answer_line", "last_number")

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
_GSM8K = re.compile(r"####\s*([^\n]*)")
_ANSWER_IS = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=|would\s+be|will\s+be)\s*[:=]?\s*([^\n]*)", re.IGNORECASE
)
_ANSWER_LINE = re.compile(r"^[ \t]*(?:A|Ans)[ \t]*[:.][ \t]*([^\n]+)", re.MULTILINE)
_CALC_ANNOTATION = re.compile(r"<<[^<>\n]{0,200}>>")  # GSM8K calculator marks "<<3+4=7>>" are not answers
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def braced_argument(text: str, start: int) -> tuple[str, int] | None:
    """The ``{…}`` group starting at ``text[start]`` (nested braces, ``\\{`` escapes), or None if unbalanced."""
    if start >= len(text) or text[start] != "{":
        return None
    depth, i = 0, start
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1: i], i + 1
        i += 1
    return None


_BOXED_SCAN = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])\s*|\\.|[{}]", re.DOTALL)


def boxed_contents(text: str) -> list[str]:
    """Contents of every balanced ``\\boxed{…}`` / ``\\boxed 5``, in the order they close.

    One linear pass with a brace stack (a rescan per ``\\boxed`` would be quadratic on hostile text).
    """
    found: list[str] = []
    stack: list[int] = []  # per open brace: content start if it opened a \boxed, else -1
    box_end = -1           # where the last \boxed token ended: a "{" exactly there is its argument
    for m in _BOXED_SCAN.finditer(text):
        tok = m.group(0)
        if tok == "{":
            stack.append(m.end() if m.start() == box_end else -1)
        elif tok == "}":
            if stack:
                start = stack.pop()
                if start >= 0:
                    found.append(text[start: m.start()])
        elif tok.startswith(("\\boxed", "\\fbox")):
            box_end = m.end()
            if box_end < len(text) and text[box_end] != "{" and (tok[-1].isspace() or text[box_end].isdigit()):
                bare = re.match(r"[^\s${}\\]+", text[box_end: box_end + 100])  # "\boxed 5"
                if bare:
                    found.append(bare.group(0))
    return found


def last_boxed(text: str) -> str | None:
    """Content of the last balanced ``\\boxed{…}`` (or ``\\boxed 5``) in ``text``."""
    # Fast path: the box that starts last is usually balanced; only scan from there (long LaTeX-heavy
    # completions would otherwise pay for a pass over every brace).
    at = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if at < 0:
        return None
    tail = boxed_contents(text[at:])
    if tail:
        return tail[-1].strip()
    found = boxed_contents(text)  # the last box is unbalanced: the last balanced one, in one linear pass
    return found[-1].strip() if found else None


def _answer_is(text: str) -> str | None:
    last = None
    for m in _ANSWER_IS.finditer(text):
        last = m
    if last is None:
        return None
    tail = last.group(1).strip()
    boxed = last_boxed(tail)
    if boxed is not None:
        return boxed
    # "$\frac{1}{2}$." / "\(x=3\)" / "42 dollars." — keep the first math span, else up to the sentence end.
    m = re.match(r"\$+([^$]+)\$+|\\\((.+?)\\\)|\\\[(.+?)\\\]", tail)
    if m:
        return next(g for g in m.groups() if g is not None).strip()
    tail = re.split(r"\.(?!\d)|;|!|\?|\s(?:because|since|as|so)\s", tail, maxsplit=1)[0]
    tail = tail.strip().strip("*").strip()
    return tail or None


def _last_number(text: str) -> str | None:
    text = _CALC_ANNOTATION.sub(" ", text)
    last = None
    for m in _NUMBER.finditer(text):
        last = m
    return last.group(0) if last else None


def apply_rule(rule: str, text: str) -> str | None:
    if rule == "answer_tag":
        tags = _ANSWER_TAG.findall(text)
        if not tags:
            return None
        body = tags[-1].strip()
        return last_boxed(body) or body or None
    if rule == "boxed":
        return last_boxed(text)
    if rule == "gsm8k":
        found = _GSM8K.findall(text)
        return found[-1].strip() or None if found else None
    if rule == "answer_is":
        return _answer_is(text)
    if rule == "answer_line":
        found = _ANSWER_LINE.findall(text)
        return found[-1].strip() or None if found else None
    if rule == "last_number":
        return _last_number(text)
    raise ValueError(f"unknown extraction rule {rule!r}; valid: {', '.join(RULES)}")


def extract(text: str, rules: tuple[str, ...] | list[str] = RULES, after_think: str | None = "</think>"
            ) -> tuple[str | None, str | None]:
    """``(answer, rule)`` from model text; ``(None, None)`` when no rule fires.

    With ``after_think`` set and present, only the text after its last occurrence is searched: the reasoning
    may try many candidate answers, the answer section is what the model commits to.
    """
    if after_think and after_think in text:
        text = text[text.rfind(after_think) + len(after_think):]
    for rule in rules:
        found = apply_rule(rule, text)
        if found:
            return found, rule
    return None, None


def extract_reference(answer: str) -> tuple[str, str]:
    """The gold value inside a reference: a bare value, ``$…$``, ``\\boxed{…}``, or a worked solution.

    Returns ``(value, how)``. A short one-line reference is the value itself; a worked solution (GSM8K
    ``#### 42``, a boxed MATH solution, OpenAI's ``A: 42``) is reduced with the same rules as a completion.
    """
    s = answer.strip()
    for rule in ("gsm8k", "answer_tag", "boxed"):
        found = apply_rule(rule, s)
        if found:
            return found, rule
    if "\n" not in s and len(s) <= 300:
        return s, "bare"
    found, rule = extract(s, ("answer_line", "answer_is", "last_number"), after_think=None)
    return (found, rule or "bare") if found else (s, "bare")
