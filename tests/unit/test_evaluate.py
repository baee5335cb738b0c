"""``rlvr eval`` on the embedded tiny model: sweep rows and files, verifier errors counted (never a silent 0),
checkpoint discovery in run directories, and the config error path."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace

import pytest
from omegaconf import OmegaConf

from rlvr.cli import main
from rlvr.eval.budget_sweep import budget_sweep, read_sweeps, sweep_checkpoint
from rlvr.rewards.runtime import RewardRuntime, RewardsConfig
from rlvr.runs.layout import Checkpoint, describe_model, run_checkpoints, tokens_at

CRASH = {"name": "rlvr.verifiers.testing:Crash"}  # SIGSEGV in the verifier worker
RAISE = {"name": "rlvr.verifiers.testing:Raise"}  # an exception inside the verifier


class BrokenVerifierTask:
    """The arith task, except that problem 0 is judged by a crashing verifier and problem 1 by a raising one."""

    def __init__(self, task):
        self.task, self.name, self.splits = task, task.name, task.splits

    def samples(self, split, limit=None):
        out = self.task.samples(split, limit=limit)
        return [replace(out[0], verifiers=(CRASH,)), replace(out[1], verifiers=(RAISE,)), *out[2:]]


def test_sweep_rows_files_and_verifier_errors(tiny, task, tmp_path):
    from rlvr.rollout.hf import HFEngine

    model, tok = tiny
    eval_cfg = OmegaConf.create({"budgets": [0, 8], "n": 2, "k_list": [1, 2], "num_problems": 4, "answer_tokens": 8,
                                 "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 24, "batch_size": 64,
                                 "splits": ["test_ops1", "test_ops3"]})
    ckpt = Checkpoint("/nowhere/step_5", "step 5", 5, 1000.0)
    with RewardRuntime(RewardsConfig(num_workers=1, abort_error_rate=1.0)) as runtime:
        rows, path = sweep_checkpoint(model, tok, BrokenVerifierTask(task), eval_cfg, ckpt, tmp_path, runtime, seed=3)
        again = budget_sweep(HFEngine(model, tok), BrokenVerifierTask(task), ["test_ops1"], [0, 8], runtime, n=2,
                             k_list=[1, 2], num_problems=4, answer_tokens=8, temperature=1.0, max_new_tokens=24, seed=3)
    assert path == tmp_path / "eval" / "budget_sweep_step5.json"
    assert [(r["split"], r["budget"]) for r in rows] == [("test_ops1", 0), ("test_ops1", 8), ("test_ops3", 0),
                                                         ("test_ops3", 8)]
    for r in rows:
        assert r["checkpoint"] == "step 5" and r["step"] == 5 and r["train_tokens"] == 1000.0 and r["task"] == "arith"
        assert r["n_problems"] == 4 and r["n"] == 2
        # 2 of 4 problems have a broken verifier: every one of their samples is an error, excluded from accuracy
        assert r["verifier_error_rate"] == 0.5 and r["problems_judged"] == 2
        assert "died" in r["last_verifier_error"] or "boom" in r["last_verifier_error"]
        for key in ("pass@1", "pass@2", "maj@1", "maj@2"):
            assert 0.0 <= r[key] <= 1.0
        assert r["pass@2"] >= r["pass@1"]
        assert r["mean_thinking_tokens"] <= r["budget"]  # the cap holds (B = 0: no thinking at all)
        assert r["tokens_per_answer"] <= 24 and 0 <= r["truncation_rate"] <= 1 and 0 <= r["budget_forced_rate"] <= 1
        assert r["test_tokens"] == pytest.approx(4 * r["tokens_per_answer"])
        assert r["total_compute_tokens"] == pytest.approx(1000.0 + r["test_tokens"])
    assert rows[0]["mean_thinking_tokens"] == 0
    # same seed, same model: the standalone core reproduces the rows the file holds (common random numbers)
    assert [r["pass@1"] for r in again] == [r["pass@1"] for r in rows[:2]]
    assert [r["tokens_per_answer"] for r in again] == [r["tokens_per_answer"] for r in rows[:2]]

    saved = json.loads(path.read_text())
    assert saved["meta"]["step"] == 5 and saved["meta"]["eval"]["budgets"] == [0, 8]
    assert saved["rows"] == read_sweeps(tmp_path)
    with path.with_suffix(".csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4
    for col in ("checkpoint", "step", "train_tokens", "task", "split", "budget", "pass@1", "pass@2", "maj@2",
                "mean_thinking_tokens", "truncation_rate", "verifier_error_rate", "n_problems", "test_tokens"):
        assert col in table[0], col
    assert [row["budget"] for row in table] == ["0", "8", "0", "8"]


def test_broken_verifier_everywhere_gives_nan_not_zero(tiny, task):
    from rlvr.rollout.hf import HFEngine

    class AllRaise(BrokenVerifierTask):
        def samples(self, split, limit=None):
            return [replace(s, verifiers=(RAISE,)) for s in self.task.samples(split, limit=limit)]

    with RewardRuntime(RewardsConfig(num_workers=0)) as runtime:
        (row,) = budget_sweep(HFEngine(tiny[0], tiny[1]), AllRaise(task), ["test_ops1"], [None], runtime, n=2,
                              k_list=[2], num_problems=2, max_new_tokens=8, seed=0)
    assert row["verifier_error_rate"] == 1.0 and math.isnan(row["pass@1"]) and math.isnan(row["maj@2"])
    with pytest.raises(ValueError, match="raise eval.n"):
        budget_sweep(None, task, ["test_ops1"], [None], None, n=2, k_list=[4])


def make_run(root, name, stage, config_extra=""):
    run = root / name
    run.mkdir()
    (run / "config.yaml").write_text(f"{stage}:\n  max_steps: 30\nlogger:\n  backend: none\n{config_extra}")
    return run


def model_folder(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_run_dirs_find_checkpoints_steps_and_train_tokens(tmp_path):
    sft = make_run(tmp_path, "sft", "sft")
    for step, tokens in [(10, 1000.0), (20, 2000.0)]:
        ck = model_folder(sft / "checkpoints" / f"checkpoint-{step}")
        history = [{"step": s, "num_tokens": t} for s, t in [(10, 1000.0), (20, 2000.0)] if s <= step]
        (ck / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    model_folder(sft / "final")
    final = describe_model(sft / "final")
    assert (final.step, final.train_tokens, final.label) == (30, 3000.0, "sft/step 30")  # extrapolated at the rate
    grpo = make_run(tmp_path, "grpo", "grpo", f"model:\n  name_or_path: {sft / 'final'}\n")
    (grpo / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "tokens": 100.0}) + "\n" for s in (1, 2, 3)))
    ck = model_folder(grpo / "checkpoints" / "step_2")
    (ck / "trainer_state.pt").write_bytes(b"")
    model_folder(grpo / "final")
    (grpo / "final" / "rlvr_grpo_done.json").write_text(json.dumps({"step": 3}))
    all_ = run_checkpoints(grpo, "all")
    assert [(c.label, c.step, c.train_tokens) for c in all_] == [
        ("step 0", 0, 3000.0), ("step 2", 2, 3200.0), ("step 3", 3, 3300.0)]  # the SFT stage's tokens carry over
    assert all_[0].path == str(sft / "final")
    assert [c.step for c in run_checkpoints(grpo, "newest")] == [3]
    loose = describe_model(model_folder(tmp_path / "somewhere" / "my-model"))
    assert (loose.label, loose.step, loose.train_tokens, loose.tag) == ("my-model", None, None, "my-model")
    assert tokens_at({0: 0.0, 10: 100.0}, 5) == 50.0 and tokens_at({}, 5) is None
    unfinished = make_run(tmp_path, "unfinished", "grpo")
    (model_folder(unfinished / "checkpoints" / "step_1") / "trainer_state.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="not finished"):
        run_checkpoints(unfinished, "final")
    assert [c.label for c in run_checkpoints(unfinished, "newest")] == ["step 1"]
    with pytest.raises(FileNotFoundError, match="no final/ model and no checkpoints/"):
        run_checkpoints(make_run(tmp_path, "empty", "sft"), "all")


def test_eval_command_reports_every_config_error(tmp_path, capsys):
    code = main(["eval", "eval.n=2", "eval.answer_tokens=0", "eval.budgets=[-1,8]", "eval.k_list=[1,4]",
                 "eval.checkpoints=some", f"run_dir={tmp_path / 'missing'}", "eval.nn=3"])
    err = capsys.readouterr().err
    assert code == 2
    assert "configuration errors" in err
    for key in ("eval.nn", "eval.answer_tokens", "eval.budgets", "eval.k_list", "eval.checkpoints", "run_dir"):
        assert key in err, key
    assert main(["eval", "--help"]) == 0
    assert "eval.budgets" in capsys.readouterr().out


def test_eval_command_end_to_end(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["eval", f"model.name_or_path={tiny_model_dir}", f"output_dir={out}", "logger=none",
                 "eval.budgets=[0,null]", "eval.num_problems=2", "eval.n=2", "eval.k_list=[1,2]",
                 "eval.splits=[test_ops2]", "eval.max_new_tokens=16", "rewards.num_workers=0", "eval.plot=false"])
    text = capsys.readouterr().out
    assert code == 0
    (path,) = (out / "eval").glob("budget_sweep_*.json")
    rows = json.loads(path.read_text())["rows"]
    assert [r["budget"] for r in rows] == [0, None] and rows[0]["step"] is None  # a loose folder: step unknown
    assert "pass@1 (%)" in text and "│   none │" in text  # the console table; null budget = "none"
