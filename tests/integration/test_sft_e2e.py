"""``rlvr sft`` end to end on the tiny model: loss goes down, artefacts land, a crash resumes from a checkpoint."""

from __future__ import annotations

import json
import shutil

import pytest

from rlvr.cli import main
from rlvr.runs.tracking import read_metrics

pytestmark = pytest.mark.slow

COMMON = ["task=arith", "model=tiny", "sft.logging_steps=10", "sft.eval_num_problems=8", "sft.eval_max_new_tokens=48"]


def losses(run_dir):
    return [r["train/loss"] for r in read_metrics(run_dir / "metrics.jsonl") if "train/loss" in r]


def test_short_sft_lowers_loss_writes_artefacts_and_logs_to_wandb_offline(tmp_path, capsys):
    run = tmp_path / "sft"
    assert main(["sft", f"output_dir={run}", "sft.max_steps=60", "sft.save_steps=0", "logger=wandb",
                 "logger.mode=offline", *COMMON]) == 0
    loss = losses(run)
    assert len(loss) == 6 and loss[-1] < 0.7 * loss[0], loss
    for path in ("config.yaml", "final/config.json", "final/tokenizer_config.json", "final/model.safetensors",
                 "eval/sft_heldout.json", "eval/sft_heldout.csv", "final/rlvr_sft_done.json"):
        assert (run / path).exists(), path
    rows = json.loads((run / "eval/sft_heldout.json").read_text())["rows"]
    assert [r["split"] for r in rows] == ["test_ops1", "test_ops2", "test_ops3", "test_ops4"]
    assert all(r["n"] == 8 for r in rows)
    assert list((run / "wandb").glob("offline-run-*")), "wandb offline run missing"
    out = capsys.readouterr().out
    assert "held-out greedy accuracy" in out and "test_ops4" in out
    # A finished stage is not redone.
    assert main(["sft", f"output_dir={run}", "sft.max_steps=60", "logger=none", *COMMON]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_interrupted_sft_resumes_from_its_last_checkpoint(tmp_path, capsys):
    run = tmp_path / "sft"
    args = ["sft", f"output_dir={run}", "sft.max_steps=40", "sft.save_steps=20", "logger=none", *COMMON]
    assert main(args) == 0
    full = {r["step"]: r["train/loss"] for r in read_metrics(run / "metrics.jsonl") if "train/loss" in r}
    # Simulate a crash after step 20's checkpoint: the later checkpoint and the final model never got written.
    shutil.rmtree(run / "checkpoints" / "checkpoint-40")
    shutil.rmtree(run / "final")
    capsys.readouterr()
    assert main(args) == 0
    assert "resuming from" in capsys.readouterr().out
    resumed = {r["step"]: r["train/loss"] for r in read_metrics(run / "metrics.jsonl") if "train/loss" in r}
    assert sorted(resumed) == [10, 20, 30, 40]  # rows of the lost steps were replaced, none duplicated
    assert resumed[10] == full[10] and resumed[20] == full[20]
    assert resumed[40] == pytest.approx(full[40], rel=1e-4)  # same data order and RNG after the resume
    assert (run / "final" / "model.safetensors").exists()
