"""scripts/bench_servers.py end to end on the tiny model: in-process vLLM, one server at K=0 and async K=1, each a
real ``rlvr grpo`` run of 3 steps (the first dropped), the server pinned to its own CPU and stopped at the end.
Checks what the table is built from, not speed (a shared 2-core machine says nothing about speed).
Run with ``python -m pytest -q -m vllm tests/integration/test_bench_servers_run.py`` (~2 min on 2 cores)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                       reason="vllm is not installed (extra 'cpu' or 'vllm')"),
    pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs: one for the trainer, one for the server"),
]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_servers.py"


def test_the_benchmark_runs_every_mode_and_stops_its_server(tmp_path):
    from rlvr.rollout.server import Server, healthy

    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("bench_servers", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cpus = sorted(os.sched_getaffinity(0))
    result = bench.main(["--model", "tiny", "--steps", "3", "--warmup", "1", "--rounds", "1", "--prompts", "2",
                         "--group", "4", "--max-new-tokens", "16", "--modes", "inproc,server,async",
                         "--trainer-cpus", str(cpus[0]), "--server-cpus", str(cpus[1]), "--out", str(tmp_path)])
    table = result["table"]
    assert set(table) == {"inproc", "server", "async"}
    for mode, row in table.items():
        assert "error" not in row, (mode, row, [r["log"] for r in result["runs"]])
        assert row["timed_steps"] == 2 and row["step_s"] > 0 and row["gen_tokens_per_s"] > 0
    assert table["inproc"]["staleness_max"] == 0 and table["server"]["staleness_max"] == 0
    assert table["async"]["staleness_max"] == 1  # step 3 was sampled by the weights before step 2's update
    assert table["server"]["sync_s"] > 0 and table["inproc"]["speedup_vs_inproc"] == 1.0
    assert [r["cpus"] for r in result["runs"]] == [[cpus[0]]] * 3
    written = json.loads((tmp_path / "bench_servers.json").read_text())
    assert written["table"] == json.loads(json.dumps(table))
    assert "| async |" in (tmp_path / "bench_servers.md").read_text() and (tmp_path / "bench_servers.png").stat().st_size
    server_log = next((tmp_path / "server").glob("server0-*.log")).read_text()
    assert "POST /v1/completions" in server_log
    assert not healthy(Server(url=result["server_url"], log=tmp_path / "x"), timeout=2.0), "the server still runs"
