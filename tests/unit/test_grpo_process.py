"""Process supervision (rlvr.algo.process): step scores -> token-level advantages, against hand-computed values."""

import math

import pytest
import torch

from rlvr.algo.presets import resolve_algo, validate_algo
from rlvr.algo.process import (char_ends_per_token, check_process_verifier, process_advantages,
                               round_process_advantages, step_tokens)

# One group of two completions, width 6. Completion 0: step ending at token 1 scored 1, at token 3 scored 0;
# completion 1: one step ending at token 2 scored 1. Pool [1, 0, 1]: mean 2/3, population std sqrt(2)/3, so a
# 1 normalises to +1/sqrt(2) and a 0 to -sqrt(2).
STEPS = [[(1, 1.0), (3, 0.0)], [(2, 1.0)]]
UP, DOWN = 1 / math.sqrt(2), -math.sqrt(2)


def test_return_to_go_is_deepseekmaths_process_advantage():
    adv = process_advantages(STEPS, group_size=2, width=6, discount=1.0)
    expected = torch.tensor([[UP + DOWN, UP + DOWN, DOWN, DOWN, 0, 0],  # step 1 also gets step 2's score
                             [UP, UP, UP, 0, 0, 0]])
    assert torch.allclose(adv, expected, atol=1e-5)


def test_discount_zero_credits_each_step_with_its_own_score():
    adv = process_advantages(STEPS, group_size=2, width=6, discount=0.0)
    expected = torch.tensor([[UP, UP, DOWN, DOWN, 0, 0], [UP, UP, UP, 0, 0, 0]])
    assert torch.allclose(adv, expected, atol=1e-5)


def test_partial_discount():
    adv = process_advantages(STEPS, group_size=2, width=6, discount=0.5)
    assert adv[0, 0].item() == pytest.approx(UP + 0.5 * DOWN, abs=1e-5)


def test_unscored_completions_are_zero_and_left_out_of_the_statistics():
    with_none = process_advantages(STEPS + [None, []], group_size=4, width=6)
    assert torch.allclose(with_none[:2], process_advantages(STEPS, group_size=2, width=6))
    assert not with_none[2:].any()


@pytest.mark.parametrize("steps", [[[(1, 1.0)], [(2, 1.0)]],  # every step right: no contrast
                                   [[(1, 0.0)], None]])        # fewer than two steps
def test_groups_without_contrast_get_zero(steps):
    assert not process_advantages(steps, group_size=2, width=4).any()


def test_groups_are_normalised_separately():
    adv = process_advantages(STEPS + [[(0, 1.0)], [(0, 1.0)]], group_size=2, width=6)
    assert torch.allclose(adv[:2], process_advantages(STEPS, group_size=2, width=6))
    assert not adv[2:].any()  # the second group is all-correct


def test_steps_past_the_width_are_clipped():
    adv = process_advantages([[(1, 1.0), (9, 0.0)], [(1, 0.0)]], group_size=2, width=4)
    assert adv.shape == (2, 4)


def test_rejects_a_ragged_batch():
    with pytest.raises(ValueError, match="whole number of groups"):
        process_advantages(STEPS + [None], group_size=2, width=6)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("text", ["<think>\n88+9=97\n97-4=93\n</think>\n\\boxed{93}",
                                  "naïve 日本 12+3=15"])  # multi-byte characters split over tokens: slow path
def test_char_ends_match_prefix_decoding(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    prefix_ends = [len(tokenizer.decode(ids[:k + 1], skip_special_tokens=True)) for k in range(len(ids))]
    assert char_ends_per_token(tokenizer, ids, decoded, {}) == prefix_ends
    assert prefix_ends[-1] == len(decoded)


def test_step_tokens_find_the_token_that_completes_each_step(tokenizer):
    from rlvr.verifiers import load

    text = "<think>\n88+9=96\n96-4=92\n</think>\n\\boxed{92}"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    result = load("arith_steps")(text, "93", meta={"program": {"start": 88, "ops": [["+", 9], ["-", 4]]}})
    located = step_tokens(result.steps, char_ends_per_token(tokenizer, ids, text))
    assert [tokenizer.decode(ids[:t + 1]).endswith(s) for (t, _), s in zip(located, ["=96", "=92"])] == [True, True]
    assert [score for _, score in located] == [0.0, 1.0]


def test_round_process_advantages_from_real_verifier_results(tokenizer):
    from rlvr.rollout.types import Rollout
    from rlvr.verifiers import load

    verifier, meta = load("arith_steps"), {"program": {"start": 88, "ops": [["+", 9], ["-", 4]]}}
    texts = ["<think>\n88+9=97\n97-4=93\n</think>\n\\boxed{93}",   # both lines right
             "<think>\n88+9=96\n96-4=92\n</think>\n\\boxed{92}"]   # line 1 wrong, line 2 right on what it carried
    rollouts, results = [], []
    for t in texts:
        ids = tuple(tokenizer(t, add_special_tokens=False)["input_ids"])
        rollouts.append(Rollout("s", (1,), ids, (0.0,) * len(ids), t, "stop", 0))
        results.append({"arith_steps": verifier(t, "93", meta=meta)})
    width = max(len(r.completion_ids) for r in rollouts)
    adv, metrics = round_process_advantages(results, rollouts, "arith_steps", tokenizer, 2, width, 0.0, {})
    first_line_end = next(t for t in range(width) if tokenizer.decode(rollouts[1].completion_ids[:t + 1]).endswith("=96"))
    assert adv[1, first_line_end] < 0 < adv[1, first_line_end + 1]  # the wrong line is pushed down, the right one up
    assert (adv[0, :first_line_end + 1] > 0).all()
    assert metrics["process/step_score_mean"] == pytest.approx(3 / 4)
    assert metrics["process/steps_per_completion"] == 2


def test_unknown_process_verifier_fails_before_training():
    from types import SimpleNamespace

    samples = [SimpleNamespace(verifiers=("math", {"name": "arith_steps", "weight": 0}))]
    check_process_verifier("arith_steps", samples)  # weight 0: scored, kept out of the reward
    with pytest.raises(ValueError, match="scores none of the training prompts.*arith_steps, math"):
        check_process_verifier("arith_step", samples)


def test_process_knobs_are_validated():
    errors = validate_algo(resolve_algo("dapo", process_weight=-1.0, process_discount=1.5))
    assert any("process_weight" in e for e in errors) and any("process_discount" in e for e in errors)
