"""Advantages, dynamic sampling and overlong handling: hand-computed values on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from rlvr.algo.advantages import compute_advantages, informative_groups, zero_variance_fraction
from rlvr.algo.presets import PRESETS, AlgoConfig, resolve_algo, validate_algo
from rlvr.algo.filtering import dynamic_sampling_filter, overlong_mask, overlong_penalty

NAN = float("nan")


def test_group_std_scaling_by_hand():
    # group [1, 0, 0, 1]: mean 0.5, population std 0.5 -> (r - 0.5) / 0.5 = +-1
    # group [1, 0, 0, 0]: mean 0.25, var = (0.75^2 + 3 * 0.25^2) / 4 = 0.1875, std = 0.4330
    #   -> 0.75 / 0.4330 = 1.7321, -0.25 / 0.4330 = -0.5774
    adv = compute_advantages(torch.tensor([[1.0, 0, 0, 1], [1, 0, 0, 0]]), "group", eps=0.0)
    torch.testing.assert_close(adv[0], torch.tensor([1.0, -1, -1, 1]))
    s = math.sqrt(0.1875)
    torch.testing.assert_close(adv[1], torch.tensor([0.75 / s, -0.25 / s, -0.25 / s, -0.25 / s]))


def test_no_std_scaling_is_plain_centering():
    # Dr. GRPO: r - mean. [2, 0, 1] -> mean 1 -> [1, -1, 0]
    adv = compute_advantages(torch.tensor([[2.0, 0, 1]]), "none")
    torch.testing.assert_close(adv, torch.tensor([[1.0, -1, 0]]))


def test_batch_std_scaling_uses_centred_rewards_of_informative_groups():
    # centred: group 0 [1, 0] -> [0.5, -0.5]; group 1 [0, 4] -> [-2, 2]; group 2 [3, 3] has zero variance
    # batch scale = RMS(0.5, -0.5, -2, 2) = sqrt((0.25 + 0.25 + 4 + 4) / 4) = sqrt(2.125) = 1.4577
    r = torch.tensor([[1.0, 0], [0, 4], [3, 3]])
    adv = compute_advantages(r, "batch", eps=0.0)
    s = math.sqrt(2.125)
    torch.testing.assert_close(adv, torch.tensor([[0.5 / s, -0.5 / s], [-2 / s, 2 / s], [0.0, 0.0]]))


def test_negative_weight_scales_only_failed_completions():
    # W-REINFORCE (2506.01347): [1, 0, 0, 1] -> +-1 under group std; lambda 0.1 -> [1, -0.1, -0.1, 1]
    rewards = torch.tensor([[1.0, 0, 0, 1], [1, 0, 0, 0], [1, 1, 1, 1]])
    full = compute_advantages(rewards, "group", eps=0.0)
    adv = compute_advantages(rewards, "group", eps=0.0, negative_weight=0.1)
    torch.testing.assert_close(adv[0], torch.tensor([1.0, -0.1, -0.1, 1]))
    torch.testing.assert_close(adv[1], torch.where(full[1] < 0, full[1] * 0.1, full[1]))
    assert adv[2].eq(0).all()  # zero-variance groups stay exactly 0
    only_positive = compute_advantages(rewards, "group", eps=0.0, negative_weight=0.0)
    assert only_positive.min() == 0 and torch.equal(only_positive > 0, full > 0)
    assert validate_algo(AlgoConfig(negative_weight=1.5)) and validate_algo(AlgoConfig(negative_weight=-0.1))
    assert not validate_algo(AlgoConfig(negative_weight=0.0))


def test_leave_one_out_baseline():
    # [1, 0, 0, 1]: baseline of item j = mean of the other three: 1/3 for the 1s, 2/3 for the 0s
    #   -> [1 - 1/3, 0 - 2/3, 0 - 2/3, 1 - 1/3] = [2/3, -2/3, -2/3, 2/3] = G/(G-1) * (r - mean)
    adv = compute_advantages(torch.tensor([[1.0, 0, 0, 1]]), "none", leave_one_out=True)
    torch.testing.assert_close(adv, torch.tensor([[2 / 3, -2 / 3, -2 / 3, 2 / 3]]))
    plain = compute_advantages(torch.tensor([[1.0, 0, 0, 1]]), "none")
    torch.testing.assert_close(adv, plain * 4 / 3)


@pytest.mark.parametrize("scaling", ["group", "batch", "none"])
@pytest.mark.parametrize("loo", [False, True])
def test_zero_variance_groups_get_exactly_zero(scaling, loo):
    # 0.1 * 3 has float rounding: without the explicit rule (0.1 - mean) / eps would be ~1e-10 / 1e-6, not 0
    r = torch.tensor([[0.1, 0.1, 0.1], [1, 1, 1], [0, 0, 0], [0, 1, 0]])
    adv = compute_advantages(r, scaling, leave_one_out=loo)
    assert torch.equal(adv[:3], torch.zeros(3, 3))
    assert adv[3].abs().sum() > 0
    assert zero_variance_fraction(r) == 0.75


def test_nan_rewards_get_zero_and_are_left_out_of_statistics():
    # [1, NaN, 0, 0]: statistics over [1, 0, 0] only: mean 1/3, std sqrt(2/9)
    #   -> 1: (2/3) / 0.4714 = 1.4142; 0: (-1/3) / 0.4714 = -0.7071; NaN -> 0
    adv = compute_advantages(torch.tensor([[1.0, NAN, 0, 0]]), "group", eps=0.0)
    torch.testing.assert_close(adv, torch.tensor([[math.sqrt(2), 0.0, -math.sqrt(0.5), -math.sqrt(0.5)]]))
    # the same as if the NaN completion were not in the group at all
    torch.testing.assert_close(adv[0, [0, 2, 3]], compute_advantages(torch.tensor([[1.0, 0, 0]]), eps=0.0)[0])


def test_groups_with_fewer_than_two_valid_rewards_are_zero():
    r = torch.tensor([[NAN, NAN, NAN], [1.0, NAN, NAN], [NAN, 1.0, 0.0]])
    for loo in (False, True):
        adv = compute_advantages(r, "group", leave_one_out=loo)
        assert torch.isfinite(adv).all()
        assert torch.equal(adv[:2], torch.zeros(2, 3))
        assert adv[2, 0] == 0 and adv[2, 1] > 0 > adv[2, 2]
    assert informative_groups(r).tolist() == [False, False, True]


def test_advantages_sum_to_zero_per_group_and_rank_like_rewards():
    torch.manual_seed(0)
    r = torch.rand(5, 6)
    for scaling in ("group", "batch", "none"):
        for loo in (False, True):
            adv = compute_advantages(r, scaling, leave_one_out=loo)
            torch.testing.assert_close(adv.sum(dim=1), torch.zeros(5), atol=1e-5, rtol=0)
            assert torch.equal(adv.argsort(dim=1), r.argsort(dim=1))


def test_advantages_reject_bad_input():
    with pytest.raises(ValueError, match=r"\[B, G\]"):
        compute_advantages(torch.zeros(4))
    with pytest.raises(ValueError, match="std_scaling"):
        compute_advantages(torch.zeros(2, 2), "global")


# ------------------------------------------------------------------------------------------- filtering
def test_dynamic_sampling_keeps_only_mixed_groups():
    acc = torch.tensor([[1.0, 1, 1], [0, 0, 0], [1, 0, 1], [NAN, 1, NAN], [0.5, 0.5, 0.5], [0.5, 1, 1]])
    keep, stats = dynamic_sampling_filter(acc)
    assert keep.tolist() == [False, False, True, False, False, True]
    assert stats["filter/kept_frac"] == pytest.approx(2 / 6)
    assert stats["filter/all_correct_frac"] == pytest.approx(1 / 6)
    assert stats["filter/all_wrong_frac"] == pytest.approx(1 / 6)
    assert stats["filter/unscored_frac"] == pytest.approx(1 / 6)


def test_dynamic_sampling_judges_accuracy_not_shaped_reward():
    # all correct, but a length penalty made the shaped rewards differ: still no signal about correctness
    accuracy = torch.tensor([[1.0, 1, 1, 1]])
    shaped = accuracy + torch.tensor([[0.0, -0.2, -0.5, 0.0]])
    assert not dynamic_sampling_filter(accuracy)[0].item()
    assert informative_groups(shaped).item()  # the reward alone would have kept it


def test_overlong_mask_zeroes_truncated_rows():
    mask = torch.ones(3, 4)
    out = overlong_mask(mask, torch.tensor([False, True, False]))
    assert out.tolist() == [[1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]]
    with pytest.raises(ValueError):
        overlong_mask(mask, torch.tensor([True]))


def test_soft_overlong_penalty_by_hand():
    # L_max = 20, L_cache = 5 -> free up to 15; L = 16 -> (15 - 16) / 5 = -0.2; 18 -> -0.6; 20 -> -1
    pen = overlong_penalty(torch.tensor([3, 15, 16, 18, 20, 25]), max_new_tokens=20, buffer=5)
    torch.testing.assert_close(pen, torch.tensor([0.0, 0, -0.2, -0.6, -1, -1]))
    # default buffer: 20% of 20 = 4 -> free up to 16; 18 -> -0.5
    torch.testing.assert_close(overlong_penalty(torch.tensor([16, 18]), 20), torch.tensor([0.0, -0.5]))
    with pytest.raises(ValueError):
        overlong_penalty(torch.tensor([1]), 10, buffer=11)


# ------------------------------------------------------------------------------------------- presets
def test_presets_expand_to_valid_knob_sets():
    assert sorted(PRESETS) == ["cispo", "dapo", "dr_grpo", "grpo", "gspo"]
    for name in PRESETS:
        cfg = resolve_algo(name)
        assert cfg.name == name and validate_algo(cfg) == []
    # the papers' values, written out here rather than read from the table under test
    grpo = resolve_algo("grpo")
    assert (grpo.loss, grpo.clip_low, grpo.clip_high, grpo.aggregation, grpo.std_scaling, grpo.kl_beta) == \
        ("clip", 0.2, 0.2, "sequence", "group", 0.04)
    assert resolve_algo("dapo").kl_beta == resolve_algo("dr_grpo").kl_beta == 0.0
    assert (resolve_algo("gspo").clip_low, resolve_algo("gspo").clip_high) == (3e-4, 4e-4)
    assert (resolve_algo("cispo").clip_low, resolve_algo("cispo").aggregation) == (1.0, "token")
    assert PRESETS["dapo"]["dynamic_sampling"] is True and PRESETS["grpo"]["kl_beta"] == 0.04
    dapo = resolve_algo("dapo")
    assert (dapo.clip_low, dapo.clip_high, dapo.aggregation, dapo.dynamic_sampling, dapo.overlong) == \
        (0.2, 0.28, "token", True, "penalty")
    dr = resolve_algo("dr_grpo")
    assert (dr.aggregation, dr.std_scaling) == ("constant", "none")
    assert resolve_algo("gspo").loss == "gspo" and resolve_algo("cispo").loss == "cispo"
    assert resolve_algo("dapo", clip_high=0.3).clip_high == 0.3


def test_algo_config_works_as_structured_omegaconf():
    from omegaconf import OmegaConf

    from rlvr.algo.loss import policy_loss

    node = OmegaConf.structured(resolve_algo("dr_grpo"))
    node.norm_constant = 8
    assert validate_algo(node) == []
    loss, _ = policy_loss(torch.zeros(2, 4, requires_grad=True), None, None, torch.tensor([1.0, -1.0]),
                          torch.ones(2, 4), node)
    assert loss.item() == 0.0  # on-policy, ratio 1: (-1 * 4 + 1 * 4) / (2 * 8)


def test_resolve_and_validate_report_problems():
    with pytest.raises(ValueError, match="dapo"):
        resolve_algo("ppo")
    with pytest.raises(ValueError, match="clip_hi"):
        resolve_algo("grpo", clip_hi=0.3)
    errors = validate_algo(AlgoConfig(loss="reinforce", aggregation="mean", kl_beta=-1, clip_low=1.5))
    assert len(errors) == 4
    assert any("algo.loss" in e for e in errors) and any("algo.kl_beta" in e for e in errors)


def test_every_algo_field_has_help_and_paper_presets_cite_papers():
    from dataclasses import fields

    helps = {f.name: f.metadata.get("help", "") for f in fields(AlgoConfig)}
    assert all(helps.values()), [k for k, v in helps.items() if not v]
    joined = " ".join(helps.values())
    for arxiv in ("2402.03300", "2503.20783", "2503.14476", "2507.18071", "2506.13585"):
        assert arxiv in joined
    assert "Yao et al." in helps["tis"]
