"""Answer extraction from free model text and from reference answers (rlvr.verifiers.math_extract)."""

from __future__ import annotations

import pytest

from rlvr.verifiers.math_extract import RULES, apply_rule, extract, extract_reference, last_boxed, math_spans

# (completion, expected answer, expected rule) — default rule order
EXTRACT_CASES = [
    (r"so \boxed{42}.", "42", "boxed"),                                       # plain boxed
    (r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{1}{\sqrt{2}}", "boxed"),          # nested braces
    (r"\boxed{x=5}", "x=5", "boxed"),                                         # equation kept whole
    (r"first \boxed{1} then \boxed{2}", "2", "boxed"),                        # last box wins
    (r"\boxed 7 is it", "7", "boxed"),                                        # brace-less \boxed
    (r"\fbox{3}", "3", "boxed"),                                              # \fbox alias
    (r"\boxed{\{1, 2\}}", r"\{1, 2\}", "boxed"),                              # escaped braces inside
    (r"\boxed{1 and \boxed{2}", "2", "boxed"),                                # unbalanced outer box skipped
    ("<answer> 12 </answer>", "12", "answer_tag"),                            # answer tag
    (r"<answer>so \boxed{3}</answer> \boxed{4}", "3", "answer_tag"),          # tag outranks a stray box
    ("steps\n#### 1,234", "1,234", "gsm8k"),                                  # GSM8K marker
    ("The answer is 17.", "17", "answer_is"),                                 # sentence end stripped
    ("The final answer is $\\frac{3}{4}$.", r"\frac{3}{4}", "answer_is"),     # math span after "answer is"
    ("Final Answer: 3.5", "3.5", "answer_is"),                                # decimal point kept
    ("the answer is 12 because 3*4=12", "12", "answer_is"),                   # explanation cut off
    ("blah\nA: 26", "26", "answer_line"),                                     # OpenAI GSM8K "A:" line
    ("3 apples and 4 pears make 7", "7", "last_number"),                      # fallback: last number
    ("costs <<2*3=6>>6 dollars, total 1,200", "1,200", "last_number"),       # thousands separator kept
    ("total is 5<<5*1=5>>", "5", "last_number"),                              # calculator marks ignored
    ("half is 1/2", "1/2", "last_number"),                                    # simple fraction
    ("<think>maybe \\boxed{3}</think> so \\boxed{4}", "4", "boxed"),           # only after </think>
    ("<think>the answer is 3</think> it is 5", "5", "last_number"),           # think content ignored
    ("no digits here", None, None),                                           # nothing to find
    ("", None, None),                                                         # empty completion
]


@pytest.mark.parametrize("completion, answer, rule", EXTRACT_CASES)
def test_extract(completion, answer, rule):
    assert extract(completion) == (answer, rule)


def test_rules_are_configurable():
    text = "3 apples and 4 pears make 7"
    assert extract(text, rules=("boxed", "answer_is")) == (None, None)     # strict: no fallback
    assert extract("<think>x</think> 5", after_think=None) == ("5", "last_number")
    with pytest.raises(ValueError, match="valid"):
        apply_rule("nope", "x")
    assert set(RULES) >= {"boxed", "last_number"}


# (reference, expected value, how)
REFERENCE_CASES = [
    ("42", "42", "bare"),                                                     # bare value
    (r"$\frac{1}{2}$", r"$\frac{1}{2}$", "bare"),                             # LaTeX kept for normalisation
    (r"\boxed{7}", "7", "boxed"),                                             # boxed reference
    ("Janet sells 9 eggs.\nShe makes $18.\n#### 18", "18", "gsm8k"),         # GSM8K solution
    ("Natalia sold 48/2 = <<48/2=24>>24 clips.\nA: 72", "72", "answer_line"), # OpenAI model-solution style
    ("We get $$x=\\boxed{3}.$$", "3", "boxed"),                               # MATH worked solution
]


@pytest.mark.parametrize("reference, value, how", REFERENCE_CASES)
def test_extract_reference(reference, value, how):
    assert extract_reference(reference) == (value, how)


def test_last_boxed_survives_hostile_text():
    assert last_boxed("\\boxed{" * 10_000) is None          # unbalanced: nothing, quickly
    assert last_boxed("\\boxed{" + "{" * 500 + "1" + "}" * 500 + "}") == "{" * 500 + "1" + "}" * 500


# (text, span contents) — math spans follow pandoc's dollar rule, so currency is not math
SPAN_CASES = [
    ("so $x$ and $y=2$", ["x", "y=2"]),                        # two inline spans
    ("I paid $5 and got $3 back", []),                         # currency: no closing dollar
    ("costs $5 today. So $x=3$.", ["x=3"]),                    # a failed opener restarts at the next one
    ("$$\\frac12$$ then \\(a\\) and \\[b\\]", ["\\frac12", "a", "b"]),  # every delimiter kind
    ("price \\$5 is $\\$5$", ["\\$5"]),                       # escaped dollars are text
    ("a $x\ny$ b", []),                                        # no line break inside $..$
    ("\\[\n1\n\\]", ["1"]),                                    # display across lines
    ("$5$0", []),                                              # closing $ before a digit is not a closer
]


@pytest.mark.parametrize("text, contents", SPAN_CASES)
def test_math_spans(text, contents):
    assert [c for _, _, c in math_spans(text)] == contents


def test_new_rules_in_default_order():
    assert RULES.index("answer_is") < RULES.index("last_math") < RULES.index("bare") < RULES.index("last_number")
    assert extract("Final Answer: The final answer is $34$. I hope it is correct.") == ("34", "answer_is")
    assert extract("so $\\frac{10}{9}$") == ("\\frac{10}{9}", "last_math")
    assert extract("\\frac{10}{9}") == ("\\frac{10}{9}", "bare")
    assert extract("AZYUK2A") == (None, None)
    assert extract("\\boxed{1}\\boxed{2}", join_boxes=True) == ("1, 2", "boxed")
    assert extract_reference("$x=1$ or $x=2$") == ("x=1, x=2", "last_math")
