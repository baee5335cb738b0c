"""``rlvr verify``: scores a jsonl, prints accuracy and error rate, writes per-row results, exit 2 on bad input."""

from __future__ import annotations

import importlib
import json

import pytest

from rlvr.cli import COMMANDS
from rlvr.rewards.verify_cli import main


@pytest.fixture
def rows(tmp_path):
    path = tmp_path / "rows.jsonl"
    data = [
        {"completion": "\\boxed{4}", "answer": "4", "ok": True},
        {"completion": "the answer is 5", "answer": "4", "ok": False},
        {"completion": "<think>a</think>\\boxed{1/2}", "answer": "0.5", "ok": True},
        {"completion": "nothing", "answer": None, "ok": False},
    ]
    path.write_text("\n".join(json.dumps(d) for d in data) + "\n")
    return path


def test_registered_in_cli():
    # what `rlvr verify` resolves to (rlvr.cli imports COMMANDS[name][0] and calls its main) is this main
    assert importlib.import_module(COMMANDS["verify"][0]).main is main


def test_scores_and_writes_results(rows, tmp_path, capsys):
    out = tmp_path / "scored.jsonl"
    assert main([str(rows), "--label-field", "ok", "--output", str(out), "--workers", "0"]) == 0
    text = capsys.readouterr().out
    assert "accuracy: 0.6667 over 3 rows" in text
    assert "verifier math: mean 0.6667, error rate 0.0000" in text
    assert "agreement with 'ok': 3/3" in text
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["reward"] for r in results] == [1.0, 0.0, 1.0, None]
    assert results[2]["results"]["math"]["extracted"] == "1/2"


def test_several_verifiers_and_json_specs(rows, capsys):
    spec = json.dumps({"name": "format", "weight": 0.5})
    assert main([str(rows), "-v", "math", "-v", spec, "--workers", "1"]) == 0
    assert "verifier format: mean 0.2500" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["missing.jsonl"], "input file not found"),
    (["ROWS", "--answer-field", "gold"], "no field 'gold'"),
    (["ROWS", "-v", "maths"], "unknown verifier 'maths'"),
    (["ROWS", "-v", '{"name": "math", "bogus": 1}'], "unknown option"),
    (["ROWS", "-v", '{"name": '], "invalid JSON"),
    (["BADJSON"], "not valid JSON"),
    (["ROWS", "--timeout", "0"], "--timeout"),
])
def test_bad_input_exits_2_without_traceback(rows, tmp_path, capsys, args, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"completion": "x", "answer": "1"}\n{oops\n')
    args = [str(rows) if a == "ROWS" else str(bad) if a == "BADJSON" else a for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_usage_errors(capsys):
    assert main([]) == 2
    assert "the following arguments are required: input" in capsys.readouterr().err
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: rlvr verify" in out and "--label-field" in out and "--timeout" in out
