"""The pipeline's final report, ``<run>/summary.json``: held-out accuracy after SFT and after GRPO, pass@1 per budget
for every evaluated model, the plots and the stages' status, all read back from the files the stages wrote (so it
is rebuilt the same after a resume)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rlvr.eval.budget_sweep import read_sweeps

SUMMARY = "summary.json"


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _heldout(path: Path) -> dict[str, dict[str, float]]:
    data = read_json(path) or {}
    return {r["split"]: {"accuracy": r["accuracy"], "n": r["n"]} for r in data.get("rows", [])}


def collect_summary(run: Path, stages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Everything the final report shows, from the files the stages wrote (so it also works after a resume)."""
    out: dict[str, Any] = {"run": str(run), "stages": stages}
    sft = _heldout(run / "sft" / "eval" / "sft_heldout.json")
    grpo_files = {}
    for path in (run / "grpo" / "eval").glob("grpo_step*.json"):
        try:
            grpo_files[int(path.stem.removeprefix("grpo_step"))] = path
        except ValueError:
            continue
    start = _heldout(grpo_files[0]) if 0 in grpo_files else {}
    last = max(grpo_files, default=None)
    final = _heldout(grpo_files[last]) if last else {}
    out["heldout_greedy"] = {"sft": sft, "grpo_start": start, "grpo_final": final, "grpo_final_step": last}
    # "after SFT" on the same problems as "after GRPO" when GRPO evaluated its start, else SFT's own eval
    before = start or sft
    table = {}
    for split in dict.fromkeys([*before, *final]):
        b, a = before.get(split, {}).get("accuracy"), final.get(split, {}).get("accuracy")
        table[split] = {"after_sft": b, "after_grpo": a, "delta": None if a is None or b is None else a - b}
    out["accuracy"] = table
    both = [v for v in table.values() if v["delta"] is not None]
    out["mean_accuracy"] = {
        "after_sft": sum(v["after_sft"] for v in both) / len(both) if both else None,
        "after_grpo": sum(v["after_grpo"] for v in both) / len(both) if both else None,
    }
    # budget -> pass@1 (mean over splits), one column per evaluated model, in step order
    rows = read_sweeps(run)
    by_model: dict[str, dict[str, list[float]]] = {}
    order: dict[str, tuple] = {}
    for r in rows:
        label = r["checkpoint"]
        order.setdefault(label, (label != "sft", r.get("step") if r.get("step") is not None else math.inf, label))
        if r.get("pass@1") is not None:
            by_model.setdefault(label, {}).setdefault(str(r["budget"]), []).append(r["pass@1"])
    out["pass@1_by_budget"] = {label: {b: sum(v) / len(v) for b, v in by_model.get(label, {}).items()}
                               for label in sorted(order, key=order.get)}
    out["plots"] = [str(p) for p in sorted((run / "plots").glob("*.png"))]
    return out


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def print_summary(summary: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    stages = Table(title="stages")
    for col in ("stage", "status", "seconds"):
        stages.add_column(col, justify="right" if col == "seconds" else "left")
    for stage, s in summary["stages"].items():
        seconds = s.get("seconds")
        stages.add_row(stage, s["status"], "" if seconds is None else f"{seconds:.0f}")
    console.print(stages)
    acc = summary["accuracy"]
    if acc:
        g = summary["heldout_greedy"]
        sizes = {split: row.get("n") for split, row in (g["grpo_final"] or g["grpo_start"] or g["sft"]).items()}
        table = Table(title="held-out greedy accuracy (%)")
        for col in ("split", "problems", "after SFT", "after GRPO", "change"):
            table.add_column(col, justify="right")
        for split, v in acc.items():
            delta = "" if v["delta"] is None else f"{100 * v['delta']:+.1f}"
            n = sizes.get(split)
            table.add_row(split, "" if n is None else str(n), _pct(v["after_sft"]), _pct(v["after_grpo"]), delta)
        m = summary["mean_accuracy"]
        if m["after_sft"] is not None:
            table.add_row("mean", "", _pct(m["after_sft"]), _pct(m["after_grpo"]),
                          f"{100 * (m['after_grpo'] - m['after_sft']):+.1f}")
        console.print(table)
    by_budget = summary["pass@1_by_budget"]
    if by_budget:
        budgets = list(dict.fromkeys(b for v in by_budget.values() for b in v))
        budgets.sort(key=lambda b: math.inf if b == "None" else int(b))
        table = Table(title="pass@1 (%) by thinking budget, mean over splits")
        table.add_column("budget", justify="right")
        for label in by_budget:
            table.add_column(label, justify="right")
        for b in budgets:
            table.add_row("none" if b == "None" else b, *[_pct(by_budget[label].get(b)) for label in by_budget])
        console.print(table)
    for p in summary["plots"]:
        console.print(f"plot: {p}")
    console.print(f"summary: {Path(summary['run']) / SUMMARY}")


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    tmp = run_dir / (SUMMARY + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(run_dir / SUMMARY)


