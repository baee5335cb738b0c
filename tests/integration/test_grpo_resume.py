"""A GRPO run killed with SIGKILL and resumed reproduces an uninterrupted run (same seed, HF engine).

Run A goes N+2 steps straight through. Run B is the same command in a subprocess, SIGKILLed as soon as step N's
checkpoint appears (step N+1 is then running), and started again: it must resume from step_N and land on
the same metrics at step N+2 and the same final weights, within float tolerance. Every random draw of the
loop comes from checkpointed state (data position, per-step rollout seeds, optimizer/scheduler/RNG states).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlvr.runs.tracking import read_metrics

pytestmark = pytest.mark.slow

N = 2
ARGS = ["model=tiny", "task=arith", "logger=none", "algo=grpo", "algo.overlong=penalty", "algo.overlong_buffer=16",
        "grpo.prompts_per_step=2", "grpo.group_size=4", "grpo.max_new_tokens=16", "grpo.max_train_prompts=64",
        "grpo.micro_batch_size=4", "grpo.threads=1", "grpo.eval_every=0", "grpo.budget_eval_every=0",
        "rewards.num_workers=1", f"grpo.max_steps={N + 2}", f"grpo.save_every={N}", "grpo.learning_rate=3e-3",
        "grpo.keep_checkpoints=5",
        "seed=1"]  # seed 1: the random tiny model ends some rollouts early, so every step has a gradient
COMPARED = ("reward/mean", "accuracy", "loss", "grad_norm", "entropy", "kl/ref", "completion/length_mean",
            "lr", "data/position")


def command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "rlvr.cli", "grpo", f"output_dir={run_dir}", *ARGS]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "1000"}  # COLUMNS: rich would wrap long paths


def load_weights(folder: Path):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_sigkilled_grpo_run_resumes_to_the_same_metrics_and_weights(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(command(straight), env=env(), check=True, timeout=600, capture_output=True)

    proc = subprocess.Popen(command(killed), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    checkpoint = killed / "checkpoints" / f"step_{N}"
    deadline = time.time() + 600
    while not checkpoint.exists():
        assert proc.poll() is None, "the run ended before its checkpoint appeared"
        assert time.time() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its reward workers, mid step N+1
    proc.wait(timeout=30)
    assert not (killed / "final").exists(), "the run finished before the kill; the test proves nothing"

    resumed = subprocess.run(command(killed), env=env(), check=True, timeout=600, capture_output=True, text=True)
    assert f"resuming from {checkpoint}" in resumed.stdout

    a = {r["step"]: r for r in read_metrics(straight / "metrics.jsonl")}
    b = {r["step"]: r for r in read_metrics(killed / "metrics.jsonl")}
    assert sorted(a) == sorted(b) == list(range(1, N + 3))  # the killed step's row was replaced, not duplicated
    for step in (N + 1, N + 2):
        for key in COMPARED:
            assert b[step][key] == pytest.approx(a[step][key], rel=1e-4, abs=1e-6), (step, key)
    assert a[N + 2]["grad_norm"] > 0, "no gradient: the comparison would not show a diverged update"
    # the reward-hacking monitors resume with their baselines (length baseline, reward history) from the checkpoint
    state = torch.load(checkpoint / "trainer_state.pt", weights_only=False)
    assert len(state["monitors"]["lengths"]) == N
    monitor_keys = sorted(k for k in a[N + 2] if k.startswith("monitor/"))
    assert monitor_keys, "no monitor metrics: the monitors' resume is not tested"
    for key in monitor_keys:
        if a[N + 2][key] is None:  # NaN (not computable this step) is written as null
            assert b[N + 2][key] is None, key
        else:
            assert b[N + 2][key] == pytest.approx(a[N + 2][key], rel=1e-6, abs=1e-9), key

    wa, wb, w0 = load_weights(straight / "final"), load_weights(killed / "final"), load_weights(checkpoint)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert (wa[name] - wb[name]).abs().max().item() < 1e-5, name
    assert any((wa[n] - w0[n]).abs().max().item() > 0 for n in wa), "weights never moved after step N"
