"""A mixed-task GRPO run: arith (math + format verifiers) and MBPP (code + format) rows in one batch, each row
scored by its own verifiers, with per-task metrics in metrics.jsonl."""

from __future__ import annotations

import json

import pytest

from rlvr.cli import main

pytestmark = pytest.mark.slow


def test_two_grpo_steps_on_a_math_and_code_mix_log_per_task_metrics(tmp_path, data_dir):
    run = tmp_path / "mix"
    assert main(["grpo", f"output_dir={run}", "model=tiny", "task=mix", f"data_dir={data_dir}", "logger=none",
                 "rollout=hf", "algo=grpo", "grpo.max_steps=2", "grpo.prompts_per_step=4", "grpo.group_size=2",
                 "grpo.max_new_tokens=16", "grpo.max_train_prompts=32", "grpo.micro_batch_size=8",
                 "grpo.eval_every=0", "grpo.budget_eval_every=0", "grpo.save_every=0",
                 "rewards.num_workers=1"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        for name in ("arith", "mbpp"):
            assert 0.0 <= r[f"task/{name}/accuracy"] <= 1.0
            assert r[f"task/{name}/frac"] > 0
        assert r["task/arith/frac"] + r["task/mbpp/frac"] == pytest.approx(1.0)
        assert r["verifier/math/applicable_rate"] == 1.0 and r["verifier/code/applicable_rate"] == 1.0
        assert r["verifier/format/applicable_rate"] == 1.0
        assert r["verifier/code/error_rate"] == 0.0 and r["verifier/math/error_rate"] == 0.0
    # each row was scored by its own task's verifiers: math + format on arith, code + format on MBPP
    samples = [json.loads(line) for line in (run / "samples.jsonl").open()]
    assert samples
    for s in samples:
        code_row = "python block" in s["prompt"]
        assert set(s["scores"]) == ({"code", "format"} if code_row else {"math", "format"}), s
