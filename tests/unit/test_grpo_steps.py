"""The GRPO loop's step functions without the CLI, on the tiny model with tiny shapes (B=2, G=4, 16 new tokens):
``EngineSource.collect`` (rollout + reward + dynamic sampling), ``update`` (advantages, loss normaliser, the
idle-rank and skip rules), the one metrics path, ``measure``/``log_step``, and a checkpoint round trip that keeps
the monitors' baselines."""

from __future__ import annotations

import math

import pytest
import torch

from rlvr.config.loading import compose_config
from rlvr.rewards.scoring import ScoredRound
from rlvr.rollout.types import Rollout
from rlvr.train.loop_parts import PhaseTimer
from rlvr.train.rollout_source import StepBatch

B, G, MAX_NEW = 2, 4, 16
TINY = ["model=tiny", "task=arith", "logger=none", "rollout=hf", f"grpo.prompts_per_step={B}",
        f"grpo.group_size={G}", f"grpo.max_new_tokens={MAX_NEW}", "grpo.max_train_prompts=64", "grpo.threads=1",
        "rewards.num_workers=0", "grpo.eval_every=0", "grpo.budget_eval_every=0", "grpo.num_samples_to_log=3"]


def config(tmp_path, *overrides: str):
    return compose_config("grpo", [f"output_dir={tmp_path / 'run'}", *TINY, *overrides])


def learner_for(cfg):
    from accelerate import Accelerator

    from rlvr.algo.presets import AlgoConfig
    from rlvr.train.grpo_steps import build_learner

    algo = AlgoConfig(**cfg.algo)
    return build_learner(cfg, algo, Accelerator(cpu=True), cfg.output_dir), algo


def hand_batch(lengths: list[int], rewards: list[float], kept: list[int], batch_groups: int | None = None):
    """A StepBatch of one round: completion i has ``lengths[i]`` tokens (ids 5..) and reward ``rewards[i]``."""
    rollouts = [Rollout(sample_id=f"s{i // G}", prompt_ids=(1, 2, 3), completion_ids=tuple(range(5, 5 + n)),
                        logprobs=(-1.0,) * n, text="x", finish_reason="stop", thinking_tokens=0, index=i % G)
                for i, n in enumerate(lengths)]
    r = torch.tensor(rewards)  # [N]
    scored = ScoredRound([None] * (len(lengths) // G), rollouts, r, r.clone(), [{} for _ in rollouts], {})
    keep = torch.tensor([b in kept for b in range(len(lengths) // G)])  # [B]
    return StepBatch([scored], [(0, b) for b in kept], keep, [None] * len(keep),
                     len(kept) if batch_groups is None else batch_groups, G)


# ------------------------------------------------------------------------------------------------ collect
@pytest.mark.parametrize("preset", ["grpo", "dapo"])
def test_collect_samples_scores_and_filters_groups(tmp_path, preset):
    from rlvr.train.grpo_setup import setup
    from rlvr.train.grpo_report import close

    t = setup(config(tmp_path, f"algo={preset}", "algo.max_sampling_rounds=2"))
    try:
        batch = t.source.collect(1, PhaseTimer(cuda=False))
    finally:
        close(t)
    rounds = len(batch.rounds)
    assert all(len(s.samples) == B and len(s.rollouts) == B * G for s in batch.rounds)
    assert [r.sample_id for r in batch.rounds[0].rollouts] == [s.id for s in batch.rounds[0].samples for _ in range(G)]
    assert all(r.num_tokens <= MAX_NEW for r in batch.rollouts)
    assert t.source.position == rounds * B and batch.keep.shape == (rounds * B,)
    if preset == "grpo":  # no filter: one round, every group trains
        assert rounds == 1 and batch.kept == [(0, 0), (0, 1)] and batch.batch_groups == B
        assert batch.rows() == [(0, i) for i in range(B * G)]
    else:  # the untrained model solves nothing: every group is uninformative, all rounds are used
        assert rounds == 2 and batch.kept == [] and batch.batch_groups == 0 and not batch.keep.any()


# ------------------------------------------------------------------------------------------------ update
def test_dr_grpo_loss_is_the_sum_over_n_times_max_new_tokens(tmp_path):
    """Dr. GRPO 2503.20783: loss = sum of masked token losses / (N * max_new_tokens), not / (N * padded width)."""
    from rlvr.train.grpo_steps import update

    cfg = config(tmp_path, "algo=dr_grpo", "grpo.micro_batch_size=3")
    learner, algo = learner_for(cfg)
    lengths = [3, 5, 2, 7, 4, 4, 6, 1]  # no completion reaches the cap: the padded width is 7 < 16
    rewards = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    batch = hand_batch(lengths, rewards, kept=[0, 1])
    metrics = update(learner, batch, algo, cfg.grpo, PhaseTimer(cuda=False))
    r = torch.tensor(rewards).view(B, G)
    advantages = (r - r.mean(dim=1, keepdim=True)).view(-1)  # [N] no std scaling
    # on-policy: ratio = 1, so each token's loss is -A, and a completion contributes -A * its length
    expected = -(advantages * torch.tensor(lengths, dtype=torch.float32)).sum() / (B * G * MAX_NEW)
    assert metrics["loss"] == pytest.approx(expected.item(), abs=1e-6)
    assert max(lengths) < MAX_NEW and metrics["loss"] != pytest.approx(expected.item() * MAX_NEW / max(lengths))
    assert metrics["grad_norm"] > 0 and metrics["tokens"] == sum(lengths)


def test_idle_rank_joins_with_zero_gradient_and_no_group_anywhere_skips(tmp_path):
    from rlvr.train.grpo_steps import update

    cfg = config(tmp_path, "algo=grpo", "algo.kl_beta=0")
    learner, algo = learner_for(cfg)
    lengths, rewards = [3, 5, 2, 7, 4, 4, 6, 1], [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    # this rank kept nothing but another kept one group: it still steps (DDP needs it), with zero loss and grad
    timer = PhaseTimer(cuda=False)
    idle = update(learner, hand_batch(lengths, rewards, kept=[], batch_groups=1), algo, cfg.grpo, timer)
    assert timer.seconds["logprob"] == 0  # no KL, one pass: no log-prob pass runs
    assert idle["loss"] == 0 and idle["grad_norm"] == 0 and idle["tokens"] == 0
    assert learner.scheduler.scheduler.last_epoch == 1  # one optimizer + schedule step
    # no rank kept a group: every rank skips the update, the schedule does not move
    assert update(learner, hand_batch(lengths, rewards, kept=[], batch_groups=0), algo, cfg.grpo,
                  PhaseTimer(cuda=False)) == {}
    assert learner.scheduler.scheduler.last_epoch == 1


def test_old_and_reference_logprobs_only_run_when_needed(tmp_path):
    """The logprob phase: KL to the reference is 0 while policy = reference; with updates_per_batch > 1 the old
    log-probs make the second pass off-policy (ratios move off 1, so clipping can act)."""
    from rlvr.train.grpo_steps import update

    lengths, rewards = [3, 5, 2, 7, 4, 4, 6, 1], [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    cfg = config(tmp_path, "algo=grpo", "algo.kl_beta=0.1", "grpo.learning_rate=0.05")
    learner, algo = learner_for(cfg)
    timer = PhaseTimer(cuda=False)
    first = update(learner, hand_batch(lengths, rewards, kept=[0, 1]), algo, cfg.grpo, timer)
    assert first["kl/ref"] == pytest.approx(0.0, abs=1e-7) and timer.seconds["logprob"] > 0
    second = update(learner, hand_batch(lengths, rewards, kept=[0, 1]), algo, cfg.grpo, timer)
    assert second["kl/ref"] > 1e-6  # the policy moved away from the frozen reference

    cfg = config(tmp_path, "algo=dapo", "grpo.updates_per_batch=2", "grpo.learning_rate=0.05")
    learner, algo = learner_for(cfg)
    timer = PhaseTimer(cuda=False)
    reused = update(learner, hand_batch(lengths, rewards, kept=[0, 1]), algo, cfg.grpo, timer)
    assert timer.seconds["logprob"] > 0  # dapo has no KL: this is the old log-probs' pass
    # the second pass compares with the frozen old log-probs: KL(old || new) > 0 (exactly 0 if old = current)
    assert reused["approx_kl"] > 1e-8 and reused["ratio/max"] > 1.0


# ------------------------------------------------------------------------------------------------ metrics
def test_batch_metrics_over_every_round_and_budgets():
    from rlvr.train.step_metrics import batch_metrics

    batch = hand_batch([3, 5, 2, 16, 4, 4, 6, 1], [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, math.nan], kept=[0])
    batch.budgets = [8, None]
    m = batch_metrics(batch, budgets=True)
    assert m["reward/mean"] == pytest.approx(2 / 7) and m["reward/none_rate"] == pytest.approx(1 / 8)
    assert m["groups/all_wrong_frac"] == 0.5 and m["groups/zero_std_frac"] == 0.5 and m["filter/kept_frac"] == 0.5
    assert m["completion/length_max"] == 16 and m["completion/length_mean"] == pytest.approx(41 / 8)
    assert m["budget/thinking_mean"] == 8 and m["budget/forced_frac"] == 0
    assert m["batch/groups"] == 1 and m["batch/rounds"] == 1 and m["tokens/generated"] == 41


def test_one_step_without_the_cli_logs_a_row_and_resumed_monitors_keep_their_baseline(tmp_path):
    """collect -> update -> measure -> log_step on the tiny model, then save and a real resume: the monitors'
    length baseline (filled during the first steps) comes back from the checkpoint."""
    import json

    from rlvr.runs.tracking import read_metrics
    from rlvr.train.grpo_report import close, log_step, measure, save
    from rlvr.train.grpo_setup import setup
    from rlvr.train.grpo_steps import update

    cfg = config(tmp_path, "algo=grpo", "algo.kl_beta=0", "monitors.baseline_steps=3")
    t = setup(cfg)
    try:
        timer, started = PhaseTimer(cuda=False), 0.0
        batch = t.source.collect(1, timer)
        row, samples = measure(t, 1, batch, update(t.learner, batch, t.algo, cfg.grpo, timer), timer, 1.0)
        log_step(t, 1, batch, row, samples, timer, started)
        assert t.monitors.lengths == [pytest.approx(row["completion/length_mean"])]
        save(t, 1)
    finally:
        close(t)
    (logged,) = read_metrics(t.run.metrics)
    assert logged["step"] == 1 and logged["batch/groups"] == B and logged["data/position"] == B
    assert "verifier/math/mean" in logged and "time/update" in logged and "loss" in logged
    assert [json.loads(x)["step"] for x in t.run.samples.read_text().splitlines()] == [1, 1, 1]

    resumed = setup(cfg)  # grpo.resume=true by default: from checkpoints/step_1
    try:
        assert resumed.start_step == 1 and resumed.source.position == B
        assert resumed.monitors.lengths == t.monitors.lengths
        assert resumed.monitors.state_dict() == t.monitors.state_dict()
    finally:
        close(resumed)
