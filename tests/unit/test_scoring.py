"""The one scoring path (``rlvr.rewards.scoring.score``): rewards, accuracy and the primary verifier, through the
reward runtime, so a hung or broken verifier is an error (NaN), never a silent 0, for every caller."""

from __future__ import annotations

import math

import pytest
import torch

from rlvr.config import AlgoConfig
from rlvr.rewards.runtime import RewardRuntime, RewardsConfig
from rlvr.rewards.scoring import primary_key, primary_spec, score, score_round
from rlvr.rollout.types import Rollout
from rlvr.tasks.base import Sample

HANG = {"name": "rlvr.verifiers.testing:Hang", "when": "HANG"}


def rollout(sample_id: str, text: str, tokens: int = 4, index: int = 0) -> Rollout:
    return Rollout(sample_id=sample_id, prompt_ids=(1,), completion_ids=tuple(range(tokens)),
                   logprobs=(0.0,) * tokens, text=text, finish_reason="stop", thinking_tokens=0, index=index)


def test_the_primary_verifier_is_the_first_with_a_weight():
    s = Sample("a", [], "3", ({"name": "format", "weight": 0}, {"name": "math", "label": "m"}, "code"))
    assert primary_spec(s).name == "math" and primary_key(s) == "m"
    assert primary_spec(Sample("b", [], "3", ({"name": "format", "weight": 0},))) is None


def test_score_rewards_accuracy_and_primary_results():
    samples = [Sample("a", [], "3", ("math", {"name": "format", "weight": 0.5})), Sample("b", [], "7", ("math",))]
    rollouts = [rollout("a", r"<think>1+2=3</think> \boxed{3}"), rollout("a", r"\boxed{4}", index=1),
                rollout("b", r"\boxed{7}"), rollout("b", "no answer", index=1)]
    with RewardRuntime(RewardsConfig(num_workers=0)) as runtime:
        scored = score(runtime, samples, rollouts, 2)
    assert scored.accuracy.tolist() == [1.0, 0.0, 1.0, 0.0]  # the math verdict alone, no format bonus
    assert scored.rewards[:2].tolist() == [1.5, 0.0]  # the weighted sum: math + 0.5 x format
    assert [r.score for r in scored.primary()] == [1.0, 0.0, 1.0, 0.0]
    assert scored.primary()[0] is scored.results[0]["math"]


def test_score_round_adds_the_overlong_penalty_and_nothing_else():
    samples = [Sample("a", [], "3", ("math",))]
    rollouts = [rollout("a", r"\boxed{3}", tokens=2), rollout("a", r"\boxed{3}", tokens=16, index=1)]
    algo = AlgoConfig(overlong="penalty", overlong_buffer=8)
    with RewardRuntime(RewardsConfig(num_workers=0)) as runtime:
        plain = score(runtime, samples, rollouts, 2)
        shaped = score_round(runtime, samples, rollouts, 2, algo, max_new_tokens=16)
    assert torch.equal(plain.accuracy, shaped.accuracy)
    assert shaped.rewards[0].item() == plain.rewards[0].item() == 1.0  # short: no penalty
    assert shaped.rewards[1].item() == pytest.approx(0.0)  # at the cap: the full -1 penalty


def test_a_hung_verifier_is_cut_at_the_timeout_and_is_an_error():
    samples = [Sample("a", [], "3", (HANG,))]
    rollouts = [rollout("a", "HANG"), rollout("a", "fine", index=1)]
    with RewardRuntime(RewardsConfig(num_workers=1, timeout_s=1.0, abort_error_rate=1.0)) as runtime:
        scored = score(runtime, samples, rollouts, 2)
    assert math.isnan(scored.accuracy[0].item()) and math.isnan(scored.rewards[0].item())
    assert scored.primary()[0].error.startswith("timeout")
    assert scored.accuracy[1].item() == 1.0
    assert scored.metrics[f"verifier/{HANG['name']}/timeouts"] == 1.0
