"""``rlvr grpo grpo.sharding=fsdp`` in 2 processes (FSDP2 over gloo on CPU, loopback only), against DDP, and a
sharded checkpoint resumed in ONE process.

The runs share test_grpo_ddp.py's setting (DAPO with dynamic sampling, a verifier under which rank 1 never keeps
a group): the ranks keep different numbers of groups, so they have different micro-batch counts, which FSDP
must even out (every forward is a collective) and rank 1 is idle, training on a masked-out group.

1. FSDP and DDP, same seeds and data, give the same metrics for 3 steps and the same final weights (float
   tolerance: reduce-scatter and all-reduce add in different orders); the FSDP final/ loads in a fresh process.
2. An FSDP run SIGKILLed during step 3 (after step 2's sharded checkpoint) resumes with 1 process
   (grpo.sharding=none, the same global batch: 2B prompts) and matches a 1-process run resumed from the
   uninterrupted FSDP run's step-2 checkpoint, step for step. Identical metrics across world sizes are not
   expected: each rank samples with its own seed, so 2 processes draw other completions than 1.
3. FSDP in one process (a one-rank group) with activation checkpointing matches the unsharded single-process run
   for 3 steps.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from process_tree import kill_tree  # tests/ is on sys.path (rootdir conftest)
from rank_verifier import TESTS_DIR  # tests/ is on sys.path (rootdir conftest)
from safetensors.torch import load_file

from rlvr.runs.tracking import read_metrics

pytestmark = pytest.mark.slow

B, G, STEPS = 2, 4, 3
ARGS = ["model=tiny", "task=arith", "logger=none", "rollout=hf", "algo=dapo", "algo.overlong=none",
        "algo.max_sampling_rounds=2", "task.verifiers=[{name:'rank_verifier:RankVerifier',label:rank}]",
        f"grpo.group_size={G}", "grpo.max_new_tokens=12", "grpo.max_train_prompts=64",
        "grpo.micro_batch_size=3", "grpo.threads=1", "grpo.eval_every=0", "grpo.budget_eval_every=0",
        "grpo.num_samples_to_log=2", "rewards.num_workers=0", "grpo.save_every=1", "grpo.learning_rate=3e-3",
        "grpo.keep_checkpoints=5"]
WEIGHT_TOLERANCE = 1e-4  # 3 AdamW steps at lr 3e-3 (seen: 3e-5 for 1-process fsdp vs none, < 1e-5 fsdp vs ddp)
COMPARED = ("reward/mean", "accuracy", "loss", "grad_norm", "entropy", "completion/length_mean", "tokens", "lr",
            "data/position", "batch/groups")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(run_dir: Path) -> dict[str, str]:
    python_path = [TESTS_DIR, *filter(None, [os.environ.get("PYTHONPATH")])]  # + tests/rank_verifier.py
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "1000", "ACCELERATE_USE_CPU": "true",
            "MASTER_ADDR": "127.0.0.1", "PYTHONPATH": os.pathsep.join(python_path)}


def command(run_dir: Path, processes: int, *overrides: str) -> list[str]:
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port())]
    head = launcher if processes > 1 else [sys.executable]
    return [*head, "-m", "rlvr.cli", "grpo", f"output_dir={run_dir}", *ARGS, *overrides]


def run(run_dir: Path, processes: int, *overrides: str, timeout: float = 300) -> str:
    """Run ``rlvr grpo`` to the end; its output (rank 0's console)."""
    proc = subprocess.Popen(command(run_dir, processes, *overrides), env=environment(run_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # a deadlocked collective: kill the launcher and every rank
        kill_tree(proc)
        out, _ = proc.communicate()
        pytest.fail(f"the run hung (a collective without its partner?):\n{out[-3000:]}")
    assert proc.returncode == 0, out[-5000:]
    return out


def killed_after(run_dir: Path, step: int, processes: int, *overrides: str) -> None:
    """Start the run, SIGKILL every process as soon as step ``step``'s checkpoint is complete (renamed)."""
    proc = subprocess.Popen(command(run_dir, processes, *overrides), env=environment(run_dir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint, deadline = run_dir / "checkpoints" / f"step_{step}", time.time() + 300
    try:
        while not checkpoint.exists():
            assert proc.poll() is None, "the run ended before its checkpoint appeared"
            assert time.time() < deadline, "no checkpoint within 5 minutes"
            time.sleep(0.05)
    finally:  # the ranks run in sessions of their own: killpg would miss them
        kill_tree(proc)
    assert not (run_dir / "final").exists(), "killed too late: the run had finished"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    """The FSDP and DDP runs (2 processes, 3 steps) that the tests compare (the tiny model built once, before the
    ranks start: two ranks building it at once into an empty cache race)."""
    root = tmp_path_factory.mktemp("fsdp")
    out = {}
    for sharding in ("fsdp", "ddp"):
        out[sharding + "_log"] = run(root / sharding, 2, f"grpo.sharding={sharding}", f"grpo.prompts_per_step={B}",
                                     f"grpo.max_steps={STEPS}")
        out[sharding] = root / sharding
    out["root"] = root
    return out


def close(a: float, b: float) -> bool:
    return a == pytest.approx(b, rel=1e-4, abs=1e-6)


def test_fsdp_matches_ddp_and_saves_a_loadable_model(runs):
    fsdp, ddp = read_metrics(runs["fsdp"] / "metrics.jsonl"), read_metrics(runs["ddp"] / "metrics.jsonl")
    assert [r["step"] for r in fsdp] == [r["step"] for r in ddp] == list(range(1, STEPS + 1))
    for a, b in zip(fsdp, ddp):
        diffs = {k: (a[k], b[k]) for k in COMPARED if not close(a[k], b[k])}
        assert not diffs, f"step {a['step']}: fsdp vs ddp differ: {diffs}"
        assert 0 < a["batch/groups"] <= B and a["grad_norm"] > 0  # rank 1 kept nothing: it trained idle
    final_f, final_d = (load_file(str(runs[k] / "final" / "model.safetensors")) for k in ("fsdp", "ddp"))
    assert final_f.keys() == final_d.keys()
    worst = max((final_f[k] - final_d[k]).abs().max().item() for k in final_f)
    assert worst < WEIGHT_TOLERANCE, f"final weights differ by up to {worst}"
    # every rank's rollout copy is the gathered policy: their fingerprints agree
    import json

    done = json.loads((runs["fsdp"] / "final" / "rlvr_grpo_done.json").read_text())
    assert done["processes"] == 2 and done["weights/fingerprint_per_rank"][0] == done["weights/fingerprint_per_rank"][1]
    checkpoint = runs["fsdp"] / "checkpoints" / "step_2"
    assert (checkpoint / "dcp" / ".metadata").exists() and (checkpoint / "model.safetensors").exists()
    assert "sharding: fsdp" in (runs["fsdp"] / "config.yaml").read_text()
    probe = ("import sys; from transformers import AutoModelForCausalLM; m = AutoModelForCausalLM.from_pretrained("
             "sys.argv[1]); print(sum(p.numel() for p in m.parameters()))")
    loaded = subprocess.run([sys.executable, "-c", probe, str(runs["fsdp"] / "final")], capture_output=True,
                            text=True, timeout=120)
    assert loaded.returncode == 0 and int(loaded.stdout.split()[-1]) > 0, loaded.stderr[-2000:]


def test_sigkilled_fsdp_run_resumes_in_one_process(runs):
    root = runs["root"]
    killed, reference = root / "killed", root / "reference"
    killed_after(killed, 2, 2, "grpo.sharding=fsdp", f"grpo.prompts_per_step={B}", f"grpo.max_steps={STEPS}")
    # the killed run's checkpoint is the uninterrupted run's, bit for bit (same seeds, deterministic gloo)
    ours, theirs = (load_file(str(d / "checkpoints" / "step_2" / "model.safetensors")) for d in (killed, runs["fsdp"]))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    (reference / "checkpoints").mkdir(parents=True)
    shutil.copytree(runs["fsdp"] / "checkpoints" / "step_2", reference / "checkpoints" / "step_2")

    one = ("grpo.sharding=none", f"grpo.prompts_per_step={2 * B}", f"grpo.max_steps={STEPS + 1}")  # same 2B prompts
    resumed_log = run(killed, 1, *one)
    run(reference, 1, *one)
    assert f"resuming from {killed / 'checkpoints' / 'step_2'}" in resumed_log
    resumed, expected = read_metrics(killed / "metrics.jsonl"), read_metrics(reference / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]  # rows 1-2 kept from the 2-process run, 3 rewritten
    for a, b in zip(resumed[2:], expected):
        assert {k: a[k] for k in COMPARED} == {k: b[k] for k in COMPARED}, f"step {a['step']}"
    assert resumed[2]["data/position"] == resumed[1]["data/position"] + resumed[2]["batch/rounds"] * 2 * B
    final_r, final_e = (load_file(str(d / "final" / "model.safetensors")) for d in (killed, reference))
    assert all(torch.equal(final_r[k], final_e[k]) for k in final_e)


def test_one_process_fsdp_matches_an_unsharded_run(runs):
    """FSDP over a one-rank group (what grpo.fsdp_cpu_offload uses on one GPU), with activation checkpointing, is
    the unsharded run, step for step: the same micro-batches, the same gradients (no reduction across ranks;
    recomputed activations equal stored ones), the same weights."""
    root = runs["root"]
    one = (f"grpo.prompts_per_step={B}", f"grpo.max_steps={STEPS}", "grpo.save_every=0")
    run(root / "one_fsdp", 1, "grpo.sharding=fsdp", "grpo.activation_checkpointing=true", *one)  # + recompute
    run(root / "one_none", 1, "grpo.sharding=none", *one)
    sharded, plain = (read_metrics(root / d / "metrics.jsonl") for d in ("one_fsdp", "one_none"))
    assert len(sharded) == len(plain) == STEPS
    for a, b in zip(sharded, plain):
        diffs = {k: (a[k], b[k]) for k in COMPARED if not close(a[k], b[k])}
        assert not diffs, f"step {a['step']}: 1-process fsdp vs none differ: {diffs}"
    final_s, final_p = (load_file(str(root / d / "final" / "model.safetensors")) for d in ("one_fsdp", "one_none"))
    # grad norms agree to 7 digits; AdamW's m / sqrt(v) turns rounding in near-zero gradients into weight
    # differences of up to ~1% of the learning rate (3e-3) after 3 steps, never more
    assert max((final_s[k] - final_p[k]).abs().max().item() for k in final_p) < WEIGHT_TOLERANCE
