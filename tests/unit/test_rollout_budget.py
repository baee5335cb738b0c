"""Budget forcing (rlvr.rollout.budget) on HFEngine with the real tiny model: the s1 invariants, for many budgets.

The random tiny model writes tags only by chance, so most tests use ``tag_prone`` (tests/budget_invariants.py): the
same model with the tags' and eos' logits raised by a weight edit, so natural closes, early closes (min_thinking),
eos inside thinking and forced ends all occur in a few dozen rollouts. Every rollout of every test goes through
``check_rollout``, which re-derives each invariant from the token ids alone.
"""

from __future__ import annotations

import copy
from functools import partial
from dataclasses import replace

import pytest
import torch

from rlvr.algo.logprobs import token_logprobs
from rlvr.rollout.base import SamplingParams
from rlvr.rollout.budget import ThinkingBudget
from rlvr.rollout.hf import HFEngine
from rlvr.rollout.types import RolloutBatch

from budget_invariants import check_rollout, forced_runs, generate_checked, tag_prone  # tests/ is on sys.path (rootdir conftest)

MAX_NEW = 40
N = 4
BUDGETS = [0, 1, 4, 8, 16, None]


@pytest.fixture(scope="module")
def tagged(tiny):
    model, tok = tiny
    return tag_prone(model, tok), tok


@pytest.fixture(scope="module")
def engine(tagged):
    return HFEngine(*tagged)


@pytest.fixture(scope="module")
def samples():
    from omegaconf import OmegaConf

    from rlvr.config import TaskConfig
    from rlvr.tasks import build_task

    task = build_task(OmegaConf.structured(TaskConfig))
    return task.samples("test_ops1", limit=2) + task.samples("test_ops3", limit=1)


run = partial(generate_checked, n=N, max_new=MAX_NEW)  # budget kwargs; seed/temperature go to SamplingParams


# ---------------------------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("b", BUDGETS)
def test_invariants_for_many_budgets(engine, samples, b, seed):
    rollouts = run(engine, samples, thinking=b, answer=6, seed=seed)
    if b is not None and b <= 4:
        assert any(r.budget_forced for r in rollouts)
    if b == 0:
        assert all(r.budget_forced and r.thinking_tokens == 0 for r in rollouts)


def test_every_kind_of_ending_occurs(engine, samples):
    """The tag-prone model gives forced ends, natural closes and eos inside thinking, so the checks bite."""
    rollouts = [r for seed in range(3) for r in run(engine, samples, thinking=8, answer=6, seed=seed)]
    close = engine.think_ids[1]
    assert any(r.budget_forced and r.finish_reason == "stop" for r in rollouts)
    assert any(r.budget_forced and r.finish_reason == "length" for r in rollouts)
    assert any(not r.budget_forced and close in r.completion_ids for r in rollouts)  # natural close
    assert any(close not in r.completion_ids and r.finish_reason == "stop" for r in rollouts)  # eos in thinking


def test_min_thinking_waits(engine, samples):
    budget_kw = dict(thinking=16, min_thinking=8, max_waits=2, answer=6)
    rollouts = [r for seed in range(2) for r in run(engine, samples, seed=seed, **budget_kw)]
    wait = engine.tokenizer(ThinkingBudget().wait_cue, add_special_tokens=False)["input_ids"]
    close = engine.think_ids[1]
    assert any(r.waits > 0 for r in rollouts) and any(r.waits == 2 for r in rollouts)
    for r in rollouts:
        if close in r.completion_ids and not r.budget_forced:  # the model closed the block itself
            assert (r.thinking_tokens >= 8 or r.waits == 2 or r.thinking_tokens + len(wait) > 16), r.text
    # without a cap too (B = None): thinking only ends early once the waits are used up
    for r in run(engine, samples, thinking=None, min_thinking=8, max_waits=1, seed=3):
        if close in r.completion_ids:
            assert r.thinking_tokens >= 8 or r.waits == 1


@pytest.mark.parametrize("answer", [1, 3])
def test_answer_budget(engine, samples, answer):
    rollouts = run(engine, samples, thinking=4, answer=answer, seed=5)
    forced = [r for r in rollouts if r.budget_forced]
    assert forced
    for r in forced:
        assert 1 <= r.num_tokens - forced_runs(r)[-1][1] <= answer
    if answer == 1:
        assert any(r.finish_reason == "length" and r.num_tokens < MAX_NEW for r in forced)


def test_max_new_tokens_caps_forced_tokens(engine, samples):
    # B = 4 with 5 tokens in all: the close tag fits, the answer cue does not, so no answer phase
    rollouts = run(engine, samples, max_new=5, thinking=4, answer=6, seed=2)
    cut = [r for r in rollouts if r.budget_forced]
    assert cut
    for r in cut:
        assert r.num_tokens == 5 and r.finish_reason == "length" and r.num_forced == 1


# ---------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("b", [0, 4, 8])
def test_forced_tokens_leave_the_loss_mask_and_logprobs_match(engine, samples, b):
    """Sampled tokens' logprobs equal teacher forcing on the whole sequence (forced ones as context)."""
    model = engine.model
    rollouts = run(engine, samples, thinking=b, min_thinking=min(b, 2), answer=6, seed=4)
    batch = RolloutBatch.from_rollouts(rollouts, group_size=N, pad_token_id=engine.pad_id)
    p = batch.prompt_length
    assert batch.forced_mask.shape == batch.completion_mask.shape and batch.forced_mask.dtype == torch.bool
    for i, r in enumerate(rollouts):
        forced = torch.tensor(r.forced_mask or (False,) * r.num_tokens)
        assert torch.equal(batch.forced_mask[i, :r.num_tokens], forced)
        assert not batch.forced_mask[i, r.num_tokens:].any()
    assert batch.forced_mask.any()
    expected_mask = batch.attention_mask[:, p:].bool() & ~batch.forced_mask  # [N, T]
    assert torch.equal(batch.completion_mask, expected_mask.float())
    assert not (batch.forced_mask & ~batch.attention_mask[:, p:].bool()).any()  # forced tokens are context
    with torch.no_grad():
        recomputed = token_logprobs(model, batch.input_ids, batch.attention_mask, p, temperature=1.0)
    assert ((recomputed - batch.sampler_logprobs) * batch.completion_mask).abs().max().item() < 1e-4
    kept = batch.select_groups(torch.tensor([True, False, True])).to("cpu")
    assert torch.equal(kept.forced_mask, batch.forced_mask[[*range(N), *range(2 * N, 3 * N)]])


# ---------------------------------------------------------------------------------------------- equivalences
def test_budget_none_is_plain_sampling(tiny, samples):
    model, tok = tiny
    engine = HFEngine(model, tok)
    plain = engine.generate(samples, n=2, params=SamplingParams(max_new_tokens=16, seed=3))
    same = engine.generate(samples, n=2, params=SamplingParams(max_new_tokens=16, seed=3, budget=None))
    assert plain == same
    assert all(r.forced_mask == () and not r.budget_forced and r.waits == 0 for r in plain)
    batch = RolloutBatch.from_rollouts(plain, 2, engine.pad_id)
    assert not batch.forced_mask.any()
    assert torch.equal(batch.completion_mask, batch.attention_mask[:, batch.prompt_length:].float())


@pytest.mark.parametrize("which", ["tiny", "tagged"])
def test_a_budget_that_never_binds_changes_nothing_greedy(request, samples, which):
    """Greedy: resuming at a natural close gives the unbudgeted tokens, since A only limits *forced* answers."""
    engine = HFEngine(*request.getfixturevalue(which))
    plain = engine.generate(samples, params=SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW))
    budgeted = engine.generate(samples, params=SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW,
                                                              budget=ThinkingBudget(thinking=MAX_NEW, answer=1)))
    for a, b in zip(plain, budgeted):
        assert a.completion_ids == b.completion_ids and a.finish_reason == b.finish_reason
        assert a.thinking_tokens == b.thinking_tokens and not b.budget_forced
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-4


def test_seed_determinism_and_greedy_copies(engine, samples):
    a = run(engine, samples, thinking=8, min_thinking=4, seed=7)
    b = run(engine, samples, thinking=8, min_thinking=4, seed=7)
    c = run(engine, samples, thinking=8, min_thinking=4, seed=8)
    assert a == b
    assert [r.completion_ids for r in a] != [r.completion_ids for r in c]
    greedy = run(engine, samples, n=3, thinking=4, min_thinking=2, temperature=0.0)
    for i in range(0, len(greedy), 3):
        assert greedy[i].completion_ids == greedy[i + 1].completion_ids == greedy[i + 2].completion_ids
        assert [r.index for r in greedy[i:i + 3]] == [0, 1, 2]


def test_prompt_that_opens_the_block(tagged, samples):
    """A template ending in <think> (Qwen3/R1 style): B = 0 forces only the close tag; thinking counts from the
    first completion token."""
    model, tok = tagged
    tok = copy.deepcopy(tok)
    template = tok.chat_template.replace("'<|im_start|>assistant\n'", "'<|im_start|>assistant\n<think>'")
    assert template != tok.chat_template
    tok.chat_template = template
    engine = HFEngine(model, tok)
    for b in (0, 4, None):
        budget = ThinkingBudget(thinking=b, answer=6)
        rollouts = engine.generate(samples, n=N, params=SamplingParams(max_new_tokens=24, seed=1, budget=budget))
        assert tok.decode(rollouts[0].prompt_ids).endswith("<think>")
        for r in rollouts:
            check_rollout(engine, r, budget, 24, prompt_opens=True)
        if b == 0:
            assert all(r.completion_ids[0] == engine.think_ids[1] for r in rollouts)


def test_multi_token_tags(tagged, samples):
    """Tags that are not single tokens: the close is a stop string and tags are found in decoded text.

    "</think></think>" is two tokens for this tokenizer, and the tag-prone model writes it now and then."""
    model, tok = tagged
    engine = HFEngine(model, tok, think_open="<think><think>", think_close="</think></think>")
    assert engine.think_ids == (None, None)
    close = tok("</think></think>", add_special_tokens=False)["input_ids"]
    rollouts = []
    for b in (0, 4, 8):
        budget = ThinkingBudget(thinking=b, min_thinking=min(b, 3), answer=6)
        rollouts += engine.generate(samples, n=N, params=SamplingParams(max_new_tokens=32, seed=0, budget=budget))
        for r in rollouts[-len(samples) * N:]:
            assert r.thinking_tokens <= b and r.num_tokens <= 32
            if r.budget_forced and r.num_tokens < 32:  # (at 32 max_new_tokens may have cut the forced tokens)
                assert r.thinking_tokens == b
                start = [k for k, f in enumerate(r.forced_mask) if f][-len(close) - 1]  # close + "\n" cue
                assert list(r.completion_ids[start:start + len(close)]) == close
    assert any(not r.budget_forced and "</think></think>" in r.text for r in rollouts)  # natural closes happen


def test_validation():
    with pytest.raises(ValueError, match="min_thinking"):
        ThinkingBudget(thinking=4, min_thinking=8)
    with pytest.raises(ValueError, match="budget"):
        SamplingParams(budget=8)
    assert replace(SamplingParams(), budget=ThinkingBudget(thinking=0)).budget.thinking == 0
