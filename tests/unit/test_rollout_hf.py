"""HFEngine on the tiny model: grouping, shapes, finish reasons, stop strings, logprobs vs teacher forcing, seeds."""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf

from rlvr.algo.logprobs import token_logprobs, token_logprobs_and_entropy
from rlvr.rollout.base import SamplingParams
from rlvr.rollout.hf import HFEngine, _top_p_filter
from rlvr.rollout.prompts import render_prompt
from rlvr.rollout.types import Rollout, RolloutBatch

MAX_NEW = 16


@pytest.fixture(scope="module")
def samples():
    from rlvr.config import TaskConfig
    from rlvr.tasks import build_task

    task = build_task(OmegaConf.structured(TaskConfig))
    # 1-op and 3-op prompts have different token counts, so left padding is exercised
    return task.samples("test_ops1", limit=2) + task.samples("test_ops3", limit=1)


@pytest.fixture(scope="module")
def eos_biased(tiny):
    """The tiny model with +4 on the eos logit: a random model then stops early in about half its completions."""
    model, tok = tiny
    biased = copy.deepcopy(model)
    bias = torch.zeros(biased.config.vocab_size)
    bias[tok.convert_tokens_to_ids("<|im_end|>")] = 4.0
    biased.lm_head.bias = torch.nn.Parameter(bias)
    return biased, tok


def test_n_completions_per_prompt_prompt_major(tiny, samples):
    model, tok = tiny
    engine = HFEngine(model, tok, batch_size=4)  # 4 rows per call with n=2: two generate calls for 3 prompts
    rollouts = engine.generate(samples, n=2, params=SamplingParams(max_new_tokens=MAX_NEW, seed=0))
    assert len(rollouts) == 6
    for i, r in enumerate(rollouts):
        assert isinstance(r, Rollout)
        assert r.sample_id == samples[i // 2].id and r.index == i % 2
        assert list(r.prompt_ids) == render_prompt(tok, samples[i // 2].prompt)
        assert len(r.logprobs) == r.num_tokens <= MAX_NEW
        assert all(lp <= 0 for lp in r.logprobs)
    assert tok.decode(rollouts[0].prompt_ids).endswith("<|im_start|>assistant\n")


def test_rollout_batch_shapes_and_padding(tiny, samples):
    model, tok = tiny
    engine = HFEngine(model, tok)
    rollouts = engine.generate(samples, n=2, params=SamplingParams(max_new_tokens=MAX_NEW, seed=0))
    batch = RolloutBatch.from_rollouts(rollouts, group_size=2, pad_token_id=engine.pad_id)
    n, p, t = 6, max(len(r.prompt_ids) for r in rollouts), max(r.num_tokens for r in rollouts)
    assert len({len(r.prompt_ids) for r in rollouts}) > 1
    assert batch.input_ids.shape == batch.attention_mask.shape == (n, p + t)
    assert batch.completion_ids.shape == batch.completion_mask.shape == batch.sampler_logprobs.shape == (n, t)
    assert batch.prompt_length == p and batch.num_groups == 3 and batch.sample_ids == tuple(s.id for s in samples)
    for i, r in enumerate(rollouts):
        lp, lc = len(r.prompt_ids), r.num_tokens
        assert batch.input_ids[i, p - lp:p].tolist() == list(r.prompt_ids)  # left-padded prompt
        assert batch.completion_ids[i, :lc].tolist() == list(r.completion_ids)  # right-padded completion
        assert batch.completion_mask[i].sum().item() == lc == batch.completion_lengths[i].item()
        assert batch.attention_mask[i].sum().item() == lp + lc
    assert batch.grouped(batch.completion_lengths).shape == (3, 2)
    kept = batch.select_groups(torch.tensor([True, False, True]))
    assert kept.num_groups == 2 and kept.sample_ids == (samples[0].id, samples[2].id)
    assert kept.input_ids.shape == (4, p + t) and [r.sample_id for r in kept.rollouts][2] == samples[2].id
    with pytest.raises(ValueError, match="mix samples"):
        RolloutBatch.from_rollouts(rollouts, group_size=3, pad_token_id=engine.pad_id)


def test_finish_reasons(eos_biased, samples):
    model, tok = eos_biased
    engine = HFEngine(model, tok)
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    rollouts = engine.generate(samples, n=4, params=SamplingParams(max_new_tokens=MAX_NEW, seed=0))
    reasons = {r.finish_reason for r in rollouts}
    assert reasons == {"stop", "length"}, "the biased model should produce both kinds (seeded)"
    for r in rollouts:
        if r.finish_reason == "stop":
            assert r.completion_ids[-1] == eos and eos not in r.completion_ids[:-1]
            assert "<|im_end|>" not in r.text
        else:
            assert r.truncated and r.num_tokens == MAX_NEW and eos not in r.completion_ids


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9), (0.0, 1.0)])
def test_sampler_logprobs_match_teacher_forcing(request, samples, temperature, top_p):
    # engine logprob = log softmax(z / tau)[token] (tau = 1 for greedy); token_logprobs recomputes the same.
    # Greedy on the eos-biased model would stop at once everywhere, so it runs on the plain model.
    model, tok = request.getfixturevalue("tiny" if temperature == 0 else "eos_biased")
    engine = HFEngine(model, tok)
    params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=MAX_NEW, seed=3)
    rollouts = engine.generate(samples, n=3, params=params)
    batch = RolloutBatch.from_rollouts(rollouts, group_size=3, pad_token_id=engine.pad_id)
    if not params.greedy:
        assert len(set(batch.completion_lengths.tolist())) > 1  # right padding exercised too
    with torch.no_grad():
        recomputed = token_logprobs(model, batch.input_ids, batch.attention_mask, batch.prompt_length,
                                    temperature=params.logprob_temperature)
        again, entropy = token_logprobs_and_entropy(model, batch.input_ids, batch.attention_mask,
                                                    batch.prompt_length, temperature=params.logprob_temperature)
    diff = ((recomputed - batch.sampler_logprobs) * batch.completion_mask).abs().max().item()
    assert diff < 1e-4
    torch.testing.assert_close(again, recomputed, atol=1e-5, rtol=0)
    assert entropy.shape == recomputed.shape and (entropy >= 0).all()


def test_top_p_samples_only_from_the_nucleus(tiny, samples):
    # with top_p tiny, only the single most likely token survives: sampling equals greedy decoding
    model, tok = tiny
    engine = HFEngine(model, tok)
    nucleus = engine.generate(samples, n=2, params=SamplingParams(temperature=1.0, top_p=1e-6, max_new_tokens=8,
                                                                  seed=0))
    greedy = engine.generate(samples, n=1, params=SamplingParams(temperature=0.0, max_new_tokens=8))
    for i, g in enumerate(greedy):
        assert nucleus[2 * i].completion_ids == nucleus[2 * i + 1].completion_ids == g.completion_ids


def test_top_p_filter_by_hand():
    # probs [0.5, 0.3, 0.15, 0.05] (shuffled order): mass ranked above each token = [0, 0.5, 0.8, 0.95]
    # top_p 0.75 keeps {0.5, 0.3} (0.8 >= 0.75 drops the third); 0.85 keeps three; the top token always stays
    logits = torch.tensor([[0.15, 0.5, 0.05, 0.3]]).log()
    kept = lambda p: torch.isfinite(_top_p_filter(logits, p))[0].tolist()  # noqa: E731
    assert kept(0.75) == [False, True, False, True]
    assert kept(0.85) == [True, True, False, True]
    assert kept(1e-9) == [False, True, False, False]


def test_seed_determinism_and_global_rng_untouched(tiny, samples):
    model, tok = tiny
    engine = HFEngine(model, tok)
    params = SamplingParams(max_new_tokens=MAX_NEW, seed=7)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = engine.generate(samples, n=2, params=params)
    assert torch.equal(torch.rand(1), expected_next)  # the caller's RNG stream is unchanged
    b = engine.generate(samples, n=2, params=params)
    c = engine.generate(samples, n=2, params=SamplingParams(max_new_tokens=MAX_NEW, seed=8))
    assert a == b
    assert [r.completion_ids for r in a] != [r.completion_ids for r in c]
    assert a[0].completion_ids != a[1].completion_ids  # the n samples of one prompt differ


def test_greedy_is_deterministic_and_restores_model_state(tiny, samples):
    model, tok = tiny
    model.train()
    saved_cfg = model.generation_config
    engine = HFEngine(model, tok)
    out = engine.generate(samples[:1], n=2, params=SamplingParams(temperature=0.0, max_new_tokens=8))
    assert out[0].completion_ids == out[1].completion_ids
    assert model.training and model.generation_config is saved_cfg
    model.eval()


def test_stop_strings_end_the_completion(tiny, samples):
    model, tok = tiny
    engine = HFEngine(model, tok)
    params = SamplingParams(max_new_tokens=MAX_NEW, seed=11)
    free = engine.generate(samples[:1], n=1, params=params)[0]
    ids = list(free.completion_ids)
    # pick a token whose text is a plain word not seen earlier in the completion; stopping on it must cut there
    k, stop = next((k, tok.decode(ids[k:k + 1])) for k in range(2, len(ids))
                   if tok.decode(ids[k:k + 1]).strip().isalpha() and len(tok.decode(ids[k:k + 1])) >= 2
                   and tok.decode(ids[k:k + 1]) not in tok.decode(ids[:k]))
    stopped = engine.generate(samples[:1], n=1, params=SamplingParams(max_new_tokens=MAX_NEW, seed=11, stop=(stop,)))[0]
    assert stopped.completion_ids == tuple(ids[:k + 1])
    assert stopped.finish_reason == "stop" and stopped.text.endswith(stop)
    assert stopped.logprobs == free.logprobs[:k + 1]


def test_thinking_token_count(tiny):
    model, tok = tiny
    engine = HFEngine(model, tok)
    open_, close = tok.convert_tokens_to_ids("<think>"), tok.convert_tokens_to_ids("</think>")
    eos, a = tok.convert_tokens_to_ids("<|im_end|>"), tok("7", add_special_tokens=False)["input_ids"][0]
    assert engine._thinking_tokens([open_, a, a, close, a, eos], "") == 2
    assert engine._thinking_tokens([open_, a, a, a], "") == 3  # truncated while thinking
    assert engine._thinking_tokens([open_, a, a, eos], "") == 2  # stopped without closing
    assert engine._thinking_tokens([a, a, close, a], "") == 2  # block opened by the prompt template
    assert engine._thinking_tokens([a, a, a], "") == 0
    multi = HFEngine(model, tok, think_open="<reason>", think_close="</reason>")
    assert multi.think_ids == (None, None)
    span = tok("12+3=15", add_special_tokens=False)["input_ids"]
    assert multi._thinking_tokens([], "<reason>12+3=15</reason>\\boxed{15}") == len(span)


def test_sampling_params_validation():
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingParams(max_new_tokens=0)
    assert SamplingParams(stop="</answer>").stop == ("</answer>",)
    assert SamplingParams(temperature=0).logprob_temperature == 1.0


def test_one_update_from_rollouts_composes(eos_biased, samples):
    """engine -> RolloutBatch -> advantages -> filter -> token_logprobs -> policy_loss -> gradient, on-policy."""
    from rlvr.algo.advantages import compute_advantages
    from rlvr.algo.presets import resolve_algo
    from rlvr.algo.filtering import dynamic_sampling_filter, overlong_penalty
    from rlvr.algo.loss import policy_loss

    model, tok = eos_biased
    model = copy.deepcopy(model)
    engine = HFEngine(model, tok)
    cfg = resolve_algo("dapo", tis=True)
    rollouts = engine.generate(samples, n=4, params=SamplingParams(max_new_tokens=MAX_NEW, seed=0))
    batch = RolloutBatch.from_rollouts(rollouts, group_size=4, pad_token_id=engine.pad_id)
    accuracy = batch.grouped((batch.completion_lengths % 2).float())  # [B, G] a stand-in verifier: odd length
    keep, stats = dynamic_sampling_filter(accuracy)
    assert keep.any() and 0 < stats["filter/kept_frac"] <= 1
    batch = batch.select_groups(keep)
    rewards = batch.grouped((batch.completion_lengths % 2).float()  # [N] -> [B, G]
                            + overlong_penalty(batch.completion_lengths, MAX_NEW))
    advantages = compute_advantages(rewards, cfg.std_scaling).reshape(-1)  # [B, G] -> [N]
    model.train()
    logprobs = token_logprobs(model, batch.input_ids, batch.attention_mask, batch.prompt_length)
    loss, metrics = policy_loss(logprobs, None, batch.sampler_logprobs, advantages, batch.completion_mask, cfg)
    loss.backward()
    assert torch.isfinite(loss)
    assert metrics["ratio/mean"].item() == pytest.approx(1.0) and metrics["clip/frac"].item() == 0
    assert metrics["mismatch/k3"].item() < 1e-6  # same fp32 model on both sides: no sampler/trainer gap
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
