"""``rlvr plot <run>``: train-time vs test-time scaling plots from a run's budget sweeps (``<run>/eval``).

    rlvr plot runs/grpo                       # PNGs in runs/grpo/plots/, wandb charts when the run used wandb
    rlvr plot runs/grpo --metric maj@8 --queries 100000 --wandb off

Reads every ``eval/budget_sweep_*.json`` (written by ``rlvr eval``, one per checkpoint) and writes:

- ``accuracy_vs_budget.png``: accuracy vs thinking budget, one panel per split, one line per checkpoint. The x
  axis is log2; log(0) does not exist, so budget 0 (no thinking) is drawn one octave left of the smallest positive
  budget and ticked "0", and no cap (budget null) one octave right of the largest, ticked "∞"; a break mark "//"
  on the axis says those two are not on the log scale;
- ``accuracy_vs_step.png``: accuracy vs training step, one panel per split, one line per budget; the top axis
  reads the same positions in cumulative train tokens;
- ``accuracy_vs_compute.png``: the o1-style picture, mean accuracy over splits: (1) vs train tokens, a line per
  budget (train-time scaling); (2) vs tokens per answer, a line per checkpoint (test-time scaling); (3) vs total
  compute = train tokens + Q x tokens per answer, both families of lines, Q = ``--queries`` questions answered.
  Why a workload Q: counted for the eval set alone, test compute is ~0.1% of train compute on the tiny model,
  and a total-compute axis would show no test-time scaling at all; Q makes the trade-off explicit (Snell et al.
  2024, arXiv 2408.03314, likewise parameterise by the ratio of inference to training tokens).

When a wandb run is given (``rlvr eval`` passes its own) or the run's config used wandb (``--wandb auto``), the same
go to wandb: one ``wandb.plot.line_series`` chart per panel, the raw rows as a ``wandb.Table`` (re-plot anything in
the UI) and the PNGs as ``wandb.Image``. Matplotlib runs headless (Agg).

Tests: ``OMP_NUM_THREADS=1 python -m pytest tests/unit/test_plots.py -q`` (synthetic sweeps, offline wandb run).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Sequence

PLOTS = ("accuracy_vs_budget", "accuracy_vs_step", "accuracy_vs_compute")
DEFAULT_QUERIES = 10_000


# ---------------------------------------------------------------------------------------------- data
def load_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """Sweep rows, one per (model, task, split, budget); a later file replaces an earlier duplicate."""
    from rlvr.eval.budget_sweep import read_sweeps

    unique: dict[tuple, dict[str, Any]] = {}
    for row in read_sweeps(run_dir):
        unique[(row.get("model_path"), row.get("checkpoint"), row["task"], row["split"], row["budget"])] = row
    return list(unique.values())


def _value(row: dict[str, Any], metric: str) -> float:
    v = row.get(metric)
    return math.nan if v is None else 100.0 * float(v)


def _checkpoints(rows: Sequence[dict]) -> list[str]:
    """Checkpoint labels in training order (unknown steps last)."""
    first = {}
    for r in rows:
        first.setdefault(r["checkpoint"], (r.get("step") is None, r.get("step") or 0, r["checkpoint"]))
    return sorted(first, key=first.get)


def _budgets(rows: Sequence[dict]) -> list[int | None]:
    return sorted({r["budget"] for r in rows}, key=lambda b: math.inf if b is None else b)


def _panels(rows: Sequence[dict]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((r["task"], r["split"]) for r in rows))


def budget_axis(budgets: Sequence[int | None]) -> dict[int | None, float]:
    """x position of each budget on a log2 axis, with 0 and None (no cap) placed explicitly (module docstring)."""
    positive = sorted(b for b in budgets if b)
    lo, hi = (positive[0], positive[-1]) if positive else (1, 1)
    pos: dict[int | None, float] = {b: float(b) for b in positive}
    if 0 in budgets:
        pos[0] = lo / 2
    if None in budgets:
        pos[None] = hi * 2.0
    return pos


def budget_label(budget: int | None) -> str:
    return "∞" if budget is None else str(budget)


def mean_over_splits(rows: Sequence[dict], metric: str) -> dict[tuple[str, int | None], dict[str, float]]:
    """(checkpoint, budget) -> mean accuracy over splits, tokens per answer and train tokens."""
    cells: dict[tuple[str, int | None], list[dict]] = {}
    for r in rows:
        cells.setdefault((r["checkpoint"], r["budget"]), []).append(r)
    out = {}
    for key, rs in cells.items():
        accs = [v for v in (_value(r, metric) for r in rs) if not math.isnan(v)]
        out[key] = {"acc": sum(accs) / len(accs) if accs else math.nan,
                    "tokens_per_answer": sum(r["tokens_per_answer"] for r in rs) / len(rs),
                    "train_tokens": rs[0].get("train_tokens"), "step": rs[0].get("step")}
    return out


# ---------------------------------------------------------------------------------------------- figures
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: servers and CI have no display
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, title: str):
    plt = _pyplot()

    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.6 * rows + 0.6), squeeze=False, sharey=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=12)
    return fig, list(axes.flat[:n])


def _colors(n: int, cmap: str = "viridis") -> list:
    import matplotlib

    cm = matplotlib.colormaps[cmap]
    return [cm(0.15 + 0.7 * i / max(n - 1, 1)) for i in range(n)]


def _finish(fig, axes, path: Path, metric: str) -> Path:
    for ax in axes:
        ax.set_ylim(-3, 103)
        ax.grid(True, alpha=0.3, which="both")
    axes[0].set_ylabel(f"accuracy ({metric}, %)")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _token_axis(axis: Any) -> None:
    """Readable token counts (1.2M, 35k) on an x axis; within one decade, a log axis has no major ticks of its own,
    so plain evenly spaced ones are used instead of a pile of overlapping minor labels."""
    from matplotlib import ticker

    axis.set_major_formatter(ticker.EngFormatter(sep=""))
    axis.set_minor_formatter(ticker.NullFormatter())
    lo, hi = axis.get_view_interval()
    if lo > 0 and hi / lo < 10:
        axis.set_major_locator(ticker.MaxNLocator(5))
        axis.set_minor_locator(ticker.NullLocator())


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8, wrap=True)


def plot_accuracy_vs_budget(rows: Sequence[dict], path: Path, metric: str = "pass@1") -> Path:
    budgets, ckpts, panels = _budgets(rows), _checkpoints(rows), _panels(rows)
    x = budget_axis(budgets)
    fig, axes = _grid(len(panels), f"Test-time scaling: {metric} vs thinking budget")
    for ax, (task, split) in zip(axes, panels):
        for color, ckpt in zip(_colors(len(ckpts)), ckpts):
            pts = sorted((x[r["budget"]], _value(r, metric)) for r in rows
                         if r["checkpoint"] == ckpt and (r["task"], r["split"]) == (task, split))
            if pts:
                ax.plot(*zip(*pts), marker="o", color=color, label=ckpt)
        ax.set_xscale("log", base=2)
        ax.set_xticks([x[b] for b in budgets], [budget_label(b) for b in budgets])
        ax.minorticks_off()
        for special in (0, None):  # the two positions that are not on the log scale: a break mark beside them
            if special in x and len(x) > 1:
                beside = x[special] * (1.3 if special == 0 else 1 / 1.3)
                ax.annotate("//", (beside, 0), xycoords=("data", "axes fraction"),
                            ha="center", va="center", fontsize=9, annotation_clip=False)
        ax.set_title(f"{task}: {split}", fontsize=10)
        ax.set_xlabel("thinking budget (tokens, log₂; 0 = none, ∞ = no cap)", fontsize=8)
    return _finish(fig, axes, path, metric)


def plot_accuracy_vs_step(rows: Sequence[dict], path: Path, metric: str = "pass@1") -> Path:
    budgets, panels = _budgets(rows), _panels(rows)
    stepped = [r for r in rows if r.get("step") is not None]
    fig, axes = _grid(len(panels), f"Train-time scaling: {metric} vs training step, per thinking budget")
    tokens = sorted({(r["step"], r["train_tokens"]) for r in stepped if r.get("train_tokens") is not None})
    steps = [s for s, _ in tokens]
    to_tokens = None  # (step -> tokens, tokens -> step) for a top axis, when train tokens grow with the step
    if len(tokens) >= 2 and len(set(steps)) == len(steps) and all(b[1] > a[1] for a, b in zip(tokens, tokens[1:])):
        import numpy as np

        s_arr, t_arr = np.array(steps, float), np.array([t for _, t in tokens], float)
        to_tokens = (lambda s: np.interp(s, s_arr, t_arr), lambda t: np.interp(t, t_arr, s_arr))
    for ax, (task, split) in zip(axes, panels):
        mine = [r for r in stepped if (r["task"], r["split"]) == (task, split)]
        if not mine:
            _no_data(ax, "no training step known for these models:\nevaluate a run (rlvr eval run_dir=...)")
        for color, budget in zip(_colors(len(budgets), "plasma"), budgets):
            pts = sorted((r["step"], _value(r, metric)) for r in mine if r["budget"] == budget)
            if pts:
                ax.plot(*zip(*pts), marker="o", color=color, label=f"budget {budget_label(budget)}")
        ax.set_title(f"{task}: {split}", fontsize=10)
        ax.set_xlabel("training step", fontsize=8)
        if to_tokens is not None:
            from matplotlib import ticker

            top = ax.secondary_xaxis("top", functions=to_tokens)
            top.set_xlabel("cumulative train tokens", fontsize=8)
            top.tick_params(labelsize=7)
            top.xaxis.set_major_formatter(ticker.EngFormatter(sep=""))
            top.xaxis.set_major_locator(ticker.MaxNLocator(3))
    return _finish(fig, axes, path, metric)


def plot_accuracy_vs_compute(rows: Sequence[dict], path: Path, metric: str = "pass@1",
                             queries: int = DEFAULT_QUERIES) -> Path:
    plt = _pyplot()

    budgets, ckpts = _budgets(rows), _checkpoints(rows)
    cells = mean_over_splits(rows, metric)
    splits = ", ".join(dict.fromkeys(r["split"] for r in rows))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharey=True)
    fig.suptitle(f"Train-time vs test-time compute: {metric}, mean over splits ({splits})", fontsize=12)
    bcolors = dict(zip(budgets, _colors(len(budgets), "plasma")))
    ccolors = dict(zip(ckpts, _colors(len(ckpts))))
    known = {k: v for k, v in cells.items() if v["train_tokens"] is not None}
    # (1) train-time scaling: a line per budget across checkpoints
    for b in budgets:
        pts = sorted((v["train_tokens"], v["acc"]) for (c, bb), v in known.items() if bb == b)
        if pts:
            axes[0].plot(*zip(*pts), marker="o", color=bcolors[b], label=f"budget {budget_label(b)}")
    axes[0].set_xlabel("cumulative train tokens (log)")
    axes[0].set_title("train-time scaling (line = thinking budget)", fontsize=10)
    # (2) test-time scaling: a line per checkpoint, joined in budget order (a small budget can cost more tokens
    #     than a larger one when the forced answer rambles), budgets written beside the newest checkpoint's points
    order = {b: i for i, b in enumerate(budgets)}
    for c in ckpts:
        pts = [(v["tokens_per_answer"], v["acc"], b) for (cc, b), v in sorted(cells.items(), key=lambda kv: order[
            kv[0][1]]) if cc == c]
        axes[1].plot([x for x, _, _ in pts], [y for _, y, _ in pts], marker="s", color=ccolors[c], label=c)
        if c == ckpts[-1]:
            at: dict[tuple[float, float], list[str]] = {}  # budgets that landed on one point share a label
            for x, y, b in pts:
                at.setdefault((x, y), []).append(budget_label(b))
            for (x, y), names in at.items():
                axes[1].annotate("B=" + ",".join(names), (x, y), textcoords="offset points", xytext=(3, 5),
                                 fontsize=7)
    axes[1].set_xlabel("test tokens per answer (thinking + answer, log)")
    axes[1].set_title("test-time scaling (line = checkpoint)", fontsize=10)
    # (3) total compute: both families on one axis
    for c in ckpts:
        pts = [(v["train_tokens"] + queries * v["tokens_per_answer"], v["acc"])
               for (cc, _), v in sorted(known.items(), key=lambda kv: order[kv[0][1]]) if cc == c]
        if pts:
            axes[2].plot(*zip(*pts), marker="s", color=ccolors[c])
    for b in budgets:
        pts = sorted((v["train_tokens"] + queries * v["tokens_per_answer"], v["acc"])
                     for (_, bb), v in known.items() if bb == b)
        if len(pts) > 1:
            axes[2].plot(*zip(*pts), linestyle=":", color=bcolors[b])
    axes[2].set_xlabel(f"train tokens + {queries:,} queries × tokens/answer (log)")
    axes[2].set_title("total compute (solid: checkpoint, dotted: budget)", fontsize=10)
    if not known:
        for ax in (axes[0], axes[2]):
            _no_data(ax, "train tokens unknown for these models:\nevaluate a run (rlvr eval run_dir=...)")
    for ax in axes:
        if ax.lines:
            ax.set_xscale("log")
            _token_axis(ax.xaxis)
        ax.set_ylim(-3, 103)
        ax.grid(True, alpha=0.3, which="both")
        if ax is not axes[2] and ax.lines:  # panel 3 reuses the colours of panels 1 and 2
            ax.legend(fontsize=7, loc="best")
    axes[0].set_ylabel(f"accuracy ({metric}, %)")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- wandb
def _line_series(wandb: Any, lines: dict[str, list[tuple[float, float]]], title: str, xname: str):
    lines = {k: sorted(v) for k, v in lines.items() if v}
    if not lines:
        return None
    return wandb.plot.line_series(xs=[[x for x, _ in v] for v in lines.values()],
                                  ys=[[y for _, y in v] for v in lines.values()],
                                  keys=list(lines), title=title, xname=xname)


def log_to_wandb(run: Any, rows: Sequence[dict], paths: Sequence[Path], metric: str = "pass@1",
                 queries: int = DEFAULT_QUERIES) -> list[str]:
    """Charts (line series per panel), the raw rows as a table, and the PNGs; returns the keys logged.

    wandb's x axes are linear: budget 0 is plotted at 0 and no cap at twice the largest budget (the table keeps
    the true value, null)."""
    import wandb

    budgets = _budgets(rows)
    top = max([b for b in budgets if b] or [1])
    bx = {b: (2 * top if b is None else b) for b in budgets}
    logged: dict[str, Any] = {}
    for task, split in _panels(rows):
        mine = [r for r in rows if (r["task"], r["split"]) == (task, split)]
        by_ckpt = {c: [(bx[r["budget"]], _value(r, metric)) for r in mine if r["checkpoint"] == c]
                   for c in _checkpoints(mine)}
        logged[f"eval/{metric}_vs_budget/{split}"] = _line_series(
            wandb, by_ckpt, f"{task} {split}: {metric} (%) vs thinking budget", "thinking budget (tokens)")
        by_budget = {f"budget {budget_label(b)}": [(r["step"], _value(r, metric)) for r in mine
                                                   if r["budget"] == b and r.get("step") is not None]
                     for b in budgets}
        logged[f"eval/{metric}_vs_step/{split}"] = _line_series(
            wandb, by_budget, f"{task} {split}: {metric} (%) vs training step", "training step")
    cells = mean_over_splits(rows, metric)
    compute = {}
    for c in _checkpoints(rows):
        compute[c] = [(v["train_tokens"] + queries * v["tokens_per_answer"], v["acc"])
                      for (cc, _), v in cells.items() if cc == c and v["train_tokens"] is not None]
    logged[f"eval/{metric}_vs_compute"] = _line_series(
        wandb, compute, f"{metric} (%) vs train + {queries:,} queries x tokens per answer", "total compute (tokens)")
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    logged["eval/budget_sweep"] = wandb.Table(columns=columns, data=[[r.get(k) for k in columns] for r in rows])
    for p in paths:
        logged[f"plots/{p.stem}"] = wandb.Image(str(p), caption=p.stem.replace("_", " "))
    logged = {k: v for k, v in logged.items() if v is not None}
    run.log(logged)
    return list(logged)


def _wandb_tracker(run_dir: Path, mode: str):
    """A Tracker for the run's wandb (job_type 'eval'), or None: ``auto`` follows the run's config.yaml logger."""
    from omegaconf import OmegaConf

    from rlvr.config import LoggerConfig
    from rlvr.runs.tracking import Tracker

    if mode == "off":
        return None
    logger = OmegaConf.structured(LoggerConfig)
    cfg_path = run_dir / "config.yaml"
    if cfg_path.exists():
        saved = OmegaConf.load(cfg_path).get("logger")
        if saved is not None:
            logger = OmegaConf.merge(logger, saved)
    if mode == "auto" and logger.backend != "wandb":
        return None
    if mode != "auto":
        logger.backend, logger.mode = "wandb", mode
    return Tracker(run_dir, logger, None, job_type="eval", metrics_file=None)


# ---------------------------------------------------------------------------------------------- entry points
def make_plots(run_dir: str | Path, tracker: Any = None, metric: str = "pass@1", queries: int = DEFAULT_QUERIES,
               rows: Sequence[dict] | None = None) -> list[Path]:
    """Write the three PNGs into <run>/plots (and to ``tracker``'s wandb run, if it has one); returns the paths."""
    run_dir = Path(run_dir)
    rows = list(rows) if rows is not None else load_rows(run_dir)
    if not rows:
        raise FileNotFoundError(f"no budget sweeps in {run_dir / 'eval'}: run `rlvr eval` first")
    if metric not in rows[0]:
        have = sorted(k for k in rows[0] if k.startswith(("pass@", "maj@")))
        raise ValueError(f"metric {metric!r} is not in the sweep rows; available: {', '.join(have)}")
    out = run_dir / "plots"
    paths = [plot_accuracy_vs_budget(rows, out / f"{PLOTS[0]}.png", metric),
             plot_accuracy_vs_step(rows, out / f"{PLOTS[1]}.png", metric),
             plot_accuracy_vs_compute(rows, out / f"{PLOTS[2]}.png", metric, queries)]
    run = getattr(tracker, "wandb_run", None)
    if run is not None:
        log_to_wandb(run, rows, paths, metric, queries)
    return paths


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rlvr plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="run directory with eval/budget_sweep_*.json (from rlvr eval)")
    parser.add_argument("--metric", default="pass@1", help="pass@1 (default), pass@K or maj@K from the sweep")
    parser.add_argument("--queries", type=int, default=DEFAULT_QUERIES,
                        help="test workload Q for the total-compute axis: train tokens + Q x tokens per answer")
    parser.add_argument("--wandb", choices=("auto", "off", "offline", "online"), default="auto",
                        help="auto: log charts when the run's config.yaml used wandb (in its mode)")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir).expanduser()
    if not run_dir.is_dir():
        print(f"rlvr plot: {run_dir} is not a folder", file=sys.stderr)
        return 2
    tracker = None
    try:
        tracker = _wandb_tracker(run_dir, args.wandb)
        paths = make_plots(run_dir, tracker, args.metric, args.queries)
    except (FileNotFoundError, ValueError) as exc:
        print(f"rlvr plot: {exc}", file=sys.stderr)
        return 2
    finally:
        if tracker is not None:
            tracker.close()
    for p in paths:
        print(p)
    return 0
