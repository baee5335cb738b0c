"""``rlvr sft --multirun`` end to end: two real (tiny) SFT jobs through Hydra's basic sweeper and launcher, each a
complete run folder where Hydra lays sweeps out (DIR/0, DIR/1); a sweep with one invalid job starts none."""

from __future__ import annotations

import json

import pytest

from rlvr.cli import main

pytestmark = pytest.mark.slow

TINY = ["sft.eval_num_problems=2", "sft.eval_max_new_tokens=8", "sft.save_steps=0", "logger=none", "sft.batch_size=4",
        "task.arith.num_train=64", "sft.threads=1"]


def test_sft_multirun_gives_one_complete_run_per_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    sweep = tmp_path / "sweep"
    assert main(["sft", "--multirun", "sft.max_steps=2,3", f"hydra.sweep.dir={sweep}", *TINY]) == 0
    for job, steps in (("0", 2), ("1", 3)):
        run = sweep / job
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert max(r["step"] for r in rows) == steps, job
        assert (run / "final" / "config.json").is_file() and (run / "final" / "model.safetensors").is_file()
        assert f"max_steps: {steps}" in (run / "config.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]


def test_sft_multirun_with_an_invalid_job_starts_none(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    assert main(["sft", "-m", "sft.max_steps=2,-1", f"hydra.sweep.dir={sweep}", *TINY]) == 2
    err = capsys.readouterr().err
    assert "job 1 (sft.max_steps=-1): sft.max_steps" in err and "no job was started" in err
    assert not sweep.exists()
