"""scripts/bench_math_verifier.py on a small slice: ours alone always, side by side when math-verify is installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_math_verifier.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_math_verifier", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spread_and_tally(bench):
    rows = [{"expected": i % 2 == 0, "kind": "k"} for i in range(10)]
    assert bench._spread(rows, None) is rows and len(bench._spread(rows, 3)) == 3
    assert bench._spread(rows, 100) == rows
    t = bench.tally(rows, [True] * 10)
    assert t == {"n": 10, "agree": 5, "rate": 0.5, "equivalent_judged_wrong": 0, "wrong_judged_right": 5,
                 "n_equivalent": 5}


def test_ours_only_on_a_slice(bench, data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RLVR_DATA_DIR", str(data_dir))
    out = tmp_path / "r.json"
    assert bench.main(["--limit", "20", "--repeats", "1", "--no-math-verify", "--no-progress", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "side-by-side skipped" in text and "| set | n | ours agree" in text
    result = json.loads(out.read_text())
    assert set(result["sets"]) == {"gsm8k_model_solutions", "qwen25math_cot100_labelled", "generated_forms"}
    for entry in result["sets"].values():
        assert entry["n"] == 20 and entry["ours"]["cases_per_s"] > 0 and "math_verify" not in entry
    gen = result["sets"]["generated_forms"]
    assert sum(g["ours"]["n"] for g in gen["by_kind"].values()) == 20
    assert set(gen["by_style"]) <= {"boxed", "answer_tag", "bold_answer", "final_answer_is", "minerva",
                                    "final_dollar", "final_display"}


def test_side_by_side_on_a_slice(bench, data_dir, tmp_path, capsys, monkeypatch):
    pytest.importorskip("math_verify", reason="math-verify not installed (pip install '.[bench-math]'); "
                        "the side-by-side part of the benchmark is skipped")
    monkeypatch.setenv("RLVR_DATA_DIR", str(data_dir))
    out = tmp_path / "r.json"
    assert bench.main(["--limit", "20", "--repeats", "1", "--no-progress", "--list-disagreements",
                       "--sets", "qwen,generated", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "speed ratio" in text and "disagreements between ours and math-verify" in text
    result = json.loads(out.read_text())
    for entry in result["sets"].values():
        assert entry["math_verify"]["n"] == 20 and entry["speed_ratio"] > 0
        for d in entry["disagreements"]:
            assert d["ours"] != d["math_verify"] and d["right"] in ("ours", "math-verify")
    assert "kinds_where_ours_loses" in result["sets"]["generated_forms"]


def test_disagreements_markdown_groups_by_set_and_kind(bench):
    result = {"seed": 0, "sets": {"generated_forms": {"disagreements": [
        {"id": "math500/1/2", "kind": "thousands_thin", "style": "boxed", "expected": True, "ours": True,
         "math_verify": False, "right": "ours", "reference": "2220", "answer": "2\\,220"},
        {"id": "math500/3/4", "kind": "near_hedge", "style": "minerva", "expected": False, "ours": False,
         "math_verify": True, "right": "ours", "reference": "a|b", "answer": "1 or 2"}]}, "gsm8k": {}}}
    md = bench.disagreements_markdown(result)
    assert "## generated_forms: 2" in md and "## gsm8k: 0" in md
    assert "### thousands_thin (1)" in md and "### near_hedge (1)" in md
    assert "`a\\|b`" in md  # a pipe in a cell cannot break the table
