"""``rlvr pipeline`` end to end on the tiny model, shortened: sft -> grpo -> eval -> plot land every artefact in one
run directory, a re-run redoes nothing, and a pipeline SIGKILLed during GRPO resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from rlvr.cli import main

pytestmark = pytest.mark.slow

SHORT = ["model=tiny", "task=arith", "logger=none",
         "sft.max_steps=60", "sft.logging_steps=20", "sft.save_steps=0", "sft.max_train_samples=2000",
         "sft.eval_num_problems=8", "sft.eval_max_new_tokens=48",
         "grpo.prompts_per_step=2", "grpo.group_size=4", "grpo.max_new_tokens=32", "grpo.max_train_prompts=64",
         "grpo.micro_batch_size=8", "grpo.eval_num_problems=8", "grpo.eval_max_new_tokens=48", "grpo.save_every=2",
         "rewards.num_workers=1",
         "eval.budgets=[8,32]", "eval.num_problems=4", "eval.n=2", "eval.k_list=[1,2]",
         "eval.splits=[test_ops1,test_ops2]",
         'pipeline.stage_overrides.sft=["task.arith.max_ops=2"]']
GRPO_3 = ["grpo.max_steps=3", "grpo.eval_every=3"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("pipeline") / "run"
    started = time.time()
    assert main(["pipeline", f"output_dir={run}", *SHORT, *GRPO_3]) == 0
    return run, time.time() - started


def test_every_stage_leaves_its_artefacts_and_grpo_does_not_lower_accuracy(finished):
    run, seconds = finished
    for path in ("config.yaml", "summary.json",
                 "sft/final/model.safetensors", "sft/final/rlvr_sft_done.json", "sft/eval/sft_heldout.json",
                 "grpo/final/model.safetensors", "grpo/final/rlvr_grpo_done.json", "grpo/metrics.jsonl",
                 "grpo/eval/grpo_step0.json", "grpo/eval/grpo_step3.json",
                 "eval/budget_sweep_sft.json", "eval/budget_sweep_grpostep3.json",
                 "plots/accuracy_vs_budget.png", "plots/accuracy_vs_step.png", "plots/accuracy_vs_compute.png",
                 "RUNCARD.md", "provenance.json", "grpo/contamination.json", "grpo/final/RUNCARD.md",
                 "sft/final/provenance.json", "eval/provenance.json"):
        assert (run / path).exists(), path
    # the stage override reached SFT only: SFT trained on 1-2 operations, GRPO on 1-3
    import yaml

    assert yaml.safe_load((run / "sft" / "config.yaml").read_text())["task"]["arith"]["max_ops"] == 2
    grpo_cfg = yaml.safe_load((run / "grpo" / "config.yaml").read_text())
    assert grpo_cfg["task"]["arith"]["max_ops"] == 3
    assert grpo_cfg["model"]["name_or_path"] == str(run / "sft" / "final")  # GRPO continued from SFT
    # the demo's GRPO-only verifiers (its pipeline.stage_overrides.grpo): arith_steps out of the reward (weight 0),
    # its per-line verdicts as token-level advantages (algo.process_verifier)
    assert grpo_cfg["task"]["verifiers"] == ["math", {"name": "arith_steps", "weight": 0}]
    assert grpo_cfg["algo"]["process_verifier"] == "arith_steps"
    assert yaml.safe_load((run / "config.yaml").read_text())["task"]["verifiers"] == []  # eval judges by math alone
    summary = json.loads((run / "summary.json").read_text())
    assert [s["status"] for s in summary["stages"].values()] == ["ran"] * 4
    assert set(summary["pass@1_by_budget"]) == {"sft", "grpo step 2", "grpo step 3"}
    assert all(set(v) == {"8", "32"} for v in summary["pass@1_by_budget"].values())
    assert len(summary["plots"]) == 3
    before, after = summary["mean_accuracy"]["after_sft"], summary["mean_accuracy"]["after_grpo"]
    assert before is not None and after is not None
    assert after >= before - 1 / 8, (before, after)  # 3 tiny steps must not lose more than one problem in 8
    rows = [json.loads(line) for line in (run / "grpo" / "metrics.jsonl").open()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["process/scored_frac"] == 1.0 for r in rows)  # every completion's lines were judged
    # the pipeline's card tells the whole chain, with the contamination check run before GRPO
    card = json.loads((run / "provenance.json").read_text())
    stages = []
    node = card
    while node:
        stages.append(node["stage"])
        node = node.get("parent")
    assert stages == ["pipeline", "eval", "grpo", "sft"], stages
    contamination = json.loads((run / "grpo" / "contamination.json").read_text())
    assert [e["name"] for e in contamination["eval_sets"]] == [f"arith:test_ops{k}" for k in range(1, 5)]
    assert all(e["exact_matches"] == 0 for e in contamination["eval_sets"])  # held-out by construction
    assert json.loads((run / "grpo" / "final" / "provenance.json").read_text())["contamination"]
    print(f"shortened pipeline: {seconds:.0f}s")


def test_diff_runs_between_two_pipelines_names_the_one_override(finished, tmp_path, capsys):
    from rlvr.runs.diff_runs import diff

    run, _ = finished
    other = tmp_path / "other"
    assert main(["pipeline", f"output_dir={other}", *SHORT, *GRPO_3, "grpo.learning_rate=2e-5"]) == 0
    groups = diff(*(json.loads((r / "provenance.json").read_text()) for r in (run, other)))
    recipe = [key for key, _, _ in groups["recipe"]]
    assert recipe == ["config.grpo.learning_rate"], recipe  # listed once, though every stage below records it
    assert groups["data"] == groups["verifiers"] == []
    capsys.readouterr()
    assert main(["diff-runs", str(run), str(other)]) == 0
    assert "grpo.learning_rate" in capsys.readouterr().out


def test_a_rerun_redoes_nothing(finished, capsys):
    run, _ = finished
    # the run's own summary, config and card describe the latest invocation; every stage output must stay as it was
    rewritten = {run / name for name in ("summary.json", "config.yaml", "RUNCARD.md", "provenance.json")}
    mtimes = {p: p.stat().st_mtime for p in run.rglob("*") if p.is_file() and p not in rewritten}
    capsys.readouterr()
    assert main(["pipeline", f"output_dir={run}", *SHORT, *GRPO_3]) == 0
    out = capsys.readouterr().out
    assert out.count("already complete") >= 4
    assert {p: p.stat().st_mtime for p in mtimes} == mtimes  # no stage wrote anything
    summary = json.loads((run / "summary.json").read_text())
    assert all(s["status"] == "already complete" for s in summary["stages"].values())


def test_a_pipeline_killed_during_grpo_resumes_and_finishes(finished, tmp_path):
    """The finished SFT stage is copied in (no need to train it twice); GRPO is killed with SIGKILL right after its
    step-2 checkpoint appears, and the same command, run again, resumes GRPO there and finishes the pipeline."""
    run = tmp_path / "run"
    shutil.copytree(finished[0] / "sft", run / "sft")
    args = [sys.executable, "-m", "rlvr.cli", "pipeline", f"output_dir={run}", *SHORT, "grpo.max_steps=6",
            "grpo.eval_every=0", "grpo.keep_checkpoints=5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "1000"}  # COLUMNS: rich would wrap long paths
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    checkpoint = run / "grpo" / "checkpoints" / "step_2"
    deadline = time.time() + 300
    while not checkpoint.exists():
        assert proc.poll() is None, "the pipeline ended before GRPO's checkpoint appeared"
        assert time.time() < deadline, "no GRPO checkpoint within 5 minutes"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the pipeline and its reward workers, mid GRPO step 3
    proc.wait(timeout=30)
    assert not (run / "grpo" / "final").exists(), "GRPO finished before the kill; the test proves nothing"
    assert not (run / "summary.json").exists()

    resumed = subprocess.run(args, env=env, check=True, timeout=600, capture_output=True, text=True)
    assert "stage sft: already complete" in resumed.stdout
    assert f"resuming from {checkpoint}" in resumed.stdout
    assert json.loads((run / "grpo" / "final" / "rlvr_grpo_done.json").read_text())["step"] == 6
    steps = [json.loads(line)["step"] for line in (run / "grpo" / "metrics.jsonl").open()]
    assert steps == [1, 2, 3, 4, 5, 6]  # the killed step's row was replaced, not duplicated
    summary = json.loads((run / "summary.json").read_text())
    assert [s["status"] for s in summary["stages"].values()] == ["already complete", "ran", "ran", "ran"]
    assert len(summary["plots"]) == 3
