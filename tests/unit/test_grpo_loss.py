"""policy_loss against hand-computed values on a 2 x 3 batch, plus gradient-direction and masking checks.

Shared fixture (N = 2 completions, T = 3 tokens, the last token of row 1 is padding):
    ratios r = exp(logprobs - old) = [[1.5, 1.0, 0.5],
                                      [1.1, 0.7, (1.0, masked)]]
    advantages A = [+1, -1]
    old = [[-1.0, -2.0, -0.5], [-1.5, -0.3, -1.0]],  logprobs = old + log r
"""

from __future__ import annotations

import math

import pytest
import torch

from rlvr.algo.presets import AlgoConfig, resolve_algo
from rlvr.algo.loss import aggregate, policy_loss

OLD = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.3, -1.0]])
RATIO = torch.tensor([[1.5, 1.0, 0.5], [1.1, 0.7, 1.0]])
ADV = torch.tensor([1.0, -1.0])
MASK = torch.tensor([[1.0, 1, 1], [1, 1, 0]])


def lp() -> torch.Tensor:
    return (OLD + RATIO.log()).clone().requires_grad_(True)


def cfg(**kw) -> AlgoConfig:
    base = dict(loss="clip", clip_low=0.2, clip_high=0.2, aggregation="token", kl_beta=0.0, tis=False)
    return AlgoConfig(**{**base, **kw})


# ------------------------------------------------------------------------------------------ clip (PPO / GRPO)
def test_clip_token_mean_by_hand():
    # row 0 (A=+1): -min(r, clip(r, .8, 1.2)) = -[min(1.5, 1.2), 1.0, min(.5, .8)] = -[1.2, 1.0, 0.5]
    # row 1 (A=-1): -min(-r, -clip(r))       =  [max(1.1, 1.1), max(.7, .8)]     =  [1.1, 0.8]
    # token mean: (-1.2 - 1.0 - 0.5 + 1.1 + 0.8) / 5 = -0.8 / 5 = -0.16
    logprobs = lp()
    loss, m = policy_loss(logprobs, OLD, None, ADV, MASK, cfg())
    assert loss.item() == pytest.approx(-0.16, abs=1e-6)
    # clipped high: (0,0) ratio 1.5 > 1.2 with A > 0; clipped low: (1,1) ratio .7 < .8 with A < 0 -> 1/5 each
    assert m["clip/high_frac"].item() == pytest.approx(0.2)
    assert m["clip/low_frac"].item() == pytest.approx(0.2)
    assert m["clip/frac"].item() == pytest.approx(0.4)
    # ratio mean over the 5 real tokens: (1.5 + 1 + .5 + 1.1 + .7) / 5 = 0.96
    assert m["ratio/mean"].item() == pytest.approx(0.96, abs=1e-6)
    assert m["ratio/max"].item() == pytest.approx(1.5, abs=1e-6)
    # approx KL(old || new), k3 = r - 1 - log r, mean over real tokens
    k3 = sum(r - 1 - math.log(r) for r in (1.5, 1.0, 0.5, 1.1, 0.7)) / 5
    assert m["approx_kl"].item() == pytest.approx(k3, abs=1e-6)
    # gradient: -A * r / 5 where unclipped, 0 where clipped or masked
    loss.backward()
    expected = torch.tensor([[0.0, -1.0 / 5, -0.5 / 5], [1.1 / 5, 0.0, 0.0]])
    torch.testing.assert_close(logprobs.grad, expected)


def test_clip_higher_dapo():
    # clip_high 0.28: token (0,0) becomes -min(1.5, 1.28) = -1.28; sum = -1.28 - 1 - .5 + 1.1 + .8 = -0.88
    loss, m = policy_loss(lp(), OLD, None, ADV, MASK, cfg(clip_high=0.28))
    assert loss.item() == pytest.approx(-0.88 / 5, abs=1e-6)
    assert m["clip/high_frac"].item() == pytest.approx(0.2)


def test_aggregations_by_hand():
    # token terms (see test_clip_token_mean_by_hand): row 0 [-1.2, -1.0, -0.5], row 1 [1.1, 0.8]
    # sequence: mean(-2.7 / 3, 1.9 / 2) = mean(-0.9, 0.95) = 0.025
    # constant: sum / (N * T) = -0.8 / (2 * 3); with norm_constant 10: -0.8 / 20
    seq, _ = policy_loss(lp(), OLD, None, ADV, MASK, cfg(aggregation="sequence"))
    const, _ = policy_loss(lp(), OLD, None, ADV, MASK, cfg(aggregation="constant"))
    const10, _ = policy_loss(lp(), OLD, None, ADV, MASK, cfg(aggregation="constant", norm_constant=10))
    assert seq.item() == pytest.approx(0.025, abs=1e-6)
    assert const.item() == pytest.approx(-0.8 / 6, abs=1e-6)
    assert const10.item() == pytest.approx(-0.04, abs=1e-6)


def test_aggregation_weights_tokens_differently():
    # on-policy (ratio 1), A = +1 for a 1-token and a 4-token completion: gradient per token is -A / denominator
    mask = torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 1]])
    grads = {}
    for mode in ("token", "sequence", "constant"):
        logprobs = torch.zeros(2, 4, requires_grad=True)
        loss, _ = policy_loss(logprobs, None, None, torch.tensor([1.0, 1.0]), mask, cfg(aggregation=mode))
        loss.backward()
        grads[mode] = logprobs.grad
    # token: every token 1/5; sequence: short 1/2, long 1/8 per token; constant: 1/(2*4) everywhere
    assert grads["token"][0, 0].item() == pytest.approx(-1 / 5) and grads["token"][1, 0].item() == pytest.approx(-1 / 5)
    assert grads["sequence"][0, 0].item() == pytest.approx(-1 / 2)
    assert grads["sequence"][1, 0].item() == pytest.approx(-1 / 8)
    assert grads["constant"][0, 0].item() == pytest.approx(-1 / 8) and grads["constant"][1, 3].item() == pytest.approx(-1 / 8)
    assert grads["token"][0, 1:].abs().sum() == 0  # padding gets nothing


def test_num_items_lets_micro_batches_add_up():
    torch.manual_seed(0)
    logprobs, old = torch.randn(4, 5), torch.randn(4, 5) * 0.1
    adv = torch.tensor([1.0, -0.5, 0.3, -1.0])
    mask = torch.tensor([[1.0] * 5, [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    for mode, total in (("token", mask.sum().item()), ("sequence", 4), ("constant", 4)):
        c = cfg(aggregation=mode)
        full, _ = policy_loss(logprobs + old, logprobs, None, adv, mask, c)
        halves = sum(policy_loss((logprobs + old)[s], logprobs[s], None, adv[s], mask[s], c, num_items=total)[0]
                     for s in (slice(0, 2), slice(2, 4)))
        assert halves.item() == pytest.approx(full.item(), abs=1e-6), mode


# ------------------------------------------------------------------------------------------ GSPO
def test_gspo_sequence_ratio_by_hand():
    # s0 = (1.5 * 1.0 * 0.5) ** (1/3) = 0.75 ** (1/3) = 0.908560; s1 = (1.1 * 0.7) ** (1/2) = 0.877496
    # clip 0.2: nothing clipped; sequence mean of [-s0 (A=+1), +s1 (A=-1)] = (-0.908560 + 0.877496) / 2
    s0, s1 = 0.75 ** (1 / 3), 0.77 ** 0.5
    logprobs = lp()
    loss, m = policy_loss(logprobs, OLD, None, ADV, MASK, cfg(loss="gspo", aggregation="sequence"))
    assert loss.item() == pytest.approx((-s0 + s1) / 2, abs=1e-6)
    assert m["clip/frac"].item() == 0
    # d/dlogp of 0.5 * (-s0 + s1): ds/dlogp_t = s / |y|  ->  row 0: -0.5 * s0 / 3; row 1: +0.5 * s1 / 2
    loss.backward()
    expected = torch.tensor([[-s0 / 6] * 3, [s1 / 4, s1 / 4, 0.0]])
    torch.testing.assert_close(logprobs.grad, expected)


def test_gspo_matches_direct_sequence_formula_and_clips_per_sequence():
    # GSPO preset clip range 3e-4 / 4e-4: s1 = 0.8775 < 0.9997 with A < 0 -> whole sequence clipped (2 of 5 tokens);
    # s0 < 1 with A > 0 is not clipped. Loss = mean(-s0, +0.9997)
    c = resolve_algo("gspo")
    s0 = 0.75 ** (1 / 3)
    logprobs = lp()
    loss, m = policy_loss(logprobs, OLD, None, ADV, MASK, c)
    assert loss.item() == pytest.approx((-s0 + (1 - 3e-4)) / 2, abs=1e-6)
    assert m["clip/low_frac"].item() == pytest.approx(0.4) and m["clip/high_frac"].item() == 0
    # the same objective written directly on sequences has the same gradient
    loss.backward()
    x = lp()
    s = torch.exp(((x - OLD) * MASK).sum(1) / MASK.sum(1))  # [N]
    direct = -torch.minimum(s * ADV, s.clamp(1 - 3e-4, 1 + 4e-4) * ADV).mean()
    direct.backward()
    torch.testing.assert_close(logprobs.grad, x.grad * MASK)
    assert logprobs.grad[1].abs().sum() == 0  # clipped sequence: no gradient at all


def test_gspo_equals_token_clip_for_one_token_completions():
    torch.manual_seed(1)
    old, logprobs = torch.randn(6, 1), torch.randn(6, 1) * 0.3
    adv, mask = torch.randn(6), torch.ones(6, 1)
    a, _ = policy_loss(old + logprobs, old, None, adv, mask, cfg(loss="gspo"))
    b, _ = policy_loss(old + logprobs, old, None, adv, mask, cfg(loss="clip"))
    assert a.item() == pytest.approx(b.item(), abs=1e-6)


# ------------------------------------------------------------------------------------------ CISPO
def test_cispo_by_hand_keeps_gradient_of_clipped_tokens():
    # weights sg(clip(r, 0, 1.28)) = [[1.28, 1.0, 0.5], [1.1, 0.7]]; term = -w * A * logprob
    # logprobs: -1 + ln 1.5 = -0.594535, -2.0, -0.5 + ln .5 = -1.193147 | -1.5 + ln 1.1 = -1.404690, -0.3 + ln .7 = -0.656675
    # row 0: 1.28 * .594535 + 2.0 + .5 * 1.193147 = 3.357578;  row 1: -(1.1 * 1.404690 + .7 * .656675) = -2.004832
    # token mean: (3.357578 - 2.004832) / 5 = 0.270549
    logprobs = lp()
    loss, m = policy_loss(logprobs, OLD, None, ADV, MASK, cfg(loss="cispo", clip_low=1.0, clip_high=0.28))
    assert loss.item() == pytest.approx(0.270549, abs=1e-5)
    assert m["clip/high_frac"].item() == pytest.approx(0.2) and m["clip/low_frac"].item() == 0
    loss.backward()
    # gradient -w * A / 5: token (0,0) has ratio 1.5 beyond the cap and still trains (PPO would drop it)
    expected = torch.tensor([[-1.28 / 5, -1.0 / 5, -0.5 / 5], [1.1 / 5, 0.7 / 5, 0.0]])
    torch.testing.assert_close(logprobs.grad, expected)


# ------------------------------------------------------------------------------------------ KL and TIS
def test_k3_kl_to_reference_by_hand():
    # A = 0 so only the KL term remains. d = ref - logprob = [[.1, 0, -.2], [.3, 0, (masked)]]
    # k3 = e^d - d - 1 = [0.0051709, 0, 0.0187308, 0.0498588, 0]; token mean = 0.0737605 / 5; times beta 0.04
    logprobs = lp()
    ref = logprobs.detach() + torch.tensor([[0.1, 0, -0.2], [0.3, 0, 5.0]])
    loss, m = policy_loss(logprobs, OLD, None, torch.zeros(2), MASK, cfg(kl_beta=0.04), ref_logprobs=ref)
    assert m["kl/ref"].item() == pytest.approx(0.0737605 / 5, abs=1e-6)
    assert loss.item() == pytest.approx(0.04 * 0.0737605 / 5, abs=1e-7)
    loss.backward()
    # d k3 / d logprob = 1 - e^d: a descent step moves logprob toward ref (up where ref is higher)
    assert logprobs.grad[0, 0] < 0 < logprobs.grad[0, 2] and logprobs.grad[1, 0] < 0
    assert logprobs.grad[1, 2] == 0
    with pytest.raises(ValueError, match="ref_logprobs"):
        policy_loss(lp(), OLD, None, ADV, MASK, cfg(kl_beta=0.04))


def test_truncated_importance_sampling_by_hand():
    # on-policy (old = logprobs), sampler lower by ln [[3, 1, .5], [1, 1, 1]] -> weights min(w, 2) = [[2, 1, .5], [1, 1]]
    # terms -A * 1 * w: row 0: -(2 + 1 + .5) = -3.5; row 1: +(1 + 1) = 2; token mean (-3.5 + 2) / 5 = -0.3
    logprobs = lp()
    raw = torch.tensor([[3.0, 1, 0.5], [1, 1, 1]])
    sampler = logprobs.detach() - raw.log()
    loss, m = policy_loss(logprobs, None, sampler, ADV, MASK, cfg(tis=True, tis_cap=2.0))
    assert loss.item() == pytest.approx(-0.3, abs=1e-6)
    assert m["tis/capped_frac"].item() == pytest.approx(0.2)
    assert m["tis/weight_mean"].item() == pytest.approx((2 + 1 + 0.5 + 1 + 1) / 5, abs=1e-6)
    # mismatch k3 of log w: w - 1 - ln w, averaged over real tokens
    k3 = sum(w - 1 - math.log(w) for w in (3.0, 1.0, 0.5, 1.0, 1.0)) / 5
    assert m["mismatch/k3"].item() == pytest.approx(k3, abs=1e-6)
    # off: the same inputs give the plain on-policy loss (-1 * 3 + 1 * 2) / 5 = -0.2, mismatch still reported
    plain, m2 = policy_loss(lp(), None, sampler, ADV, MASK, cfg())
    assert plain.item() == pytest.approx(-0.2, abs=1e-6) and "mismatch/k3" in m2
    with pytest.raises(ValueError, match="sampler_logprobs"):
        policy_loss(lp(), None, None, ADV, MASK, cfg(tis=True))


# ------------------------------------------------------------------------------------------ sanity
@pytest.mark.parametrize("preset", ["grpo", "dr_grpo", "dapo", "gspo", "cispo"])
def test_one_step_raises_good_and_lowers_bad_completions(preset):
    # logits parameter [N=2, T=3, V=5]; completion 0 has A = +1, completion 1 has A = -1
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, requires_grad=True)
    tokens = torch.tensor([[1, 2, 3], [4, 0, 1]])
    mask = torch.ones(2, 3)

    def seq_logprob():
        return torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # [N, T]

    before = seq_logprob().detach()
    c = resolve_algo(preset, kl_beta=0.0)
    loss, _ = policy_loss(seq_logprob(), before, None, torch.tensor([1.0, -1.0]), mask, c)
    loss.backward()
    with torch.no_grad():
        logits -= 0.1 * logits.grad
    after = seq_logprob().detach()
    assert (after[0] > before[0]).all() and (after[1] < before[1]).all()


def test_padding_garbage_never_reaches_loss_or_gradient():
    logprobs = torch.tensor([[-1.0, float("-inf"), float("nan")], [-0.5, -0.2, float("inf")]], requires_grad=True)
    old = torch.tensor([[-1.0, 3.0, float("nan")], [-0.4, -0.3, 0.0]])
    sampler = torch.tensor([[-1.1, 0.0, 0.0], [-0.5, -0.3, 0.0]])
    mask = torch.tensor([[1.0, 0, 0], [1, 1, 0]])
    for name in ("grpo", "dapo", "gspo", "cispo", "dr_grpo"):
        c = resolve_algo(name, tis=True, kl_beta=0.1)
        loss, m = policy_loss(logprobs, old, sampler, ADV, mask, c, ref_logprobs=old.nan_to_num(0.0))
        loss.backward()
        assert torch.isfinite(loss), name
        assert all(torch.isfinite(v) for v in m.values()), (name, m)
        assert torch.isfinite(logprobs.grad).all() and logprobs.grad[mask == 0].abs().sum() == 0, name
        logprobs.grad = None


def test_empty_mask_gives_zero_loss():
    loss, m = policy_loss(lp(), OLD, None, ADV, torch.zeros(2, 3), cfg(aggregation="sequence"))
    assert loss.item() == 0 and m["tokens"].item() == 0
    assert aggregate(torch.ones(2, 3), torch.zeros(2, 3), "token").item() == 0


def test_shape_errors():
    with pytest.raises(ValueError, match="old_logprobs"):
        policy_loss(lp(), OLD[:, :2], None, ADV, MASK, cfg())
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(lp(), OLD, None, torch.zeros(3), MASK, cfg())
    with pytest.raises(ValueError, match="loss="):
        policy_loss(lp(), OLD, None, ADV, MASK, cfg(loss="ppo2"))


def _aggregate_0_1(per_token, mask, mode, norm_constant=None):
    """The plain masked formulas, written out: the reference a 0/1 mask must reproduce bit for bit."""
    on = mask > 0
    summed = torch.where(on, per_token, torch.zeros_like(per_token))
    if mode == "token":
        return summed.sum() / mask.sum().clamp(min=1.0)
    if mode == "sequence":
        lengths = mask.sum(dim=1)
        return (summed.sum(dim=1) / lengths.clamp(min=1.0)).sum() / (lengths > 0).sum().clamp(min=1)
    return summed.sum() / (per_token.shape[0] * (norm_constant or per_token.shape[1]))


def test_aggregate_weights_fractional_masks_in_sum_and_denominator():
    # token mode is a weighted mean: constant terms give that constant whatever the weights. The old aggregate
    # summed the 0.5-weight token as a full one over a weighted count: 5 / 4.5.
    per_token = torch.full((2, 3), 2.0)
    mask = torch.tensor([[1.0, 0.5, 0.0], [1.0, 1.0, 1.0]])
    assert aggregate(per_token, mask, "token").item() == pytest.approx(2.0)
    # by hand: sum(w x) / sum(w), and per sequence, then over sequences
    x = torch.tensor([[1.0, 4.0, 9.0], [2.0, 3.0, 5.0]])
    w = torch.tensor([[0.25, 0.75, 0.0], [1.0, 0.5, 0.5]])
    assert aggregate(x, w, "token").item() == pytest.approx((0.25 + 3.0 + 2.0 + 1.5 + 2.5) / 3.0)
    assert aggregate(x, w, "sequence").item() == pytest.approx(((0.25 + 3.0) / 1.0 + (2.0 + 1.5 + 2.5) / 2.0) / 2)
    assert aggregate(x, w, "constant", 4).item() == pytest.approx((0.25 + 3.0 + 2.0 + 1.5 + 2.5) / (2 * 4))
    # a weight-2 token counts as two copies of it; a negative weight counts as 0 in both sum and denominator
    assert aggregate(torch.tensor([[1.0, 4.0]]), torch.tensor([[2.0, 1.0]]), "token").item() == pytest.approx(2.0)
    assert aggregate(x, torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 0.0]]), "token").item() == pytest.approx(1.0)
    # a fractional mask that sums below 1 is a mean, not raised to a count of 1
    assert aggregate(x, torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]), "sequence").item() == pytest.approx(1.0)


def test_aggregate_of_a_0_1_mask_is_bit_identical_to_the_plain_masked_formula():
    g = torch.Generator().manual_seed(0)
    per_token = torch.randn(6, 7, generator=g)
    mask = (torch.rand(6, 7, generator=g) > 0.4).float()
    mask[2] = 0.0  # an empty row
    per_token[mask == 0] = float("nan")  # padding garbage stays out
    for mode in ("token", "sequence", "constant"):
        assert torch.equal(aggregate(per_token, mask, mode, 9), _aggregate_0_1(per_token, mask, mode, 9)), mode


def test_gspo_sequence_ratio_is_the_weighted_geometric_mean_under_a_fractional_mask():
    old = torch.zeros(1, 2)
    logprobs = torch.tensor([[math.log(2.0), math.log(8.0)]])
    _, m = policy_loss(logprobs, old, None, torch.ones(1), torch.tensor([[0.5, 0.5]]),
                       cfg(loss="gspo", clip_low=10.0, clip_high=10.0))
    assert m["ratio/mean"].item() == pytest.approx(4.0)  # exp(mean(log 2, log 8)) on both tokens


def test_dr_grpo_constant_is_the_generation_budget_not_the_padded_width():
    # Dr. GRPO 2503.20783: loss = sum of masked token terms / (N * max_new_tokens), whatever the batch's width
    from rlvr.train.grpo import dr_grpo_norm_constant

    algo = resolve_algo("dr_grpo")
    max_new_tokens = 64
    per_token = torch.arange(12, dtype=torch.float32).view(3, 4)  # [N=3, T=4]: no completion reached the cap
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.float32)
    c = dr_grpo_norm_constant(algo, max_new_tokens)
    assert c == max_new_tokens
    expected = (per_token * mask).sum() / (3 * max_new_tokens)
    assert torch.allclose(aggregate(per_token, mask, "constant", c), expected)
    assert dr_grpo_norm_constant(resolve_algo("dr_grpo", norm_constant=100), max_new_tokens) == 100
