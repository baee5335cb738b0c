"""GRPO step time and generated tokens/s: in-process vLLM vs ``rollout=server`` (K=0) vs async ``max_staleness=1``.

    python scripts/bench_servers.py [--model tiny|smollm2-135m|FOLDER] [--steps 6] [--warmup 1] [--rounds 2]
        [--prompts 4] [--group 8] [--max-new-tokens 64] [--trainer-cpus 0] [--server-cpus 1]
        [--modes inproc,inproc-all,server,async] [--out runs/bench_servers]

What runs: ``rlvr grpo`` as a subprocess per (mode, round), modes interleaved within each round so a drifting
machine load does not favour one. Every run is the same GRPO configuration (``bench_spec``: TRL-default loss,
fp32, arith, no eval or checkpoints); only where generation happens differs:

- ``inproc``: vLLM inside the trainer process, trainer and engine on ``--trainer-cpus`` (1 core by default).
- ``inproc-all``: the same on trainer + server CPUs together: the fair comparison by total hardware.
- ``server``: the trainer on ``--trainer-cpus``, rollouts from one vLLM server this script starts on
  ``--server-cpus`` (attached with ``server.urls``, so each run's start-up does not include a server launch),
  ``server.max_staleness=0``: synchronous, the server idles during the update.
- ``async``: the same server, ``server.max_staleness=1 algo.tis=true``: step j+1 is sampled while step j updates.

Pinning is by CPU affinity (the script's own, inherited by what it starts, as ``taskset`` does), so on a machine
with few cores the trainer and the server do not share a core. Figures: per step after ``--warmup`` steps, the
step time (``time/step``) and generated tokens/s (completions x mean completion length x sampling rounds, over
the step time); per mode the median over every timed step of every round, and the spread of the per-round
medians. Speed claims need a machine where trainer and server have their own devices (GPUs); on a 2-core CPU the
table says what overlapping buys when each side has one core. Writes ``bench_servers.json``, ``.md`` and ``.png``
under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from bench_spec import (MODEL_NAMES, RunSpec, env_info, load_average, progress_bar, read_metrics,
                        resolve_model, run_one)

MODES = {  # name -> (rollout engine, cpus key, extra `rlvr grpo` overrides without the server URL)
    "inproc": ("vllm", "trainer", ()),
    "inproc-all": ("vllm", "all", ()),
    "server": ("server", "trainer", ("server.max_staleness=0",)),
    "async": ("server", "trainer", ("server.max_staleness=1", "algo.tis=true")),
}
WHERE = {
    "inproc": "trainer + in-process vLLM on the trainer CPUs",
    "inproc-all": "trainer + in-process vLLM on all CPUs",
    "server": "trainer on its CPUs, vLLM server on its own, K=0",
    "async": "trainer on its CPUs, vLLM server on its own, K=1 + TIS",
}


@contextlib.contextmanager
def pinned(cpus: Sequence[int]) -> Iterator[None]:
    """Run the block (and every process it starts) on ``cpus`` only; the previous affinity afterwards."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def step_figures(rows: list[dict], warmup: int, prompts: int, group: int) -> list[dict[str, float]]:
    """Per timed step after the first ``warmup``: step seconds, generated tokens/s and the phase times."""
    steps = [r for r in rows if "time/step" in r][warmup:]
    out = []
    for r in steps:
        generated = r.get("batch/rounds", 1) * prompts * group * r["completion/length_mean"]
        out.append({"step": r["step"], "step_s": r["time/step"], "gen_tokens_per_s": generated / r["time/step"],
                    **{k: r.get(f"time/{k}", 0.0) for k in ("rollout", "update", "sync", "rollout_wait")},
                    "staleness_max": r.get("rollout/staleness_max", 0.0)})
    return out


def summarize(runs: list[dict], modes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per mode: medians over all timed steps of all rounds, the per-round medians' range, ratios vs ``inproc``."""
    table: dict[str, dict[str, Any]] = {}
    for mode in modes:
        mine = [r for r in runs if r["mode"] == mode and not r.get("error")]
        steps = [s for r in mine for s in r["steps"]]
        if not steps:
            errors = [r.get("error") for r in runs if r["mode"] == mode]
            table[mode] = {"error": errors[0] if errors else "not run"}
            continue
        per_round = [statistics.median(s["step_s"] for s in r["steps"]) for r in mine if r["steps"]]
        table[mode] = {
            "rounds": len(mine), "timed_steps": len(steps),
            "step_s": statistics.median(s["step_s"] for s in steps),
            "step_s_round_range": [min(per_round), max(per_round)],
            "gen_tokens_per_s": statistics.median(s["gen_tokens_per_s"] for s in steps),
            **{f"{k}_s": statistics.median(s[k] for s in steps) for k in ("rollout", "update", "sync", "rollout_wait")},
            "staleness_max": max(s["staleness_max"] for s in steps),
        }
    base = table.get("inproc", {}).get("step_s")
    for row in table.values():
        if base and "step_s" in row:
            row["speedup_vs_inproc"] = base / row["step_s"]
    return table


def markdown(result: dict[str, Any]) -> str:
    a = result["args"]
    lines = [f"# GRPO step time by where rollouts run ({Path(a['model']).name})", "",
             f"B={a['prompts']} x G={a['group']}, {a['max_new_tokens']} new tokens, {a['steps']} steps "
             f"(first {a['warmup']} dropped) x {a['rounds']} rounds; trainer CPUs {a['trainer_cpus']}, server CPUs "
             f"{a['server_cpus']}; server launch {result.get('server_launch_s', 0):.0f} s (not in any step).", "",
             "| mode | where | s/step (median) | per-round medians | generated tok/s | rollout s | update s | "
             "sync s | wait s | max staleness | speed-up vs inproc |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for mode, row in result["table"].items():
        if "error" in row:
            lines.append(f"| {mode} | {WHERE[mode]} | failed: {row['error']} | | | | | | | | |")
            continue
        lo, hi = row["step_s_round_range"]
        lines.append(f"| {mode} | {WHERE[mode]} | {row['step_s']:.2f} | {lo:.2f}-{hi:.2f} | "
                     f"{row['gen_tokens_per_s']:.0f} | {row['rollout_s']:.2f} | {row['update_s']:.2f} | "
                     f"{row['sync_s']:.2f} | {row['rollout_wait_s']:.2f} | {row['staleness_max']:.0f} | "
                     f"{row.get('speedup_vs_inproc', float('nan')):.2f}x |")
    lines += ["", "Under async the rollout and reward phases overlap the update, so the phases do not add up to the "
              "step; `wait` is the trainer blocked on the queue. Machine: "
              f"{result['env'].get('cpus')} CPUs, load average {result.get('loadavg')}."]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(m, r) for m, r in result["table"].items() if "step_s" in r]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = [m for m, _ in rows]
    medians = [r["step_s"] for _, r in rows]
    low = [r["step_s"] - r["step_s_round_range"][0] for _, r in rows]
    high = [r["step_s_round_range"][1] - r["step_s"] for _, r in rows]
    ax.bar(names, medians, yerr=[low, high], capsize=4, color="#4c72b0")
    ax.set_ylabel("s / GRPO step (median)")
    ax.set_title(f"{Path(result['args']['model']).name}: where rollouts run", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_cpus(text: str, flag: str) -> list[int]:
    try:
        cpus = sorted({int(c) for c in text.split(",") if c.strip()})
    except ValueError:
        raise SystemExit(f"{flag} {text!r}: give CPU numbers separated by commas, e.g. 0 or 0,1") from None
    if not cpus:
        raise SystemExit(f"{flag} is empty: give at least one CPU")
    return cpus


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny", help=f"a model folder or one of {', '.join(MODEL_NAMES)}")
    p.add_argument("--steps", type=int, default=6, help="GRPO steps per run (more: tighter medians, longer run)")
    p.add_argument("--warmup", type=int, default=1, help="first steps of each run left out (compile, cache warm-up)")
    p.add_argument("--rounds", type=int, default=2, help="repeats of every mode, interleaved")
    p.add_argument("--prompts", type=int, default=4, help="B, prompts per step")
    p.add_argument("--group", type=int, default=8, help="G, completions per prompt")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--max-model-len", type=int, default=512, help="the server's KV-cache cap (prompt + completion)")
    p.add_argument("--trainer-cpus", default="0", help="CPUs of the trainer (and of the in-process engine)")
    p.add_argument("--server-cpus", default="1", help="CPUs of the server (inproc-all uses them for the trainer)")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma list of {', '.join(MODES)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-timeout", type=float, default=3600, help="seconds one run may take before it is killed")
    p.add_argument("--out", default="runs/bench_servers")
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    problems = [f"--modes: unknown {m!r} (use {', '.join(MODES)})" for m in args.modes if m not in MODES]
    args.trainer_cpus = parse_cpus(args.trainer_cpus, "--trainer-cpus")
    args.server_cpus = parse_cpus(args.server_cpus, "--server-cpus")
    allowed = os.sched_getaffinity(0)
    if set(args.trainer_cpus) & set(args.server_cpus):
        problems.append("--trainer-cpus and --server-cpus overlap: the point is that each side has its own")
    if not set(args.trainer_cpus + args.server_cpus) <= allowed:
        problems.append(f"CPUs {sorted(set(args.trainer_cpus + args.server_cpus) - allowed)} are not available to "
                        f"this process (it may use {sorted(allowed)})")
    if args.warmup >= args.steps:
        problems.append(f"--warmup {args.warmup} >= --steps {args.steps}: no step would be timed")
    if problems:
        raise SystemExit("bench_servers: " + "; ".join(problems))
    return args


def start_server(model: str, args: argparse.Namespace, out: Path) -> tuple[list, float]:
    from rlvr.rollout.server import launch_servers

    start = time.perf_counter()
    with pinned(args.server_cpus):
        servers = launch_servers(model, 1, log_dir=out / "server", seed=args.seed, max_model_len=args.max_model_len)
    return servers, time.perf_counter() - start


def run_mode(mode: str, k: int, spec: RunSpec, args: argparse.Namespace, url: str | None, out: Path) -> dict:
    engine, cpus_key, extra = MODES[mode]
    cpus = args.trainer_cpus if cpus_key == "trainer" else args.trainer_cpus + args.server_cpus
    extra = tuple(extra) + ((f"server.urls=[{url}]",) if engine == "server" else ())
    tag = f"{mode}_round{k}"
    run_spec = replace(spec, engine=engine, threads=len(cpus), ours_extra=extra, out_dir=str(out / "runs" / tag))
    with pinned(cpus):
        row = run_one(run_spec, out / "logs", args.run_timeout, tag)
    steps = step_figures(read_metrics(Path(run_spec.out_dir) / "metrics.jsonl"), args.warmup, spec.prompts, spec.group)
    return {"mode": mode, "round": k, "cpus": cpus, "steps": steps, "log": row["log"],
            **({"error": row["error"]} if row.get("error") else {})}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from rich.console import Console

    from rlvr.rollout.server import shutdown

    args = parse_args(argv)
    console, out = Console(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = resolve_model(args.model)
    spec = RunSpec(system="ours", engine="vllm", model=model, out_dir="", steps=args.steps, prompts=args.prompts,
                   group=args.group, max_new_tokens=args.max_new_tokens, seed=args.seed, reward_workers=1,
                   train_prompts=args.steps * args.prompts)
    servers, launch_s = [], 0.0
    runs: list[dict] = []
    try:
        if any(MODES[m][0] == "server" for m in args.modes):
            console.print(f"starting a vLLM server of {model} on CPUs {args.server_cpus} ...")
            servers, launch_s = start_server(model, args, out)
        url = servers[0].url if servers else None
        with progress_bar() as progress:
            bar = progress.add_task("runs", total=len(args.modes) * args.rounds)
            for k in range(args.rounds):
                for mode in args.modes:
                    progress.update(bar, description=f"round {k + 1}/{args.rounds}: {mode}")
                    runs.append(run_mode(mode, k, spec, args, url, out))
                    if runs[-1].get("error"):
                        console.print(f"[red]{mode} round {k}: {runs[-1]['error']}[/red]")
                    progress.advance(bar)
    finally:
        shutdown(servers)
    result = {"args": {**vars(args), "model": model}, "env": env_info(), "loadavg": load_average(),
              "server_launch_s": launch_s, "server_url": servers[0].url if servers else None, "runs": runs, "table": summarize(runs, args.modes)}
    (out / "bench_servers.json").write_text(json.dumps(result, indent=2))
    (out / "bench_servers.md").write_text(markdown(result))
    plot(result, out / "bench_servers.png")
    console.print(markdown(result))
    console.print(f"written: {out}/bench_servers.json, .md, .png")
    return result


if __name__ == "__main__":
    failed = [m for m, r in main()["table"].items() if "error" in r]
    sys.exit(1 if failed else 0)
