"""The report side of ``scripts/bench_grpo_vs_trl.py``: statistics over step times, the markdown tables and the
plots of ``speed.json`` / ``accuracy.json`` results. Pure functions of result dicts (no model, no TRL), so the unit
tests exercise them directly.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

TARGET_RATIO = 0.5  # the bar: ours <= 0.5x TRL's step time
SYSTEMS = ("ours", "trl")


# =============================================================================================== statistics
def median(values: Iterable[float]) -> float:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else math.nan


def measured(step_times: Sequence[float], warmup: int) -> list[float]:
    """Step times after the first ``warmup`` steps (all of them if the run is shorter than that)."""
    return list(step_times[warmup:]) if len(step_times) > warmup else list(step_times)


def summarize_speed(runs: Sequence[dict], warmup: int) -> dict[str, Any]:
    """Per system: each run's median step time, their median over rounds; ratio ours/TRL and paired ratios.

    ``runs``: rows with ``system``, ``round``, ``step_times`` (seconds per step, in step order) and optionally
    ``error`` and ``phases`` ({phase: [seconds per step]}).
    """
    out: dict[str, Any] = {}
    per_round: dict[str, dict[int, float]] = {s: {} for s in SYSTEMS}
    for system in SYSTEMS:
        ok = [r for r in runs if r["system"] == system and not r.get("error") and r.get("step_times")]
        run_medians = [median(measured(r["step_times"], warmup)) for r in ok]
        for r, m in zip(ok, run_medians):
            per_round[system][r["round"]] = m
        pooled = [t for r in ok for t in measured(r["step_times"], warmup)]
        phases: dict[str, float] = {}
        for r in ok:
            for phase, values in (r.get("phases") or {}).items():
                phases.setdefault(phase, [])
                phases[phase] += measured(values, warmup)  # type: ignore[operator]
        out[system] = {
            "runs_ok": len(ok),
            "runs_failed": sum(1 for r in runs if r["system"] == system and r.get("error")),
            "run_medians": run_medians,
            "median": median(run_medians),
            "pooled_median": median(pooled),
            "measured_steps": len(pooled),
            "phase_medians": {p: median(v) for p, v in phases.items()},  # type: ignore[arg-type]
        }
        for key in ("rollout_tokens_per_s", "update_gflops", "update_time", "step_tokens"):
            out[system][key] = median(median(measured(r.get(key) or [], warmup)) for r in ok)
    paired = [per_round["ours"][k] / per_round["trl"][k] for k in sorted(per_round["ours"])
              if k in per_round["trl"] and per_round["trl"][k] > 0]
    ours_m, trl_m = out["ours"]["median"], out["trl"]["median"]
    ratio = ours_m / trl_m if trl_m and not math.isnan(trl_m) and not math.isnan(ours_m) else math.nan
    out["ratio"] = ratio
    out["paired_ratios"] = paired
    out["paired_ratio_median"] = median(paired)
    out["target"] = TARGET_RATIO
    out["meets_target"] = None if math.isnan(ratio) else bool(ratio <= TARGET_RATIO)
    return out


# ----------------------------------------------------------------------------------------------- throughput
FLOPS_FORMULA = ("6 x trainable parameters x (prompt + completion tokens of the step's B*G sequences) / update "
                 "seconds: 2 FLOPs per parameter per token forward, 4 backward (the dense matmuls, LM head "
                 "included); ignores attention's score/value FLOPs (6-12 x layers x d_model x context per token), "
                 "padding and recompute, and counts each group's shared prompt G times")


def update_flops(params: float, tokens: float) -> float:
    """Forward + backward FLOPs of ``tokens`` tokens through a dense model of ``params`` parameters: 6 N T."""
    return 6.0 * params * tokens


def throughput_series(completion_tokens: Sequence[float], prompt_tokens: Sequence[float] | None,
                      rollout_seconds: Sequence[float], update_seconds: Sequence[float] | None,
                      params: float | None) -> dict[str, list[float]]:
    """Per step: generated tokens/s of the rollout phase and the update phase's achieved GFLOP/s
    (``update_flops(params, prompt + completion tokens) / update seconds / 1e9``); NaN where an input is missing."""
    nan = math.nan

    def at(xs: Sequence[float] | None, i: int) -> float:
        v = xs[i] if xs is not None and i < len(xs) else None
        return nan if v is None else float(v)

    rollout, gflops = [], []
    for i in range(len(completion_tokens)):
        c, r = at(completion_tokens, i), at(rollout_seconds, i)
        rollout.append(c / r if r > 0 else nan)
        u, p = at(update_seconds, i), at(prompt_tokens, i)
        ok = params is not None and u > 0 and not math.isnan(p)
        gflops.append(update_flops(params, p + c) / u / 1e9 if ok else nan)  # type: ignore[arg-type]
    return {"rollout_tokens_per_s": rollout, "update_gflops": gflops}


def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return "—" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def speed_markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        "# rlvr grpo vs TRL GRPOTrainer: step time",
        "",
        f"model `{s['model']}`, B={s['prompts']} prompts x G={s['group']}, max_new_tokens={s['max_new_tokens']}, "
        f"fp32, CPU, {s['threads']} thread(s), {s['rounds']} alternating round(s) of {s['steps']} steps, "
        f"first {s['warmup']} dropped; seconds per step (median over rounds of each run's median).",
        "",
        "| engine | ours s/step | TRL s/step | ours/TRL | paired ratios (per round) | target ≤ 0.5 |",
        "|---|---:|---:|---:|---|---|",
    ]
    notes = []
    for engine, e in result["engines"].items():
        sm = e["summary"]
        paired = ", ".join(f"{r:.2f}" for r in sm["paired_ratios"]) or "—"
        lines.append(f"| {engine} | {fmt(sm['ours']['median'])} | {fmt(sm['trl']['median'])} | {fmt(sm['ratio'], 2)} "
                     f"| {paired} | {fmt(sm['meets_target'])} |")
        for r in e["runs"]:
            if r.get("error"):
                notes.append(f"- {engine} / {r['system']} round {r['round']}: **failed**: {r['error']}")
            elif r.get("warning"):
                notes.append(f"- {engine} / {r['system']} round {r['round']}: counted, but {r['warning']}")
    lines += ["", "Phase medians (s/step; TRL's rollout excludes its weight sync; other = step - listed phases: "
              "advantages, log-probs, forward/backward, optimizer, metrics). Completion length = mean tokens per "
              "completion (rollout time scales with it):", "",
              "| engine | system | rollout | reward | sync | other | step | completion length |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for engine, e in result["engines"].items():
        for system in SYSTEMS:
            ph = e["summary"][system]["phase_medians"]
            lengths = [x for r in e["runs"] if r["system"] == system and not r.get("error")
                       for x in (r.get("completion_length") or [])]
            lines.append(f"| {engine} | {system} | {fmt(ph.get('rollout'))} | {fmt(ph.get('reward'))} | "
                         f"{fmt(ph.get('sync'))} | {fmt(ph.get('other'))} | {fmt(e['summary'][system]['median'])} | "
                         f"{fmt(median(lengths), 1)} |")
    lines += throughput_markdown(result)
    for engine, e in result["engines"].items():
        trl_runs = [r for r in e["runs"] if r["system"] == "trl" and not r.get("error")]
        if not trl_runs:
            continue
        r = trl_runs[0]
        facts = [f"prompt ids equal to ours: {fmt(r.get('prompt_ids_match'))}"]
        if engine == "vllm":
            facts += [f"TRL vLLM patch: {r.get('vllm_patch')}", f"TRL engine: {r.get('vllm_engine')}",
                      "max |TRL vLLM logprob - policy logprob| after a sync: "
                      f"{fmt(r.get('sampler_logprob_max_abs_diff'), 7)}"]
        lines += ["", f"TRL ({engine}): " + "; ".join(facts)]
    loads = [x for e in result["engines"].values() for r in e["runs"] for x in (r.get("loadavg_1min") or [])
             if x is not None]
    if loads:
        lines += ["", f"1-minute load average around the runs: {min(loads):.1f}-{max(loads):.1f} on "
                      f"{result.get('env', {}).get('cpus')} CPUs (each run uses {s['threads']} thread(s) plus "
                      "reward workers; much higher = other jobs were competing and the times are inflated)."]
    if notes:
        lines += ["", "Failures:", "", *notes]
    return "\n".join(lines) + "\n"


def peak_gflops(result: dict) -> float:
    """The machine's fp32 matmul GFLOP/s for this result: median of its measurements (``result["peak"]``)."""
    return median(m.get("gflops") for m in (result.get("peak") or {}).get("measurements") or [])


def throughput_markdown(result: dict) -> list[str]:
    """The rollout tokens/s and update FLOP/s table (median over rounds of each run's median, warm-up dropped)."""
    s, peak = result["settings"], peak_gflops(result)
    params = s.get("trainable_params")
    lines = ["", f"Throughput: rollout = generated (completion) tokens / rollout seconds; update = forward/backward, "
                 f"clip, AdamW (ours `time/update`; TRL from `_prepare_inputs` returning to `on_step_end`). Update "
                 f"FLOP/s = {FLOPS_FORMULA}. Trainable parameters: {fmt(params)}.", "",
             "| engine | system | rollout tok/s | update s | tokens/step (prompt+completion) | update GFLOP/s | "
             "% of matmul peak |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for engine, e in result["engines"].items():
        for system in SYSTEMS:
            sm = e["summary"][system]
            g = sm.get("update_gflops", math.nan)
            pct = 100 * g / peak if peak and not math.isnan(peak) and g is not None and not math.isnan(g) else math.nan
            lines.append(f"| {engine} | {system} | {fmt(sm.get('rollout_tokens_per_s'), 1)} | "
                         f"{fmt(sm.get('update_time'))} | {fmt(sm.get('step_tokens'), 0)} | {fmt(g, 2)} | "
                         f"{fmt(pct, 1)} |")
    pk = result.get("peak") or {}
    ms = pk.get("measurements") or []
    if ms:
        lines += ["", f"Matmul peak: fp32 torch.matmul {pk.get('size')}x{pk.get('size')} at {s['threads']} "
                      f"thread(s), median of {ms[0].get('repeats')} calls, measured {len(ms)} time(s) in this run "
                      f"({', '.join(str(m.get('when')) + ' ' + fmt(m.get('gflops'), 1) for m in ms)} GFLOP/s): "
                      f"**{fmt(peak, 1)} GFLOP/s**."]
    elif pk.get("error"):
        lines += ["", f"Matmul peak: not measured ({pk['error']})."]
    return lines


def accuracy_markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        "# rlvr grpo vs TRL GRPOTrainer: held-out accuracy",
        "",
        f"start `{s['model']}`, {s['steps']} steps, B={s['prompts']} x G={s['group']}, lr ours {s['lr']} / TRL "
        f"{s['trl_lr']}, greedy eval on {s['eval_problems']} problems per split (math verifier).",
        "",
    ]
    for engine, e in result["engines"].items():
        splits = [row["split"] for row in e["eval"].get("start", [])]
        lines += [f"## engine: {engine}", "", "| model | " + " | ".join(splits) + " |",
                  "|---|" + "---:|" * len(splits)]
        for name in ("start", "ours", "trl"):
            rows = {row["split"]: row for row in e["eval"].get(name, [])}
            cells = [f"{100 * rows[sp]['accuracy']:.1f}%" if sp in rows else "—" for sp in splits]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "| system | s/step (median, warm-up dropped) | zero-std groups (mean over steps) | "
                  "median reward, first → last 10 steps |",
                  "|---|---:|---:|---|"]
        for name in SYSTEMS:
            tr = e["train"].get(name, {})
            rew = tr.get("reward") or []
            k = min(10, len(rew))
            trend = f"{fmt(median(rew[:k]))} → {fmt(median(rew[-k:]))}" if rew else "—"
            lines.append(f"| {name} | {fmt(median(measured(tr.get('step_times') or [], s.get('warmup', 1))))} | "
                         f"{fmt(_mean(tr.get('zero_std_frac') or []))} | {trend} |")
        for name in SYSTEMS:
            if e["train"].get(name, {}).get("error"):
                lines.append(f"\n**{name} failed**: {e['train'][name]['error']}")
        lines.append("")
    return "\n".join(lines) + "\n"


def _mean(values: Sequence[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


# ----------------------------------------------------------------------------------------------- outputs
def write_outputs(out: Path, name: str, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    (out / f"{name}.md").write_text(speed_markdown(result) if name == "speed" else accuracy_markdown(result))


def plot_speed(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = list(result["engines"])
    fig, ax = plt.subplots(figsize=(max(5.5, 1.5 + 2.5 * len(engines)), 4.2))
    width = 0.38
    for i, system in enumerate(SYSTEMS):
        xs = [j + (i - 0.5) * width for j in range(len(engines))]
        ys = [result["engines"][e]["summary"][system]["median"] for e in engines]
        ys = [0 if y is None or math.isnan(y) else y for y in ys]
        bars = ax.bar(xs, ys, width, label="rlvr grpo" if system == "ours" else "TRL GRPOTrainer")
        for b, y in zip(bars, ys):
            ax.annotate(f"{y:.2f}s" if y else "failed", (b.get_x() + b.get_width() / 2, y), ha="center",
                        va="bottom", fontsize=8)
    for j, e in enumerate(engines):
        r = result["engines"][e]["summary"]["ratio"]
        ax.annotate(f"ours/TRL {fmt(r, 2)}", (j, 0), xytext=(0, -28), textcoords="offset points", ha="center",
                    fontsize=8)
    ax.set_xticks(range(len(engines)), [f"rollout={e}" for e in engines])
    ax.set_ylabel("median seconds per step")
    s = result["settings"]
    ax.set_title(f"GRPO step time (median of {s['rounds']} alternating rounds)\nB={s['prompts']} x G={s['group']}, "
                 f"{s['max_new_tokens']} new tokens, fp32 CPU, {s['threads']} thread(s)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_accuracy(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = list(result["engines"])
    fig, axes = plt.subplots(len(engines), 2, figsize=(11, 3.6 * len(engines)), squeeze=False)
    for row, engine in enumerate(engines):
        e = result["engines"][engine]
        ax = axes[row][0]
        splits = [r["split"] for r in e["eval"].get("start", [])]
        names = [n for n in ("start", "ours", "trl") if n in e["eval"]]
        width = 0.8 / max(len(names), 1)
        for i, name in enumerate(names):
            acc = {r["split"]: r["accuracy"] for r in e["eval"][name]}
            xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(splits))]
            label = {"start": "start (SFT)", "ours": "rlvr grpo", "trl": "TRL GRPOTrainer"}[name]
            ax.bar(xs, [100 * acc.get(sp, 0.0) for sp in splits], width, label=label)
        ax.set_xticks(range(len(splits)), splits)
        ax.set_ylabel("greedy accuracy (%)")
        ax.set_title(f"held-out accuracy per operation count (rollout={engine})", fontsize=9)
        ax.legend(fontsize=8)
        ax = axes[row][1]
        for name in SYSTEMS:
            z = [math.nan if v is None else v for v in e["train"].get(name, {}).get("zero_std_frac") or []]
            label = "rlvr grpo" if name == "ours" else "TRL GRPOTrainer"
            line, = ax.plot(range(1, len(z) + 1), z, alpha=0.35 if len(z) > 20 else 1.0, label=label)
            if len(z) > 20:  # 10-step rolling mean over the noisy per-step values
                smooth = [_mean(z[max(0, i - 9):i + 1]) for i in range(len(z))]
                ax.plot(range(1, len(z) + 1), smooth, color=line.get_color(), label=f"{label} (10-step mean)")
        ax.set_xlabel("step")
        ax.set_ylabel("fraction of groups with zero reward std")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
