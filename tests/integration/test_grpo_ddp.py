"""``rlvr grpo`` under ``accelerate launch`` with 2 processes (DDP over gloo on CPU, loopback only).

One run exercises every multi-process rule of the trainer (see "Processes" in ``rlvr.train.grpo``): DAPO with
dynamic sampling and a test verifier that scores by rank — rank 0's groups are mixed (informative), rank 1's
completions all score 0, so rank 1 never keeps a group. Without the joint stopping rule and the idle rank's
zero-gradient update, DDP's all-reduce would deadlock (the subprocess timeout catches that). Then a second launch
resumes from the newest checkpoint.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from process_tree import kill_tree  # tests/ is on sys.path (rootdir conftest)
from rank_verifier import TESTS_DIR  # tests/ is on sys.path (rootdir conftest)
from safetensors.torch import load_file

from rlvr.runs.tracking import read_metrics

pytestmark = pytest.mark.slow

B, G = 2, 4
ARGS = ["model=tiny", "task=arith", "logger=none", "rollout=hf", "algo=dapo", "algo.overlong=none",
        "algo.max_sampling_rounds=2", "task.verifiers=[{name:'rank_verifier:RankVerifier',label:rank}]",
        f"grpo.prompts_per_step={B}", f"grpo.group_size={G}", "grpo.max_new_tokens=12", "grpo.max_train_prompts=64",
        "grpo.micro_batch_size=3", "grpo.threads=1", "grpo.eval_num_problems=1", "grpo.eval_splits=[test_ops1]",
        "grpo.eval_max_new_tokens=4", "grpo.num_samples_to_log=4", "rewards.num_workers=0",
        "grpo.save_every=1", "grpo.learning_rate=3e-3", "grpo.keep_checkpoints=5",
        # budget-conditioned rollouts (budget/* is a collective) and a tiny budget sweep (rank 0 only)
        "grpo.train_budget.mode=sample", "grpo.train_budget.choices=[2,4,null]", "grpo.train_budget.answer_tokens=4",
        "budget_eval.budgets=[0,4]", "budget_eval.splits=[test_ops1]", "budget_eval.num_problems=1", "budget_eval.n=2",
        "budget_eval.k_list=[1]", "budget_eval.max_new_tokens=8", "budget_eval.answer_tokens=4",]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(run_dir: Path, *overrides: str) -> str:
    """Run ``rlvr grpo`` in 2 processes; returns their output (rank 0 prints, rank 1's console is quiet)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port()),
               "-m", "rlvr.cli", "grpo", f"output_dir={run_dir}", *ARGS, *overrides]
    python_path = [TESTS_DIR, *filter(None, [os.environ.get("PYTHONPATH")])]  # + tests/rank_verifier.py
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "1000",  # COLUMNS: rich would wrap long paths
           # DDP over gloo on CPU, on a GPU machine too (without a GPU, --multi_gpu alone would start two
           # independent single-process runs, which the trainer refuses)
           "ACCELERATE_USE_CPU": "true", "MASTER_ADDR": "127.0.0.1", "PYTHONPATH": os.pathsep.join(python_path)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:  # a deadlocked collective: kill the launcher and both ranks
        kill_tree(proc)  # the ranks run in sessions of their own: killpg would miss them
        out, _ = proc.communicate()
        pytest.fail(f"the 2-process run hung (a collective without its partner?):\n{out[-3000:]}")
    assert proc.returncode == 0, out[-5000:]
    return out


def test_two_process_grpo_shares_the_update_logs_once_and_resumes(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    first = launch(run, "grpo.max_steps=2", "grpo.eval_every=2", "grpo.budget_eval_every=2")
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2], "one row per step, written by rank 0 only"
    for r in rows:
        # rank 1 never keeps a group, so both ranks sample every round and rank 1 joins the update idle
        assert r["batch/rounds"] == 2 and 0 < r["batch/groups"] <= B, r
        assert r["grad_norm"] > 0 and r["tokens"] > 0
        # whole-batch metrics: rank 1's completions (all 0) count; verifier/* is rank 0's alone
        assert r["accuracy"] == pytest.approx(r["verifier/rank/mean"] / 2) and r["accuracy"] > 0
        assert r["reward/mean"] == pytest.approx(r["accuracy"])
        assert r["data/position"] == r["step"] * 2 * B * 2  # steps x rounds x B x world prompts
    assert "eval/test_ops1/accuracy" in rows[1] and "eval @ step 0" in first
    assert all(0 <= r["budget/forced_frac"] <= 1 and r["budget/thinking_mean"] <= 4 for r in rows)
    # one result line per sweep, at the start and the end (each sweep also prints its cost line first)
    assert "budget_eval/test_ops1/B4/pass@1" in rows[1] and first.count("pass@1 over splits") == 2
    assert all((run / "eval" / f"budget_sweep_step{s}.json").exists() for s in (0, 2))

    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    for step in (1, 2):
        by_rank = {k: {s["prompt"] for s in samples if s["step"] == step and s["rank"] == k} for k in (0, 1)}
        assert by_rank[0] and by_rank[1] and not by_rank[0] & by_rank[1], f"step {step}: ranks share prompts"
        assert all(s["accuracy"] == 0 for s in samples if s["step"] == step and s["rank"] == 1)
        assert all(s["budget"] is None or s["prompt"].endswith(f"Think for {s['budget']} tokens.") for s in samples)

    # Rank 1's own gradient is zero every step, yet its weights equal rank 0's, which moved: the all-reduce worked.
    done = json.loads((run / "final" / "rlvr_grpo_done.json").read_text())
    fingerprints = done["weights/fingerprint_per_rank"]  # each rank's [sum, sum of squares] of its weights
    assert done["processes"] == 2 and len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    start, final = (load_file(str(d / "model.safetensors")) for d in (tiny_model_dir, run / "final"))
    assert any((start[k] - final[k]).abs().max() > 0 for k in final)
    state = torch.load(run / "checkpoints" / "step_2" / "trainer_state.pt", weights_only=False)
    assert len(state["rng_per_rank"]) == 2 and state["data_position"] == rows[1]["data/position"]

    resumed = launch(run, "grpo.max_steps=3", "grpo.eval_every=0", "grpo.budget_eval_every=0")
    assert f"resuming from {run / 'checkpoints' / 'step_2'}" in resumed
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[2]["data/position"] == 3 * 2 * B * 2
    assert json.loads((run / "final" / "rlvr_grpo_done.json").read_text())["step"] == 3
