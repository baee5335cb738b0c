"""The decode loop (rlvr.rollout.decode, ``HFEngine(decoder="loop")``) against ``generate`` and teacher forcing.

Greedy decoding must give the ``generate`` path's tokens one for one (both loop steps: the fused Llama-family step
and the model's own forward), sampled logprobs must equal teacher-forced recomputation, finish reasons and stop
strings keep their meaning, the same seed gives the same rollouts, and budget forcing keeps every invariant.
"""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf

from rlvr.algo.logprobs import token_logprobs
from rlvr.rollout import decode as decode_mod
from rlvr.rollout.base import SamplingParams
from rlvr.rollout.budget import ThinkingBudget
from rlvr.rollout.decode import UnsupportedCache, decode, fused_support, loop_support, sample_from_probs
from rlvr.rollout.hf import HFEngine
from rlvr.rollout.prompts import render_prompt
from rlvr.rollout.types import RolloutBatch

from budget_invariants import check_rollout, tag_prone  # tests/ is on sys.path (rootdir conftest)

MAX_NEW = 24
LOOPS = [("loop", "fused"), ("loop", "model")]  # (decoder, loop_step)


@pytest.fixture(scope="module")
def tiny():
    from rlvr.config import ModelConfig
    from rlvr.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(ModelConfig())
    return model.eval(), tok


@pytest.fixture(scope="module")
def samples():
    from rlvr.config import TaskConfig
    from rlvr.tasks import build_task

    task = build_task(OmegaConf.structured(TaskConfig))
    # 1-, 2- and 3-op prompts have different token counts, so left padding is exercised
    return (task.samples("test_ops1", limit=2) + task.samples("test_ops2", limit=1)
            + task.samples("test_ops3", limit=2))


def _with_eos_bias(model, tok, value):
    biased = copy.deepcopy(model)
    bias = torch.zeros(biased.config.vocab_size)
    bias[tok.convert_tokens_to_ids("<|im_end|>")] = value
    biased.lm_head.bias = torch.nn.Parameter(bias)
    return biased, tok


@pytest.fixture(scope="module")
def eos_biased(tiny):
    """+3 on the eos logit: the random model then stops early in a good share of its sampled completions."""
    return _with_eos_bias(*tiny, 3.0)


@pytest.fixture(scope="module")
def greedy_stopper(tiny):
    """+1 on the eos logit: greedy decoding then stops at different steps for different prompts, or never."""
    return _with_eos_bias(*tiny, 1.0)


def _engines(model, tok, **kw):
    return {"generate": HFEngine(model, tok, decoder="generate", **kw),
            **{step: HFEngine(model, tok, decoder=d, loop_step=step, **kw) for d, step in LOOPS}}


def _assert_same_tokens(a, b, tol=1e-4):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.completion_ids == y.completion_ids, (x.text, y.text)
        assert x.finish_reason == y.finish_reason and x.thinking_tokens == y.thinking_tokens and x.text == y.text
        assert max((abs(p - q) for p, q in zip(x.logprobs, y.logprobs)), default=0.0) < tol


# --------------------------------------------------------------------------------------------- greedy parity
@pytest.mark.parametrize("which", ["tiny", "greedy_stopper"])
def test_greedy_loop_equals_generate_token_for_token(request, samples, which):
    model, tok = request.getfixturevalue(which)
    engines = _engines(model, tok)
    params = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW)
    out = {k: e.generate(samples, n=1, params=params) for k, e in engines.items()}
    assert engines["fused"].decoder_used == engines["model"].decoder_used == "loop"
    for step in ("fused", "model"):
        _assert_same_tokens(out["generate"], out[step])
    if which == "greedy_stopper":  # rows stop at different steps: rows leave the batch while others go on
        ends = {(r.num_tokens, r.finish_reason) for r in out["fused"]}
        assert {e[1] for e in ends} == {"stop", "length"} and len({e[0] for e in ends if e[1] == "stop"}) > 1


def test_greedy_with_stop_strings_equals_generate(greedy_stopper, samples):
    # greedy completions of the random model are runs of newlines: a stop string of several newline tokens
    model, tok = greedy_stopper
    engines = _engines(model, tok)
    params = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW, stop=("zz", "\n" * 5))
    out = {k: e.generate(samples, params=params) for k, e in engines.items()}
    for step in ("fused", "model"):
        _assert_same_tokens(out["generate"], out[step])
    assert all(r.finish_reason == "stop" and r.text == "\n" * 5 for r in out["fused"])


@pytest.mark.parametrize("decoder,step", [*LOOPS, ("generate", "auto")])
def test_sampled_stop_strings_end_each_row_where_the_string_completes(tiny, samples, decoder, step):
    model, tok = tiny
    engine = HFEngine(model, tok, decoder=decoder, loop_step=step)
    free = engine.generate(samples, n=4, params=SamplingParams(max_new_tokens=MAX_NEW, seed=2))
    # the commonest word-like token text of the free samples, so many rows (not all, not at the same step) stop
    words = [tok.decode([i]) for r in free for i in r.completion_ids]
    stop = max((w for w in set(words) if w.strip().isalpha() and len(w.strip()) >= 2), key=words.count)
    rollouts = engine.generate(samples, n=4, params=SamplingParams(max_new_tokens=MAX_NEW, seed=2, stop=(stop,)))
    by_string = [r for r in rollouts if r.finish_reason == "stop" and r.completion_ids[-1] not in engine.eos_ids]
    assert by_string and len({r.num_tokens for r in by_string}) > 1
    for r in rollouts:
        before = tok.decode(list(r.completion_ids[:-1]), skip_special_tokens=True)
        if r in by_string:
            assert stop in r.text and stop not in before  # ends with the token that completes the string
        else:  # eos (sampled now and then by the random model) or the token cap
            assert stop not in r.text
            assert r.num_tokens == MAX_NEW if r.finish_reason == "length" else r.completion_ids[-1] in engine.eos_ids


@pytest.mark.parametrize("arch", ["llama", "qwen3", "mistral"])
def test_fused_step_on_other_architectures(tiny, samples, arch):
    """The fused step reuses each architecture's modules: Llama (SmolLM2), Qwen3 (q/k norms), Mistral."""
    import transformers

    _, tok = tiny
    common = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id)
    config = {"llama": lambda: transformers.LlamaConfig(**common),
              "qwen3": lambda: transformers.Qwen3Config(head_dim=32, **common),
              "mistral": lambda: transformers.MistralConfig(sliding_window=None, **common)}[arch]()
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    assert fused_support(model) is None
    engines = _engines(model, tok)
    params = SamplingParams(temperature=0.0, max_new_tokens=16)
    out = {k: e.generate(samples, params=params) for k, e in engines.items()}
    for step in ("fused", "model"):
        _assert_same_tokens(out["generate"], out[step])
    sampled = engines["fused"].generate(samples, n=2, params=SamplingParams(max_new_tokens=16, seed=0))
    _assert_logprobs_match_teacher_forcing(model, engines["fused"], sampled, 2, 1.0)


# --------------------------------------------------------------------------------------------- logprobs
def _assert_logprobs_match_teacher_forcing(model, engine, rollouts, n, temperature):
    batch = RolloutBatch.from_rollouts(rollouts, group_size=n, pad_token_id=engine.pad_id)
    with torch.no_grad():
        recomputed = token_logprobs(model, batch.input_ids, batch.attention_mask, batch.prompt_length,
                                    temperature=temperature)
    diff = ((recomputed - batch.sampler_logprobs) * batch.completion_mask).abs().max().item()
    assert diff < 1e-4
    return batch


@pytest.mark.parametrize("decoder,step", LOOPS)
@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9), (1.3, 1.0)])
def test_sampled_logprobs_match_teacher_forcing(eos_biased, samples, decoder, step, temperature, top_p):
    model, tok = eos_biased
    engine = HFEngine(model, tok, decoder=decoder, loop_step=step)
    params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=MAX_NEW, seed=5)
    rollouts = engine.generate(samples, n=3, params=params)
    batch = _assert_logprobs_match_teacher_forcing(model, engine, rollouts, 3, params.logprob_temperature)
    assert len(set(batch.completion_lengths.tolist())) > 1  # rows finished at different steps


def test_decoders_sample_the_same_distribution(tiny, samples):
    """Same seed, different random streams: not the same tokens, but the same first-token distribution."""
    model, tok = tiny
    model = copy.deepcopy(model)  # an output bias that puts nearly all mass on 6 tokens, so 2,000 draws measure it
    bias = torch.full((model.config.vocab_size,), -20.0)
    bias[10:16] = torch.tensor([0.35, 0.25, 0.15, 0.12, 0.08, 0.05]).log()
    model.lm_head.bias = torch.nn.Parameter(bias)
    prompt = samples[:1]
    counts = {}
    for name, engine in (("generate", HFEngine(model, tok, decoder="generate")), ("loop", HFEngine(model, tok))):
        firsts = [r.completion_ids[0] for r in engine.generate(prompt, n=2000, params=SamplingParams(
            max_new_tokens=1, temperature=0.8, seed=1))]
        counts[name] = torch.bincount(torch.tensor(firsts), minlength=len(tok)).float() / len(firsts)
    with torch.no_grad():
        ids = torch.tensor([render_prompt(tok, prompt[0].prompt)])
        probs = (model(input_ids=ids).logits[0, -1].float() / 0.8).softmax(-1)
    for name, freq in counts.items():  # total variation distance to the tempered model's distribution
        assert 0.5 * (freq - probs).abs().sum().item() < 0.04, name


def test_sample_from_probs_by_hand():
    gen = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2, 0.0]]).repeat(20000, 1)  # unnormalised rows work too: x 2
    draws = sample_from_probs(probs * 2, gen)
    freq = torch.bincount(draws, minlength=5).float() / len(draws)
    assert freq[1] == 0 and freq[4] == 0, "zero-probability tokens are never drawn"
    torch.testing.assert_close(freq, probs[0], atol=0.015, rtol=0)
    one_hot = torch.zeros(3, 7)
    one_hot[torch.arange(3), torch.tensor([0, 6, 3])] = 1.0
    assert sample_from_probs(one_hot, gen).tolist() == [0, 6, 3]


# --------------------------------------------------------------------------------------------- finish / seeds
def test_finish_reasons(eos_biased, samples):
    model, tok = eos_biased
    engine = HFEngine(model, tok)
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    rollouts = engine.generate(samples, n=4, params=SamplingParams(max_new_tokens=MAX_NEW, seed=0))
    assert {r.finish_reason for r in rollouts} == {"stop", "length"}
    for r in rollouts:
        if r.finish_reason == "stop":
            assert r.completion_ids[-1] == eos and eos not in r.completion_ids[:-1] and "<|im_end|>" not in r.text
        else:
            assert r.num_tokens == MAX_NEW and eos not in r.completion_ids
        assert r.text == tok.decode(list(r.completion_ids), skip_special_tokens=True)


def test_seed_determinism_and_global_rng_untouched(tiny, samples):
    model, tok = tiny
    engine = HFEngine(model, tok)
    assert engine.decoder_used == "loop"
    params = SamplingParams(max_new_tokens=MAX_NEW, seed=7)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = engine.generate(samples, n=3, params=params)
    assert torch.equal(torch.rand(1), expected_next)
    assert a == engine.generate(samples, n=3, params=params)
    # the two loop steps draw the same stream; their logits agree to float rounding, so the tokens are the same
    _assert_same_tokens(a, HFEngine(model, tok, loop_step="model").generate(samples, n=3, params=params), tol=1e-5)
    c = engine.generate(samples, n=3, params=SamplingParams(max_new_tokens=MAX_NEW, seed=8))
    assert [r.completion_ids for r in a] != [r.completion_ids for r in c]
    assert len({r.completion_ids for r in a[:3]}) > 1  # the n samples of one prompt differ
    # unseeded calls draw from the global RNG: two calls in a row differ, re-seeding the global RNG repeats them
    torch.manual_seed(0)
    u1 = engine.generate(samples[:1], n=2, params=SamplingParams(max_new_tokens=MAX_NEW))
    u2 = engine.generate(samples[:1], n=2, params=SamplingParams(max_new_tokens=MAX_NEW))
    torch.manual_seed(0)
    assert u1 != u2 and u1 == engine.generate(samples[:1], n=2, params=SamplingParams(max_new_tokens=MAX_NEW))


def test_decode_rows_limits_and_shared_prefixes(greedy_stopper, samples):
    """Per-row token limits (0 included), repeated prefixes in any order, rows ending at different steps: each row
    gets what it gets decoded alone."""
    model, tok = greedy_stopper
    p = [render_prompt(tok, s.prompt) for s in samples[:3]]
    prefixes, limits = [p[0], p[1], p[0], p[2], p[1], p[2]], [30, 0, 12, 30, 5, 30]
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    kw = dict(pad_id=tok.pad_token_id, stop_ids=[eos], temperature=0.0)
    segs = decode(model, prefixes, limits, **kw)
    assert [len(s.ids) for s in segs][1:3] == [0, 12] and len(segs[4].ids) == 5
    assert any(s.stopped for s in segs) and len({len(s.ids) for s in segs if s.stopped}) >= 1
    assert len({len(s.ids) for s in segs}) >= 4
    for s in segs:
        assert s.stopped == (bool(s.ids) and s.ids[-1] == eos) and eos not in s.ids[:-1]
    alone = [decode(model, [q], [m], **kw)[0] for q, m in zip(prefixes, limits)]
    for s, t in zip(segs, alone):
        assert s.ids == t.ids and s.stopped == t.stopped
        assert max((abs(x - y) for x, y in zip(s.logprobs, t.logprobs)), default=0) < 1e-5
    assert segs[2].ids == segs[0].ids[:12]  # greedy: the same prefix continues the same way
    assert decode(model, [], [], **kw) == []
    with pytest.raises(ValueError, match="step"):
        decode(model, prefixes, limits, step="compiled", **kw)


def test_fallback_to_generate(tiny, samples, monkeypatch):
    model, tok = tiny
    params = SamplingParams(temperature=0.0, max_new_tokens=8)
    expected = HFEngine(model, tok, decoder="generate").generate(samples[:2], params=params)

    def unsupported(*args, **kwargs):
        raise UnsupportedCache("TupleCache cannot select batch rows")

    monkeypatch.setattr("rlvr.rollout.hf.decode", unsupported)
    auto = HFEngine(model, tok)
    assert auto.decoder_used == "loop"
    assert auto.generate(samples[:2], params=params) == expected and auto.decoder_used == "generate"
    with pytest.raises(ValueError, match="decoder='loop' cannot drive"):
        HFEngine(model, tok, decoder="loop").generate(samples[:2], params=params)
    with pytest.raises(ValueError, match="decoder"):
        HFEngine(model, tok, decoder="beam")


def test_support_checks(tiny):
    model, _ = tiny
    assert loop_support(model) is None and fused_support(model) is None
    assert "is_encoder_decoder" not in (loop_support(model) or "")

    class Wrapped(torch.nn.Module):  # e.g. a PEFT-style wrapper: not the standard layout
        def __init__(self, inner):
            super().__init__()
            self.base_model, self.config = inner, inner.config

        def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                    use_cache=None, **kw):
            return self.base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                   past_key_values=past_key_values, use_cache=use_cache, **kw)

    wrapped = Wrapped(model)
    assert loop_support(wrapped) is None and "layout" in fused_support(wrapped)
    assert decode_mod.FUSED_MODEL_TYPES == ("llama", "qwen2", "qwen3", "mistral")


# --------------------------------------------------------------------------------------------- budget forcing
@pytest.mark.parametrize("decoder,step", [*LOOPS, ("generate", "auto")])
def test_budget_forcing_invariants_with_each_decoder(tiny, samples, decoder, step):
    model, tok = tiny
    engine = HFEngine(tag_prone(model, tok), tok, decoder=decoder, loop_step=step)
    rollouts = []
    for b in (0, 4, 8, None):
        budget = ThinkingBudget(thinking=b, min_thinking=min(b or 0, 3), answer=6)
        params = SamplingParams(max_new_tokens=32, seed=1, budget=budget)
        out = engine.generate(samples, n=3, params=params)
        for r in out:
            check_rollout(engine, r, budget, 32)
        assert out == engine.generate(samples, n=3, params=params)  # deterministic by seed
        rollouts += out
        batch = RolloutBatch.from_rollouts(out, group_size=3, pad_token_id=engine.pad_id)
        with torch.no_grad():
            recomputed = token_logprobs(engine.model, batch.input_ids, batch.attention_mask, batch.prompt_length)
        assert ((recomputed - batch.sampler_logprobs) * batch.completion_mask).abs().max().item() < 1e-4
    assert any(r.budget_forced for r in rollouts) and any(r.waits for r in rollouts)
    assert any(not r.budget_forced and engine.think_ids[1] in r.completion_ids for r in rollouts)


def test_budget_greedy_loop_equals_generate(tiny, samples):
    model, tok = tiny
    tagged = tag_prone(model, tok)
    engines = _engines(tagged, tok)
    params = SamplingParams(temperature=0.0, max_new_tokens=32,
                            budget=ThinkingBudget(thinking=6, min_thinking=2, answer=5))
    out = {k: e.generate(samples, n=2, params=params) for k, e in engines.items()}
    for step in ("fused", "model"):
        _assert_same_tokens(out["generate"], out[step])
        assert [r.forced_mask for r in out["generate"]] == [r.forced_mask for r in out[step]]


def test_bf16_model_attention_in_fp32(tiny, samples):
    """A bf16 model: the fused step's attention runs in fp32, so its logprobs stay as close to teacher forcing as
    the generate path's (bf16 rounding of the forward itself is the floor)."""
    model, tok = tiny
    model = copy.deepcopy(model).to(torch.bfloat16)
    gaps = {}
    for name, engine in (("generate", HFEngine(model, tok, decoder="generate")),
                         ("fused", HFEngine(model, tok, loop_step="fused"))):
        rollouts = engine.generate(samples, n=2, params=SamplingParams(max_new_tokens=16, seed=0))
        batch = RolloutBatch.from_rollouts(rollouts, group_size=2, pad_token_id=engine.pad_id)
        with torch.no_grad():
            recomputed = token_logprobs(model, batch.input_ids, batch.attention_mask, batch.prompt_length)
        gap = ((recomputed - batch.sampler_logprobs) * batch.completion_mask).abs()
        gaps[name] = (gap.sum() / batch.completion_mask.sum()).item()
    assert gaps["fused"] < max(3 * gaps["generate"], 2e-3), gaps


def test_fused_step_ignores_non_finite_keys_values_in_padding_columns(tiny):
    """A padding column's cached key/value may be NaN (a fully masked query row out of a fused attention kernel:
    the suspected cause of a device-side assert in bf16 rollouts on CUDA); it is masked, so the step's logits
    must not change."""
    from transformers import DynamicCache

    from rlvr.rollout.decode import _FusedStep, _left_pad

    model, tok = tiny
    ids, mask = _left_pad([[5, 6, 7, 8, 9], [10, 11]], pad_id=tok.pad_token_id, device="cpu")  # row 1: 3 pad columns
    position = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        def step_logits(poison: bool):
            cache = model(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True,
                          past_key_values=DynamicCache()).past_key_values
            if poison:
                for layer in cache.layers:
                    layer.keys[1, :, :3] = float("nan")
                    layer.values[1, :, :3] = float("inf")
            step = _FusedStep(model, cache, mask, t_max=4)
            return step(torch.tensor([12, 13]), position[:, -1] + 1)  # [2, V]

        clean, poisoned = step_logits(False), step_logits(True)
    assert torch.isfinite(poisoned).all()
    assert torch.allclose(clean, poisoned)
