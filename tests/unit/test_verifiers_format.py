"""The format verifier: think-block structure, one final answer, DAPO soft overlong shaping."""

from __future__ import annotations

import pytest

from rlvr.verifiers import load
from rlvr.verifiers.testing import check_verifier

# (completion, expected score, failure reason or "" when ok) with default options (boxed answer)
STRUCTURE_CASES = [
    ("<think>\n37+4=41\n</think>\n\\boxed{41}", 1.0, ""),                 # the canonical shape
    ("<think>a</think> so \\boxed{41}.", 1.0, ""),                         # text around the answer is fine
    ("\\boxed{41}", 0.0, "no_think_close"),                                # no reasoning block
    ("<think>a\\boxed{41}", 0.0, "no_think_close"),                        # truncated: think never closed
    ("<think>a</think><think>b</think>\\boxed{1}", 0.0, "too_many_think_blocks"),  # two blocks
    ("hi <think>a</think>\\boxed{1}", 0.0, "text_before_think"),           # preamble before <think>
    ("</think>\\boxed{1}", 0.0, "no_think_open"),                          # close without open
    ("<think> </think>\\boxed{1}", 0.0, "empty_think"),                    # empty reasoning
    ("<think>a</think> 41", 0.0, "no_answer"),                             # no box after the block
    ("<think>a</think>\\boxed{}", 0.0, "no_answer"),                       # empty box
    ("<think>a</think>\\boxed{1} or \\boxed{2}", 0.0, "several_answers"),  # hedging with two boxes
    ("<think>\\boxed{1}</think> 1", 0.0, "no_answer"),                     # box only inside the reasoning
]


@pytest.mark.parametrize("completion, score, reason", STRUCTURE_CASES)
def test_structure(completion, score, reason):
    result = load("format")(completion, None)
    assert result.score == score
    if reason:
        assert result.metrics[f"fail/{reason}"] == 1.0


def test_options():
    assert load("format", answer="tag")("<think>a</think><answer>4</answer>", None).score == 1.0
    assert load("format", answer="tag")("<think>a</think><answer> </answer>", None).score == 0.0
    assert load("format", answer="any")("<think>a</think> four", None).score == 1.0
    # a chat template that already emitted "<think>": only the close tag is required
    assert load("format", require_think_open=False)("a</think>\\boxed{1}", None).score == 1.0
    assert load("format", exactly_one_answer=False)("<think>a</think>\\boxed{1}\\boxed{2}", None).score == 1.0
    tags = load("format", think_open="<reasoning>", think_close="</reasoning>")
    assert tags("<reasoning>a</reasoning>\\boxed{1}", None).score == 1.0
    with pytest.raises(Exception, match="answer must be"):
        load("format", answer="nope")


# (num_tokens, expected factor) for max_tokens=100, overlong_buffer=20: DAPO eq. 13
OVERLONG_CASES = [
    (50, 1.0),     # well inside the budget: no penalty
    (80, 1.0),     # at the buffer start: no penalty
    (90, 0.5),     # halfway into the buffer: penalty -0.5
    (100, 0.0),    # at the limit: penalty -1 + 0 ... (80-100)/20 = -1
    (130, 0.0),    # beyond the limit: -1
]


@pytest.mark.parametrize("num_tokens, factor", OVERLONG_CASES)
def test_soft_overlong(num_tokens, factor):
    shaped = load("format", check_structure=False, max_tokens=100, overlong_buffer=20)
    assert shaped("anything", None, meta={"num_tokens": num_tokens}).score == pytest.approx(factor)
    both = load("format", max_tokens=100, overlong_buffer=20)
    assert both("<think>a</think>\\boxed{1}", None, meta={"num_tokens": num_tokens}).score == pytest.approx(factor)


def test_overlong_without_length_does_not_apply_shaping():
    shaped = load("format", check_structure=False, overlong_buffer=20)
    result = shaped("x", None, meta={"max_tokens": 100})
    assert result.score == 1.0 and result.metrics["overlong/unknown_length"] == 1.0


def test_contract():
    check_verifier(load("format"), [("<think>a</think>\\boxed{1}", None, 1.0)])
    check_verifier(load("format", check_structure=False, max_tokens=10, overlong_buffer=5), meta={"num_tokens": 7})
