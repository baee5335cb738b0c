"""``rlvr eval``: accuracy vs thinking budget per checkpoint x task split x budget (``rlvr.eval.budget_sweep``).

    rlvr eval model.name_or_path=runs/sft/final output_dir=runs/sft eval.budgets=[0,8,16,32,64] eval.n=8
    rlvr eval run_dir=runs/grpo eval.checkpoints=all          # every checkpoint: accuracy vs training step
    rlvr eval --help                                         # every knob, with what it trades off

Validates the config (every problem at once), finds the models (``run_dir`` + ``eval.checkpoints``, or
``model.name_or_path``), sweeps each one (``evaluate_checkpoints``, the loop the pipeline's eval stage runs too),
prints pass@1 per budget and split, redraws ``<out>/plots`` from every sweep in ``<out>/eval`` and writes an eval
run card. ``rlvr eval run_dir=...`` warns when the run trained with a budget statement this eval does not make.

Tests: ``OMP_NUM_THREADS=1 python -m pytest tests/unit/test_evaluate.py tests/unit/test_passk.py -q``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlvr.config.loading import Problem, default_output_dir, run_command
from rlvr.eval.budget_statement import statement_mismatch, statement_template, template_problem
from rlvr.eval.budget_sweep import evaluate_checkpoints
from rlvr.runs.layout import Checkpoint, describe_model, run_checkpoints


def validate_eval_settings(e: Any, section: str = "eval") -> list[Problem]:
    """Every problem of an EvalConfig section (``eval`` here, ``budget_eval`` inside ``rlvr grpo``)."""
    problems = []
    for key in ("n", "answer_tokens", "max_new_tokens", "num_problems", "batch_size"):
        if e[key] is None or e[key] <= 0:
            problems.append(Problem(f"{section}.{key}", f"must be > 0, got {e[key]!r}",
                                    f"set {section}.{key} to a positive number"))
    if not e.budgets:
        problems.append(Problem(f"{section}.budgets", "is empty",
                                f"give budgets, e.g. {section}.budgets=[0,8,16,32,64,null]"))
    if any(b is not None and b < 0 for b in e.budgets):
        problems.append(Problem(f"{section}.budgets", f"{list(e.budgets)} has a negative budget",
                                "use budgets >= 0 (0 = no thinking) or null (no cap)"))
    if not e.k_list or any(k < 1 or (e.n and k > e.n) for k in e.k_list):
        problems.append(Problem(f"{section}.k_list", f"{list(e.k_list)} needs 1 <= k <= {section}.n={e.n} (pass@k "
                                "and maj@k draw k of the n samples)", "raise n or drop the larger k"))
    if e.temperature is None or e.temperature < 0 or not 0 < e.top_p <= 1:
        problems.append(Problem(f"{section}.temperature/top_p", "need temperature >= 0 and 0 < top_p <= 1",
                                f"e.g. {section}.temperature=0.6 {section}.top_p=1.0"))
    if e.checkpoints not in ("final", "all", "newest"):
        problems.append(Problem(f"{section}.checkpoints", f"unknown value {e.checkpoints!r}",
                                "use final, all or newest"))
    if e.state_budget_in_prompt:
        if problem := template_problem(f"{section}.budget_prompt_template", e.budget_prompt_template):
            problems.append(problem)
    return problems


def validate(cfg: DictConfig) -> list[Problem]:
    problems = validate_eval_settings(cfg.eval, "eval")
    if cfg.run_dir is not None and not Path(cfg.run_dir).expanduser().is_dir():
        problems.append(Problem("run_dir", f"{cfg.run_dir!r} is not a folder",
                                "point run_dir at a run directory (with final/ or checkpoints/)"))
    if cfg.run_dir is not None and cfg.model.name_or_path is not None:
        problems.append(Problem("run_dir", "both run_dir and model.name_or_path are set",
                                "give one: run_dir evaluates that run's checkpoints"))
    return problems


def print_table(rows: list[dict[str, Any]], console: Any) -> None:
    """budget -> pass@1 per split, one table per checkpoint (narrow enough for an 80-column log)."""
    from rich.table import Table

    for label in dict.fromkeys(r["checkpoint"] for r in rows):
        mine = [r for r in rows if r["checkpoint"] == label]
        splits = list(dict.fromkeys(r["split"] for r in mine))
        errors = any(r["verifier_error_rate"] for r in mine)
        table = Table(title=f"{label}: pass@1 (%) by thinking budget, n={mine[0]['n']}/problem")
        table.add_column("budget", justify="right", no_wrap=True)
        for s in splits:
            table.add_column(s, justify="right", no_wrap=True)
        table.add_column("think", justify="right", no_wrap=True)  # mean thinking tokens
        table.add_column("trunc%", justify="right", no_wrap=True)
        if errors:
            table.add_column("err%", justify="right", no_wrap=True)
        for budget in dict.fromkeys(r["budget"] for r in mine):
            cells = {r["split"]: r for r in mine if r["budget"] == budget}
            at = list(cells.values())
            extra = [_pct(sum(r["verifier_error_rate"] for r in at) / len(at))] if errors else []
            table.add_row("none" if budget is None else str(budget),
                          *[_pct(cells[s]["pass@1"]) if s in cells else "" for s in splits],
                          f"{sum(r['mean_thinking_tokens'] for r in at) / len(at):.1f}",
                          _pct(sum(r["truncation_rate"] for r in at) / len(at)), *extra)
        console.print(table)


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _models(cfg: DictConfig, console: Any) -> list[Checkpoint] | None:
    """The checkpoints to evaluate (``run_dir`` + ``eval.checkpoints``, else the configured model); None: none."""
    if cfg.run_dir is None:
        default_output_dir(cfg, "eval")
        path = cfg.model.name_or_path
        return [describe_model(path, relative_to=cfg.output_dir) if path else Checkpoint(None, cfg.model.name)]
    run_dir = Path(cfg.run_dir).expanduser()
    cfg.output_dir = cfg.output_dir or str(run_dir)
    try:
        checkpoints = run_checkpoints(run_dir, cfg.eval.checkpoints)
    except FileNotFoundError as exc:
        console.print(f"[red]rlvr eval: {exc}[/red]")
        return None
    trained_on = OmegaConf.load(run_dir / "config.yaml").get("task", {}).get("name") \
        if (run_dir / "config.yaml").exists() else None
    if trained_on and trained_on != cfg.task.name:
        console.print(f"[yellow]the run trained on task={trained_on}; evaluating task={cfg.task.name} (pass "
                      f"task={trained_on} to evaluate what it learned)[/yellow]")
    return checkpoints


def eval_plan(cfg: DictConfig, models: int, splits: list[str]) -> str:
    """The whole eval's cost line (``rlvr.eval.cost``), from the configured model's size: each model's own line
    follows when it is loaded, timed by what the previous one measured."""
    from dataclasses import replace

    from rlvr.config.model_size import model_params
    from rlvr.eval.cost import sweep_cost

    one = sweep_cost(cfg.eval, splits, "rlvr eval")
    total = replace(one, factors=((models, "models"),) + one.factors, generate_calls=models * one.generate_calls)
    import torch

    return total.line(model_params(cfg.model), "cuda" if torch.cuda.is_available() else "cpu")


def run(cfg: DictConfig) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rlvr.runs.provenance import task_datasets, write_stage_card
    from rlvr.runs.tracking import Tracker
    from rlvr.tasks import build_task

    started = time.perf_counter()
    console = Console()
    e = cfg.eval
    checkpoints = _models(cfg, console)
    if checkpoints is None:
        return 2
    out = Path(cfg.output_dir)
    task = build_task(cfg.task, data_dir=cfg.data_dir)
    splits = list(e.splits) or task.default_eval_splits()
    console.print(f"[bold]rlvr eval[/bold]  {len(checkpoints)} model(s)  task={task.name}  splits={splits}  "
                  f"budgets={list(e.budgets)}  n={e.n}  problems/split={e.num_problems}  out={out / 'eval'}")
    console.print(eval_plan(cfg, len(checkpoints), splits))
    for warning in dict.fromkeys(statement_mismatch(c.run_dir, statement_template(e)) for c in checkpoints):
        if warning:
            console.print(f"[yellow]{warning}[/yellow]")
    tracker = Tracker(out, cfg.logger, cfg, job_type="eval", metrics_file=None)
    progress = Progress(TextColumn("[bold]eval[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=console)
    try:
        with progress:
            bar = progress.add_task("", total=len(checkpoints) * len(splits) * len(e.budgets))
            rows = evaluate_checkpoints(
                cfg, task, checkpoints, splits, out, console,
                tag_of=lambda c: f"{e.tag}_{c.tag}" if e.tag and len(checkpoints) > 1 else e.tag,
                on_cell=lambda c, split, budget: progress.update(bar, advance=1,
                                                                 description=f"{c.label} {split} B={budget}"))
        print_table(rows, console)
        errors = [r for r in rows if r["verifier_error_rate"] > 0]
        if errors:
            console.print(f"[yellow]verifier errors in {len(errors)} cells (excluded from accuracy); last: "
                          f"{errors[-1].get('last_verifier_error')}[/yellow]")
        if e.plot:  # from every sweep in <out>/eval, so earlier checkpoints' lines stay on the plots
            from rlvr.eval.plots import make_plots

            written = make_plots(out, tracker=tracker)
            console.print("plots: " + "  ".join(str(p) for p in written))
        # the card goes under eval/ so it never overwrites the card of the run it evaluates (run_dir)
        write_stage_card(cfg, "eval", out / "eval", tracker=tracker, console=console,
                         wall_seconds=time.perf_counter() - started, verifiers=task.verifier_specs(),
                         datasets=task_datasets(task, dict.fromkeys(splits, e.num_problems), role="eval"),
                         eval_table=rows)
    finally:
        tracker.close()
    return 0


def main(argv: list[str]) -> int:
    return run_command("eval", argv, validate, run)
