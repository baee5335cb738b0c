"""scripts/bench_servers.py without running anything: per-step figures, the per-mode summary and table, and the
command line's refusals. The benchmark itself runs in tests/integration/test_bench_servers.py (vllm)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_servers.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(SCRIPT.parent))  # its sibling bench_spec, as when run
    spec = importlib.util.spec_from_file_location("bench_servers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(step, seconds, length=10.0, rounds=1, **extra):
    return {"step": step, "time/step": seconds, "completion/length_mean": length, "batch/rounds": rounds,
            "time/rollout": 0.5, "time/update": 1.0, "time/sync": 0.1, **extra}


def test_step_figures_drop_warmup_and_count_every_sampling_round(bench):
    rows = [_row(1, 9.0), _row(2, 2.0), _row(3, 4.0, length=5.0, rounds=2, **{"rollout/staleness_max": 1.0}),
            {"step": 3, "eval/accuracy": 0.5}]  # a row without time/step is not a step
    steps = bench.step_figures(rows, warmup=1, prompts=2, group=4)
    assert [s["step"] for s in steps] == [2, 3]
    assert steps[0]["gen_tokens_per_s"] == pytest.approx(2 * 4 * 10.0 / 2.0)
    assert steps[1]["gen_tokens_per_s"] == pytest.approx(2 * 2 * 4 * 5.0 / 4.0)
    assert steps[0]["rollout_wait"] == 0.0 and steps[1]["staleness_max"] == 1.0


def test_summary_medians_ranges_ratios_and_failed_modes(bench):
    def run(mode, k, times):
        return {"mode": mode, "round": k, "steps": [{"step_s": t, "gen_tokens_per_s": 100 / t, "rollout": 1.0,
                                                     "update": 1.0, "sync": 0.0, "rollout_wait": 0.0,
                                                     "staleness_max": 0.0} for t in times]}
    runs = [run("inproc", 0, [4.0, 4.0]), run("inproc", 1, [6.0, 6.0]), run("async", 0, [2.0, 2.0]),
            run("async", 1, [3.0, 3.0]), {"mode": "server", "round": 0, "steps": [], "error": "exit code 1"}]
    table = bench.summarize(runs, ["inproc", "server", "async"])
    assert table["inproc"]["step_s"] == 5.0 and table["inproc"]["step_s_round_range"] == [4.0, 6.0]
    assert table["async"]["speedup_vs_inproc"] == pytest.approx(5.0 / 2.5)
    assert table["server"] == {"error": "exit code 1"}
    md = bench.markdown({"args": {"model": "/m/tiny", "prompts": 2, "group": 4, "max_new_tokens": 8, "steps": 3,
                                  "warmup": 1, "rounds": 2, "trainer_cpus": [0], "server_cpus": [1]},
                         "env": {"cpus": 2}, "loadavg": 1.0, "server_launch_s": 30.0, "table": table})
    assert "| inproc |" in md and "failed: exit code 1" in md and "2.00x" in md


@pytest.mark.parametrize("argv, message", [
    (["--modes", "inproc,warp"], "unknown 'warp'"),
    (["--trainer-cpus", "0", "--server-cpus", "0"], "overlap"),
    (["--trainer-cpus", "a"], "CPU numbers"),
    (["--steps", "2", "--warmup", "2"], "no step would be timed"),
    (["--server-cpus", "4096"], "not available"),
])
def test_bad_command_lines_are_refused_with_the_reason(bench, argv, message):
    with pytest.raises(SystemExit, match=message):
        bench.parse_args(argv)
