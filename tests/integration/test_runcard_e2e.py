"""Run cards from real ``rlvr sft`` runs: every item is recorded with real values, and ``rlvr diff-runs`` between two
runs that differ in one override names exactly that override plus the outputs that follow from it."""

from __future__ import annotations

import json

import pytest

from rlvr.cli import main
from rlvr.runs.diff_runs import diff
from rlvr.runs.fingerprints import model_hash

pytestmark = pytest.mark.slow

COMMON = ["model=tiny", "task=arith", "logger=none", "sft.max_steps=20", "sft.eval_num_problems=8",
          "sft.eval_max_new_tokens=32", "sft.save_steps=0", "sft.threads=1", "sft.max_train_samples=2000",
          "run_card.limitations=['20 steps: a smoke test, not a model']"]


def test_sft_cards_and_diff_runs(tmp_path, capsys):
    for name, lr in (("a", "3e-3"), ("b", "1e-3")):
        assert main(["sft", f"output_dir={tmp_path / name}", f"sft.learning_rate={lr}", *COMMON]) == 0
    a = json.loads((tmp_path / "a" / "final" / "provenance.json").read_text())
    b = json.loads((tmp_path / "b" / "provenance.json").read_text())
    assert a["model"]["final"]["sha256"] == model_hash(tmp_path / "a" / "final")["sha256"]
    assert a["model"]["base"]["id"] == "tiny" and len(a["model"]["base"]["sha256"]) == 64
    assert [(d["role"], d["split"], d["count"]) for d in a["datasets"]] == [
        ("train", "train", 2000), ("eval", "test_ops1", 8), ("eval", "test_ops2", 8), ("eval", "test_ops3", 8),
        ("eval", "test_ops4", 8)]
    assert a["verifiers"][0]["name"] == "math" and a["verifiers"][0]["distribution"] == "rlvr"
    assert [r["split"] for r in a["eval_table"]] == ["test_ops1", "test_ops2", "test_ops3", "test_ops4"]
    assert a["wall_seconds"] > 0 and a["seeds"]["seed"] == 0 and a["limitations"] == ["20 steps: a smoke test, not a model"]
    assert a["rlvr"]["version"] and a["hardware"]["cpu_count"] >= 1

    capsys.readouterr()
    assert main(["card", str(tmp_path / "a")]) == 0
    card = capsys.readouterr().out
    assert "| 1 | sft |" in card and "20 steps: a smoke test" in card and a["model"]["final"]["sha256"] in card

    groups = diff(a, b)
    assert [k for k, _, _ in groups["recipe"]] == ["config.sft.learning_rate"]
    assert groups["data"] == groups["verifiers"] == groups["models"] == []
    assert "model.final.sha256" in {k for k, _, _ in groups["outputs"]}
    assert main(["diff-runs", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "recipe (config): 1 difference" in out and "config.sft.learning_rate" in out
    assert "data fingerprints: same" in out and "input model hashes: same" in out
