"""Benchmark the sandboxes and the code verifier: throughput and correctness on HumanEval/MBPP.

    python scripts/bench_sandbox.py                  # everything (~1-2 min on 2 cores)
    python scripts/bench_sandbox.py --only throughput --runs 400 --rounds 3

Throughput: a trivial program, ``workers`` in parallel, with the default backend (forkserver, fork mode), its
exec mode, and — measured in the same run, interleaved round by round — a bare ``python -I -S`` spawn per run
with no isolation at all. Medians over rounds; timings on shared machines are noisy, compare the ratios.

Data: ``$RLVR_DATA_DIR`` or ``../shared/data`` relative to the repository root; the data sections are skipped
with a message when it is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rlvr.sandboxes import Job, open_sandbox
from rlvr.verifiers.code import CodeVerifier

REPO = Path(__file__).resolve().parents[1]
TRIVIAL = "print(sum(range(10)))\n"


def data_dir() -> Path | None:
    for c in (os.environ.get("RLVR_DATA_DIR"), REPO.parent / "shared" / "data"):
        if c and Path(c).is_dir():
            return Path(c)
    return None


def bare_spawn_rate(n: int, workers: int) -> float:
    """Runs/s of `python -I -S main.py` per run, no isolation and no limits: the floor to compare against."""
    python = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    with tempfile.TemporaryDirectory() as d:
        Path(d, "main.py").write_text(TRIVIAL)

        def one(_):
            subprocess.run([python, "-I", "-S", "main.py"], cwd=d, capture_output=True, check=True)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(n)))
        return n / (time.perf_counter() - t0)


def sandbox_rate(sb, n: int) -> float:
    t0 = time.perf_counter()
    results = sb.run_many([Job(TRIVIAL)] * n)
    dt = time.perf_counter() - t0
    bad = [r for r in results if r.status != "ok" or r.stdout != "45\n"]
    assert not bad, bad[:3]
    return n / dt


def throughput(args) -> dict:
    out: dict = {"workers": args.workers, "runs_per_round": args.runs, "rounds": args.rounds}
    rates: dict[str, list[float]] = {"forkserver_fork": [], "forkserver_exec": [], "bare_spawn": []}
    with open_sandbox("forkserver", workers=args.workers) as fork_sb, \
            open_sandbox("forkserver", workers=args.workers, mode="exec") as exec_sb:
        sandbox_rate(fork_sb, 20), sandbox_rate(exec_sb, 10)  # warm-up
        for _ in range(args.rounds):  # interleaved so that load from other users hits all three alike
            rates["forkserver_fork"].append(sandbox_rate(fork_sb, args.runs))
            rates["bare_spawn"].append(bare_spawn_rate(args.runs // 2, args.workers))
            rates["forkserver_exec"].append(sandbox_rate(exec_sb, args.runs // 2))
    for k, v in rates.items():
        out[k + "_runs_per_s"] = round(statistics.median(v), 1)
        out[k + "_all"] = [round(x, 1) for x in v]
    out["fork_vs_bare"] = round(out["forkserver_fork_runs_per_s"] / out["bare_spawn_runs_per_s"], 2)
    return out


def humaneval(args, ddir: Path) -> dict:
    rows = [json.loads(line) for line in (ddir / "code" / "humaneval.jsonl").open()]
    v = CodeVerifier(workers=args.workers)
    answers = [{"test": r["test"], "entry_point": r["entry_point"]} for r in rows]
    v.score_many(["```python\npass\n```"], [answers[0]])  # open the sandbox outside the timing
    t0 = time.perf_counter()
    canon = v.score_many([f"```python\n{r['prompt']}{r['canonical_solution']}```" for r in rows], answers)
    dt = time.perf_counter() - t0
    out = {"problems": len(rows), "canonical_passed": sum(r.score == 1.0 for r in canon),
           "canonical_failed_ids": [row["task_id"] for row, r in zip(rows, canon) if r.score != 1.0],
           "canonical_per_s": round(len(rows) / dt, 1)}
    mutants = {"return None": "    return None\n", "pass": "    pass\n", "os._exit(0)": "    import os\n    os._exit(0)\n"}
    for name, body in mutants.items():
        res = v.score_many([f"```python\n{r['prompt']}{body}```" for r in rows], answers)
        out[f"mutant[{name}]_wrongly_passed"] = [row["task_id"] for row, r in zip(rows, res) if r.score != 0.0]
        out[f"mutant[{name}]_errors"] = sum(r.error is not None for r in res)
    v.close()
    return out


def mbpp(args, ddir: Path) -> dict:
    rows = [json.loads(line) for line in (ddir / "code" / "mbpp.jsonl").open()]
    v = CodeVerifier(workers=args.workers, all_or_nothing=True)
    answers = [{"test_list": r["test_list"], "test_setup_code": r.get("test_setup_code", "")} for r in rows]
    t0 = time.perf_counter()
    res = v.score_many([f"```python\n{r['code']}\n```" for r in rows], answers)
    dt = time.perf_counter() - t0
    failed = [(row, r) for row, r in zip(rows, res) if r.score != 1.0]
    # Explain each failure: rerun the reference plus its tests as one plain program and keep the traceback.
    explain = []
    if failed:
        with open_sandbox(workers=args.workers, timeout_s=60) as sb:
            progs = [Job(f"{row.get('test_setup_code') or ''}\n{row['code']}\n" + "\n".join(row["test_list"]) + "\n")
                     for row, _ in failed]
            for (row, r), run in zip(failed, sb.run_many(progs)):
                last = (run.stderr.strip().splitlines() or [f"plain run: {run.status} after {run.wall_s:.1f} s"])[-1]
                line = next((ln for ln in reversed(run.stderr.splitlines()) if ln.strip().startswith("assert")), "")
                explain.append({"task_id": row["task_id"], "status": run.status, "error": last[:200],
                                "failing_test": line.strip()[:200], "score": r.score, "metrics": r.metrics})
    v.close()
    if failed:  # which failures are only about time: rescore them with generous limits
        lenient = CodeVerifier(workers=args.workers, all_or_nothing=True, per_test_timeout_s=60, timeout_s=120)
        again = lenient.score_many([f"```python\n{row['code']}\n```" for row, _ in failed],
                                   [{"test_list": row["test_list"], "test_setup_code": row.get("test_setup_code", "")}
                                    for row, _ in failed])
        for item, r in zip(explain, again):
            item["passes_with_60s_per_test"] = r.score == 1.0
        lenient.close()
    return {"problems": len(rows), "reference_passed": len(rows) - len(failed),
            "reference_pass_rate": round((len(rows) - len(failed)) / len(rows), 4),
            "per_s": round(len(rows) / dt, 1), "failures": explain}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--runs", type=int, default=300, help="trivial runs per round (bare spawn does half)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", choices=["throughput", "humaneval", "mbpp"], action="append")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    parts = args.only or ["throughput", "humaneval", "mbpp"]
    report: dict = {}
    if "throughput" in parts:
        report["throughput"] = throughput(args)
        print(json.dumps(report["throughput"], indent=1), flush=True)
    ddir = data_dir()
    for name, fn in (("humaneval", humaneval), ("mbpp", mbpp)):
        if name not in parts:
            continue
        if ddir is None or not (ddir / "code" / f"{name}.jsonl").exists():
            print(f"SKIP {name}: data not found (set RLVR_DATA_DIR or place it at ../shared/data beside the repo)")
            continue
        report[name] = fn(args, ddir)
        print(json.dumps(report[name], indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
