"""Find the final answer in free model text, and in a reference answer.

Extraction is kept apart from equivalence so that a reward can say *how* it found the answer: every rule has a
name, the verifier records which one fired, and a monitor can then tell a model that writes ``\\boxed{}`` from
one that is rewarded only because the last number in its rambling happened to match.

Rules (``RULES``), tried in the configured order; the first that finds something wins. Only the answer part is
searched (the text after the last ``</think>`` when there is one), and within a rule the *last* occurrence wins
(models restate the question's numbers first and the answer last):

- ``answer_tag``   ``<answer>…</answer>``; its body is read with the rules below (a box, an "answer is" sentence,
                   a math span), else the whole body is the answer
- ``boxed``        ``\\boxed{…}`` / ``\\fbox{…}`` with nested braces, and ``\\boxed 5``; with ``join_boxes`` every
                   distinct box on the final boxed line is part of the answer (``\\boxed{1}\\boxed{2}`` is "1, 2",
                   so ``\\boxed{50} or \\boxed{52}`` is a hedge that a single-value reference rejects)
- ``gsm8k``        ``#### 42``
- ``answer_is``    the last "the (final) answer is …", "Answer: …", ``**Answer:** …``, a "Final Answer" heading
                   followed by the answer; Minerva's "Final Answer: The final answer is $34$. I hope it is
                   correct." gives ``34``. After the keyword: the math span(s) that open the sentence, else the
                   sentence itself (cut at its end: ``.``/``;``/``?``/``!`` outside math, never ``\\!``/``\\;``),
                   else the one number in a wordy sentence. "$50$ or $52$" keeps both (a hedge, not 50).
- ``answer_line``  a line starting ``A: …`` (OpenAI's GSM8K model solutions)
- ``last_math``    the last math span (``$…$``, ``$$…$$``, ``\\(…\\)``, ``\\[…\\]``); spans joined only by
                   ",", "and", "or" are read together, like several boxes. ``$`` follows pandoc's rule (an opening
                   ``$`` is followed by a non-space, a closing one preceded by a non-space and not followed by a
                   digit, no line break inside), so currency ("$5 and $3") is not math.
- ``bare``         the whole answer part, when it is one short line of math rather than prose (``\\frac{10}{9}``,
                   ``x = 5``, ``(1, 4.5)``)
- ``last_number``  the last number in the text: a configurable, *weak* fallback (``WEAK_RULES``). It only runs when
                   no rule above found an answer, so it never overrides a final expression, and it never reads
                   digits out of words (``AZYUK2A`` has no number; ``-5``/``−5`` keep their sign).

References go through the same machinery (``extract_reference``), so a reference and a completion that write
the same thing are read the same way. All scans are linear-time (no nested quantifiers, one pass per rule), so a
100 KB completion costs milliseconds.
"""

from __future__ import annotations

import re

from rlvr.verifiers.math_normalize import normalize

RULES = ("answer_tag", "boxed", "gsm8k", "answer_is", "answer_line", "last_math", "bare", "last_number")
WEAK_RULES = ("last_number",)
"""Rules that are guesses rather than a stated answer; the verifier labels them ``extract/weak``."""

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
_GSM8K = re.compile(r"####\s*([^\n]*)")
# The keyword and its verb; what follows is read by _after_keyword. "**Answer:**" and "**Answer**:" both match.
_ANSWER_KW = re.compile(
    r"\b(?:final\s+answer|answer)(?:\s+to\s+(?:the|this)\s+(?:question|problem))?[ \t]*(?:\*\*|__)?[ \t]*"
    r"(?:is|:|=|would\s+be|will\s+be|should\s+be|must\s+be)(?![a-zA-Z])[ \t]*(?:\*\*|__)?[ \t]*[:=]?",
    re.IGNORECASE,
)
_ANSWER_HEADING = re.compile(r"^[ \t#*_]*final[ \t]+answer[ \t*_:#]*$", re.IGNORECASE | re.MULTILINE)
_ANSWER_LINE = re.compile(r"^[ \t]*(?:A|Ans)[ \t]*[:.][ \t]*([^\n]+)", re.MULTILINE)
_CALC_ANNOTATION = re.compile(r"<<[^<>\n]{0,200}>>")  # GSM8K calculator marks "<<3+4=7>>" are not answers
# A number is not read out of a word: no letter, digit, "_" or "." right before it ("AZYUK2A", "v1.2", "x_2").
_NUMBER = re.compile(
    r"(?:(?<![\d.])[-\u2212])?(?<![A-Za-z0-9_.\\])"
    r"(?:\\[dtc]?frac\{\d+\}\{\d+\}|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:/\d+)?|\.\d+)"
)
_BOXED_SCAN = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])\s*|\\.|[{}]", re.DOTALL)

# -- math spans --------------------------------------------------------------------------------------------------------
_MATH_TOKEN = re.compile(r"\\\\|\\\$|\$\$|\$|\\\(|\\\)|\\\[|\\\]|\n[ \t]*\n|\n")
_CLOSER = {"$": "$", "$$": "$$", "\\(": "\\)", "\\[": "\\]"}
# Text between two spans that makes them one answer: "$1$, $2$", "$2$ and $3$", "$50$ or maybe $52$".
_CONNECTOR = re.compile(
    r"[\s,;]*(?:(?:and|or|\\text\{\s*(?:and|or)\s*\})(?:\s+(?:maybe|possibly|perhaps|even|else))?)?[\s,;]*",
    re.IGNORECASE,
)
_MAX_CHAIN = 12
_NEGATED = re.compile(r"(?:\bnot|\brather\s+than|\binstead\s+of|n't)\s*(?:be\s+|equal\s+to\s+)?$", re.IGNORECASE)
_LONE_LETTER = re.compile(r"[a-z]")  # "$x$" names a variable; "$B$" may be a choice, "$\pi$" a value


def math_spans(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, content)`` of every math span, in order; one linear pass.

    An unclosed opener is dropped where it can no longer close (a line break for ``$``, a blank line for ``\\(``),
    and an opener of the same kind inside an open span restarts it, so unbalanced text never costs a rescan.
    """
    spans: list[tuple[int, int, str]] = []
    kind: str | None = None
    start = body = 0
    for m in _MATH_TOKEN.finditer(text):
        tok = m.group(0)
        if tok in ("\\\\", "\\$"):
            continue
        if tok[0] == "\n":
            if kind == "$" or (kind == "\\(" and tok.count("\n") > 1):
                kind = None
            continue
        nxt = text[m.end(): m.end() + 1]
        if kind is None:
            if tok == "$" and (not nxt or nxt.isspace()):
                continue  # "$ 5": not an opening dollar
            if tok in _CLOSER:
                kind, start, body = tok, m.start(), m.end()
            continue
        if kind == "$" and tok in ("$", "$$"):
            if text[m.start() - 1].isspace():  # "$5 and $3": the second dollar cannot close; it may open
                if tok == "$" and nxt and not nxt.isspace():
                    start, body = m.start(), m.end()
                else:
                    kind = None
                continue
            if tok == "$" and nxt.isdigit():
                continue
            spans.append((start, m.start() + 1, text[body: m.start()].strip()))
            kind = None
        elif tok == _CLOSER[kind]:
            spans.append((start, m.end(), text[body: m.start()].strip()))
            kind = None
        elif tok == kind:  # a second opener of the same kind: the first was not math
            start, body = m.start(), m.end()
    return spans


def _chain(text: str, spans: list[tuple[int, int, str]], at: int, step: int) -> list[str]:
    """Contents of the span ``spans[at]`` and its neighbours (direction ``step``) joined only by connectors."""
    picked = [at]
    i = at
    while 0 <= i + step < len(spans) and len(picked) < _MAX_CHAIN:
        a, b = (spans[i + step], spans[i]) if step < 0 else (spans[i], spans[i + step])
        if not _CONNECTOR.fullmatch(text, a[1], b[0]):
            break
        i += step
        picked.append(i)
    picked.sort()
    return _distinct(spans[k][2] for k in picked)


def _distinct(parts) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for p in parts:
        p = p.strip().rstrip(".,;").strip()
        key = normalize(p)
        if p and key not in seen:
            seen.add(key)
            out.append(p)
    return out


def last_math(text: str) -> tuple[str | None, int]:
    """``(answer, parts)`` from the last math span (and the spans joined to it by connectors)."""
    spans = [s for s in math_spans(text) if s[2]]
    if not spans:
        return None, 0
    # "..., so $x = 5$, the value of $x$.": a lone letter that only names a variable is not the answer when an
    # earlier span states one.
    last = len(spans) - 1
    while last > 0 and _LONE_LETTER.fullmatch(spans[last][2]):
        last -= 1
    if _LONE_LETTER.fullmatch(spans[last][2]):
        last = len(spans) - 1
    # "$x = 2$, not $x = 3$": a span the text rejects is not the answer.
    while last > 0 and _NEGATED.search(text, spans[last - 1][1], spans[last][0]):
        last -= 1
    parts = [_result_of(p) for p in _chain(text, spans, last, -1)]
    return (", ".join(parts), len(parts)) if parts else (None, 0)


_VARIABLE = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]")  # a letter that is not part of a command name


def _letter_free(s: str) -> bool:
    return not _VARIABLE.search(_TEXT_WRAP.sub(" ", s))


def _result_of(span: str) -> str:
    """``2 \times \frac{8}{27} = \frac{16}{27}`` -> ``\frac{16}{27}``: a worked computation states its result last.

    Only when the last two sides of a chain of ``=`` carry no variable (``x = 2 + 3 = 5`` -> ``5``); an equation
    such as ``x = 5`` or ``2x + 4y - 3 = 0`` stays whole for the equivalence checker.
    """
    if "=" not in span:
        return span
    sides, depth, start = [], 0, 0
    for i, c in enumerate(span):
        if c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        elif c == "=" and depth == 0 and span[i - 1: i] not in ("<", ">", "!", "\\") and span[i + 1: i + 2] != "=":
            sides.append(span[start:i])
            start = i + 1
    sides.append(span[start:])
    if len(sides) < 2 or not sides[-1].strip() or not sides[-2].strip():
        return span
    if _letter_free(sides[-1]) and _letter_free(sides[-2]):
        return sides[-1].strip()
    return span


# -- boxes -------------------------------------------------------------------------------------------------------------
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


def final_line_boxes(text: str) -> list[str]:
    """Distinct normalised box contents on the last line that has a box (order kept)."""
    at = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if at < 0:
        return []
    line_start = text.rfind("\n", 0, at) + 1
    line_end = text.find("\n", at)
    line = text[line_start: line_end if line_end >= 0 else len(text)]
    out: list[str] = []
    for content in boxed_contents(line):
        value = normalize(content)
        if value and value not in out:
            out.append(value)
    return out


def _boxed(text: str, join: bool) -> tuple[str | None, int]:
    found = last_boxed(text)
    if found is None or not join:
        return found, 1
    joined = final_line_boxes(text)
    if len(joined) > 1:
        return ", ".join(joined), len(joined)
    return found, 1


# -- sentences ---------------------------------------------------------------------------------------------------------
# Where an answer sentence ends (outside math): "." not before a digit, ";", "?", "!" (never "\!" / "\;" / "!="),
# a line break, or a clause that explains rather than states.
_SENTENCE_END = re.compile(
    r"\.(?!\d)|(?<!\\);|\?|(?<!\\)!(?!=)|\n"
    r"|\s(?:because|since|as|so|which|where|when|given|if|for\s+(?:a|an|the|all|each|every)|but|after|before)\s",
    re.IGNORECASE,
)
_MATH_WORDS = {
    "or", "and", "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
    "log", "ln", "exp", "sqrt", "pi", "inf", "infty", "mod", "gcd", "lcm", "max", "min", "det", "lim",
}
_ENGLISH_2 = {"is", "it", "so", "we", "be", "of", "to", "in", "at", "on", "by", "as", "an", "if", "my", "no", "me",
              "us", "do", "he", "up", "am"}
# "the answer is correct", "my answer is below": the keyword without an answer after it.
_NOT_ANSWERS = re.compile(
    r"(?:correct|incorrect|right|wrong|below|above|as\s+follows|follows|given|shown|boxed|clear|obvious|unique|"
    r"not|the\s+same|reasonable|consistent|valid|plausible|verified|confirmed)\b",
    re.IGNORECASE,
)
# Words that may stand between "the answer is" and the math that states it.
_FILLER = re.compile(
    r"[\s,:*_]*(?:(?:therefore|thus|hence|so|then|simply|just|exactly|indeed|clearly|now|finally|actually|"
    r"given\s+by|equal\s+to|equals|approximately|about|be|the\s+value|the\s+number|the\s+expression)[\s,:*_]*)*",
    re.IGNORECASE,
)
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname|textnormal)\s*\{[^{}]*\}")
_WORD = re.compile(r"[A-Za-z]{2,}")


def is_prose(s: str) -> bool:
    """True when ``s`` reads as words rather than a math answer ("she has 5 apples", not ``x y + \\sin x``)."""
    t = _TEXT_WRAP.sub(" ", s)
    t = re.sub(r"\\[a-zA-Z]+", " ", t)
    for w in _WORD.findall(t):
        lw = w.lower()
        if lw in _MATH_WORDS:
            continue
        if len(w) >= 3 or lw in _ENGLISH_2:
            return True
    return False


def _numbers(s: str) -> list[str]:
    return [m.group(0) for m in _NUMBER.finditer(_CALC_ANNOTATION.sub(" ", s))]


def _after_keyword(text: str, pos: int) -> tuple[str | None, int]:
    """The answer stated after an "answer is" keyword ending at ``pos``; ``(None, 0)`` when there is none."""
    tail = text[pos: pos + 3000]
    stripped = tail.lstrip(" \t*_:=#")
    first_line = stripped.split("\n", 1)[0]
    if not first_line.strip(" \t*_:#.-"):  # "Final Answer:\n\n$$\frac{10}{9}$$": the answer is the next block
        stripped = stripped[len(first_line):].lstrip(" \t\n*_:=#")
    tail = stripped
    if not tail:
        return None, 0
    spans = [s for s in math_spans(tail) if s[2]]
    if spans and spans[0][0] == 0:  # "is $34$. I hope it is correct." / "is \(x=3\)" / "is $50$ or $52$."
        parts = _chain(tail, spans, 0, 1)
        return (", ".join(parts), len(parts)) if parts else (None, 0)
    # The sentence: up to its first end outside math.
    end = len(tail)
    for m in _SENTENCE_END.finditer(tail):
        if not any(a <= m.start() < b for a, b, _ in spans):
            end = m.start()
            break
    sentence = tail[:end]
    inner = [s for s in spans if s[1] <= end]
    if inner:
        lead = sentence[: inner[0][0]]
        if _FILLER.fullmatch(lead):  # "is therefore $5$" / "is given by \(x=3\)"
            parts = _chain(sentence, inner, 0, 1)
            return (", ".join(parts), len(parts)) if parts else (None, 0)
        return None, 0  # "answer: first we compute $2+3$ ...": reasoning, not a stated answer
    cand = sentence.strip().strip("*_").strip().rstrip(".,:").strip()
    if not cand or _NOT_ANSWERS.match(cand):
        return None, 0
    if is_prose(cand):
        nums = list(dict.fromkeys(_numbers(cand)))
        if len(nums) == 1:  # "that she has 12 apples left" -> 12
            return nums[0], 1
        if nums and not re.search(r"\bor\b", cand, re.IGNORECASE):  # several numbers and no hedge: reasoning
            return None, 0
        if not nums and len(cand.split()) > 2:  # "the answer is in the figure": no answer stated here
            return None, 0
    return cand, 1


def _answer_is(text: str) -> tuple[str | None, int]:
    if "nswer" not in text and "NSWER" not in text:  # fast path: most texts have no keyword at all
        return None, 0
    keys = [m.end() for m in _ANSWER_KW.finditer(text)]
    keys += [m.end() for m in _ANSWER_HEADING.finditer(text)]
    keys.sort()
    for pos in reversed(keys[-4:]):  # "I hope the answer is correct." does not hide the answer stated before it
        found, parts = _after_keyword(text, pos)
        if found is not None:
            return found, parts
    return None, 0


def _last_number(text: str) -> str | None:
    nums = _numbers(text)
    return nums[-1] if nums else None


def _bare(text: str) -> str | None:
    s = text.strip().strip("*").strip()
    if not s or len(s) > 300 or "\n" in s or is_prose(s) or not re.search(r"[0-9A-Za-z]", s):
        return None
    if "$" in s and not math_spans(s):  # a stray dollar ("$5 and $3") is not a math answer
        return None
    return s


# -- rules -------------------------------------------------------------------------------------------------------------
def _apply(rule: str, text: str, join: bool) -> tuple[str | None, int]:
    if rule == "answer_tag":
        tags = _ANSWER_TAG.findall(text)
        if not tags:
            return None, 0
        body = tags[-1].strip()
        for inner in ("boxed", "answer_is", "last_math", "bare"):
            found, parts = _apply(inner, body, join)
            if found:
                return found, parts
        return (body, 1) if body else (None, 0)
    if rule == "boxed":
        return _boxed(text, join)
    if rule == "gsm8k":
        found = _GSM8K.findall(text)
        return (found[-1].strip() or None if found else None), 1
    if rule == "answer_is":
        return _answer_is(text)
    if rule == "answer_line":
        found = _ANSWER_LINE.findall(text)
        return (found[-1].strip() or None if found else None), 1
    if rule == "last_math":
        return last_math(_CALC_ANNOTATION.sub(" ", text))
    if rule == "bare":
        return _bare(text), 1
    if rule == "last_number":
        return _last_number(text), 1
    raise ValueError(f"unknown extraction rule {rule!r}; valid: {', '.join(RULES)}")


def apply_rule(rule: str, text: str) -> str | None:
    """What one rule finds in ``text`` (the last box only; ``extract_parts`` joins the final boxed line)."""
    return _apply(rule, text, False)[0]


def answer_part(text: str, after_think: str | None = "</think>") -> str:
    """The text after the last ``after_think`` marker (the whole text when there is none)."""
    if after_think and after_think in text:
        return text[text.rfind(after_think) + len(after_think):]
    return text


def extract_parts(text: str, rules: tuple[str, ...] | list[str] = RULES, after_think: str | None = "</think>",
                  join_boxes: bool = True) -> tuple[str | None, str | None, int]:
    """``(answer, rule, parts)``: like ``extract``; ``parts`` > 1 when several boxes/spans formed the answer."""
    text = answer_part(text, after_think)
    for rule in rules:
        found, parts = _apply(rule, text, join_boxes)
        if found:
            return found, rule, parts
    return None, None, 0


def extract(text: str, rules: tuple[str, ...] | list[str] = RULES, after_think: str | None = "</think>",
            join_boxes: bool = False) -> tuple[str | None, str | None]:
    """``(answer, rule)`` from model text; ``(None, None)`` when no rule fires.

    With ``after_think`` set and present, only the text after its last occurrence is searched: the reasoning
    may try many candidate answers, the answer section is what the model commits to. ``join_boxes`` (the
    verifier's default) reads every distinct box on the final boxed line as one answer list.
    """
    found, rule, _ = extract_parts(text, rules, after_think, join_boxes)
    return found, rule


def extract_reference(answer: str) -> tuple[str, str]:
    """The gold value inside a reference: a bare value, ``$…$``, ``\\boxed{…}``, or a worked solution.

    Returns ``(value, how)``. A worked solution (GSM8K ``#### 42``, a boxed MATH solution, OpenAI's ``A: 42``)
    is reduced with the same rules as a completion; so is a one-line reference that mixes math and words
    (``$5$ apples``, ``$x=1$ or $x=2$``). A reference that is one value (``42``, ``$[0,1)$``, ``\\frac{10}{9}``)
    is the value itself; normalisation then reads it exactly as it reads the same text in a completion.
    """
    s = answer.strip()
    for rule in ("gsm8k", "answer_tag", "boxed"):
        found, _ = _apply(rule, s, True)
        if found:
            return found, rule
    if "\n" not in s and len(s) <= 300:
        spans = [sp for sp in math_spans(s) if sp[2]]
        if spans and not (len(spans) == 1 and spans[0][0] == 0 and spans[0][1] == len(s)):
            found, _ = last_math(s)
            if found:
                return found, "last_math"
        return s, "bare"
    found, rule, _ = extract_parts(s, ("answer_line", "answer_is", "last_math", "last_number"), after_think=None)
    return (found, rule or "bare") if found else (s, "bare")
