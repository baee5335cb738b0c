"""``rlvr eval``: accuracy vs thinking budget, per checkpoint x task split x budget.

    rlvr eval model.name_or_path=runs/sft/final output_dir=runs/sft eval.budgets=[0,8,16,32,64] eval.n=8
    rlvr eval run_dir=runs/grpo eval.checkpoints=all          # every checkpoint: accuracy vs training step
    rlvr eval --help                                         # every knob, with what it trades off

For each model, each held-out split and each budget B, every problem gets n sampled completions with the thinking
block capped at B tokens (s1 budget forcing: at B, ``</think>`` is forced and the answer gets
``eval.answer_tokens`` more; ``null`` = no cap), scored by the task's verifiers in the reward runtime
(``rlvr.rewards.runtime``: a broken verifier is an *error*, excluded from accuracy and counted in
``verifier_error_rate``, never a silent 0). One row per (checkpoint, task, split, budget):

    pass@1 (mean over problems of the fraction of right samples), pass@k (unbiased, Chen et al. 2021) and maj@k
    (majority vote, ties = fraction of tied answers that are right) for k in eval.k_list, mean_thinking_tokens,
    tokens_per_answer, truncation_rate (hit a token cap), budget_forced_rate (thinking cut by the budget),
    verifier_error_rate, n_problems, and for the scaling plots: step, train_tokens (cumulative, from the run
    directory: ``rlvr.runs.layout``), test_tokens (tokens to answer the split once at this budget =
    n_problems x tokens_per_answer) and total_compute_tokens = train_tokens + test_tokens (``rlvr plot`` also
    offers a test workload other than "the eval set once": ``--queries``).

Rows go to ``<out>/eval/budget_sweep_<tag>.json`` (+ ``.csv``), one file per checkpoint, so re-evaluating one
checkpoint replaces its file and ``rlvr plot`` gathers them all. Every budget and split uses the same sampler seed
(common random numbers: two budgets differ only where the cap bites). ``budget_sweep`` is the reusable core;
``rlvr grpo`` calls ``sweep_checkpoint`` every ``grpo.budget_eval_every`` steps on its fixed held-out set
(``rlvr.train.budgets``).

A model trained with its budget stated in the prompt (``grpo.train_budget.state_in_prompt``) is evaluated with
``eval.state_budget_in_prompt=true``: each swept budget B is then written into every prompt
(``eval.budget_prompt_template``, default "Think for {budget} tokens.", on a new line after the user message; no
line for budget null), exactly as in training (``rlvr.train.budgets.state_budget``). ``rlvr eval run_dir=...``
warns when the run trained with a statement this eval does not make.

Tests: ``OMP_NUM_THREADS=1 python -m pytest tests/unit/test_evaluate.py tests/unit/test_passk.py -q``.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from rlvr.config.loading import Problem, default_output_dir, run_command
from rlvr.eval.metrics import ProblemSamples, aggregate
from rlvr.runs.layout import Checkpoint, describe_model, run_checkpoints

SWEEP_PREFIX = "budget_sweep_"


# ------------------------------------------------------------------------------------------------ sampling
def sampling_params(budget: int | None, *, temperature: float, top_p: float, max_new_tokens: int,
                    answer_tokens: int, seed: int | None):
    """SamplingParams for one budget; ``None`` = no thinking cap (only max_new_tokens caps the completion)."""
    from rlvr.rollout.base import SamplingParams
    from rlvr.rollout.budget import ThinkingBudget

    return SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
                          budget=None if budget is None else ThinkingBudget(thinking=budget, answer=answer_tokens))


def answer_key(extracted: str | None) -> str | None:
    """The vote maj@k counts: the verifier's extracted answer, normalised (math rules: "82." and "$82$" agree)."""
    if extracted is None or not str(extracted).strip():
        return None
    from rlvr.verifiers.math_normalize import normalize

    try:
        return normalize(str(extracted))
    except Exception:  # noqa: BLE001 - a non-math verifier's extraction: compare it verbatim
        return str(extracted).strip()


# ------------------------------------------------------------------------------------------------ the sweep
def score_rollouts(runtime: Any, samples: Sequence[Any], rollouts: Sequence[Any], n: int) -> tuple[
        list[ProblemSamples], int, int, str | None]:
    """Per-problem verdicts of the primary verifier (rlvr.rewards.scoring.primary_key): (problems, errors,
    not-applicable count, one error message)."""
    from rlvr.rewards.scoring import primary_key

    rows = [samples[i // n] for i in range(len(rollouts))]  # prompt-major: row i is problem i // n
    batch = runtime.score([r.text for r in rollouts], [s.answer for s in rows], [list(s.verifiers) for s in rows],
                          metas=[dict(s.meta) for s in rows])
    problems = [ProblemSamples([], []) for _ in samples]
    errors = not_applicable = 0
    last_error = None
    for i, (sample, results) in enumerate(zip(rows, batch.results)):
        r = results.get(primary_key(sample) or "")
        if r is not None and r.error is not None:
            errors += 1
            last_error = r.error
        elif r is None or r.score is None:
            not_applicable += 1
        ok = None if r is None or r.error is not None or r.score is None else float(r.score)
        problems[i // n].correct.append(ok)
        problems[i // n].answers.append(answer_key(r.extracted) if r is not None and ok is not None else None)
    return problems, errors, not_applicable, last_error


def budget_sweep(engine: Any, task: Any, splits: Sequence[str], budgets: Sequence[int | None], runtime: Any, *,
                 n: int = 8, k_list: Sequence[int] = (1,), num_problems: int = 50, answer_tokens: int = 16,
                 temperature: float = 0.6, top_p: float = 1.0, max_new_tokens: int = 128, seed: int = 0,
                 on_cell: Callable[[str, int | None], None] | None = None,
                 budget_statement: str | None = None) -> list[dict[str, Any]]:
    """One row per (split, budget): see the module docstring. ``on_cell`` is called after each cell (progress).
    ``budget_statement``: a template with {budget} written into each prompt for its budget (None = plain prompts)."""
    from rlvr.train.budgets import state_budget

    bad = [k for k in k_list if not 1 <= k <= n]
    if bad:
        raise ValueError(f"k_list {list(k_list)} has k outside 1..n={n}: raise eval.n or drop {bad}")
    rows = []
    for split in splits:
        samples = task.samples(split, limit=num_problems)
        if not samples:
            raise ValueError(f"task {task.name!r} split {split!r} has no problems")
        for budget in budgets:
            started = time.perf_counter()
            params = sampling_params(budget, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                                     answer_tokens=answer_tokens, seed=seed)
            asked = samples if budget_statement is None else [state_budget(s, budget, budget_statement)
                                                                for s in samples]
            rollouts = engine.generate(asked, n=n, params=params)  # [P*n] prompt-major
            problems, errors, not_applicable, last_error = score_rollouts(runtime, samples, rollouts, n)
            total = len(rollouts)
            generated = sum(r.num_tokens for r in rollouts)
            row: dict[str, Any] = {"task": task.name, "split": split, "budget": budget,
                                   "n_problems": len(samples), "n": n}
            row |= aggregate(problems, k_list)
            row |= {
                "mean_thinking_tokens": sum(r.thinking_tokens for r in rollouts) / total,
                "tokens_per_answer": generated / total,
                "truncation_rate": sum(r.truncated for r in rollouts) / total,
                "budget_forced_rate": sum(bool(getattr(r, "budget_forced", False)) for r in rollouts) / total,
                "verifier_error_rate": errors / total,
                "not_applicable_rate": not_applicable / total,
                "test_tokens": generated / n,  # answering every problem of the split once
                "seconds": time.perf_counter() - started,
            }
            if last_error:
                row["last_verifier_error"] = last_error[:300]
            rows.append(row)
            if on_cell is not None:
                on_cell(split, budget)
    return rows


def with_checkpoint(rows: list[dict[str, Any]], ckpt: Checkpoint) -> list[dict[str, Any]]:
    """Prefix rows with the checkpoint's identity and training position; add total compute."""
    out = []
    for row in rows:
        total = None if ckpt.train_tokens is None else ckpt.train_tokens + row["test_tokens"]
        out.append({"checkpoint": ckpt.label, "model_path": ckpt.path, "step": ckpt.step,
                    "train_tokens": ckpt.train_tokens} | row | {"total_compute_tokens": total})
    return out


def _csv_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""  # budget None = no cap; NaN = nothing to average (e.g. every verifier call failed)
    return value


def write_sweep(out_dir: str | Path, rows: list[dict[str, Any]], tag: str, meta: dict[str, Any]) -> Path:
    """Write eval/budget_sweep_<tag>.json (rows + meta; NaN as null) and .csv; returns the json path."""
    eval_dir = Path(out_dir) / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
    path = eval_dir / f"{SWEEP_PREFIX}{tag}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": clean}, indent=1))
    tmp.replace(path)  # atomic: a plot never reads half a file
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    with path.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: _csv_value(r.get(k)) for k in columns} for r in rows)
    return path


def read_sweeps(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every row of every eval/budget_sweep_*.json in a run directory (a torn or foreign file is skipped)."""
    rows = []
    for path in sorted((Path(run_dir) / "eval").glob(f"{SWEEP_PREFIX}*.json")):
        try:
            rows += json.loads(path.read_text())["rows"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return rows


def sweep_checkpoint(model: Any, tokenizer: Any, task: Any, eval_cfg: Any, ckpt: Checkpoint, out_dir: str | Path,
                     runtime: Any, *, splits: Sequence[str] | None = None, seed: int = 0, tag: str | None = None,
                     on_cell: Callable | None = None, think_open: str = "<think>",
                     think_close: str = "</think>") -> tuple[list[dict[str, Any]], Path]:
    """Sweep one in-memory model and write its file. Also the hook for periodic evals inside training:
    ``sweep_checkpoint(policy, tokenizer, task, cfg.eval, Checkpoint(None, f"step {s}", s, tokens), out, runtime)``.
    """
    from rlvr.eval.heldout import default_eval_splits
    from rlvr.rollout.hf import HFEngine

    e = eval_cfg
    splits = list(splits or e.splits or default_eval_splits(task))
    engine = HFEngine(model, tokenizer, batch_size=e.batch_size, think_open=think_open, think_close=think_close)
    rows = budget_sweep(engine, task, splits, list(e.budgets), runtime, n=e.n, k_list=list(e.k_list),
                        num_problems=e.num_problems, answer_tokens=e.answer_tokens, temperature=e.temperature,
                        top_p=e.top_p, max_new_tokens=e.max_new_tokens, seed=seed, on_cell=on_cell,
                        budget_statement=statement_template(e))
    rows = with_checkpoint(rows, ckpt)
    settings = OmegaConf.to_container(e, resolve=True) if isinstance(e, DictConfig) else asdict(e)
    meta = {"checkpoint": ckpt.label, "model_path": ckpt.path, "step": ckpt.step, "train_tokens": ckpt.train_tokens,
            "task": task.name, "splits": splits, "eval": settings, "seed": seed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return rows, write_sweep(out_dir, rows, tag or ckpt.tag, meta)


def statement_template(e: Any) -> str | None:
    """The budget template an eval config states in its prompts, or None (plain prompts)."""
    state = e.get("state_budget_in_prompt", False) if isinstance(e, DictConfig) else getattr(
        e, "state_budget_in_prompt", False)
    return e.budget_prompt_template if state else None


# ------------------------------------------------------------------------------------------------ the command
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
        from rlvr.train.budgets import template_problem

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


def run(cfg: DictConfig) -> int:
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rlvr.eval.heldout import default_eval_splits
    from rlvr.models import load_model_and_tokenizer
    from rlvr.runs.provenance import task_datasets, write_stage_card
    from rlvr.rewards.runtime import eval_runtime
    from rlvr.tasks import build_task
    from rlvr.runs.tracking import Tracker

    started = time.perf_counter()
    console = Console()
    e = cfg.eval
    if cfg.run_dir is not None:
        run_dir = Path(cfg.run_dir).expanduser()
        cfg.output_dir = cfg.output_dir or str(run_dir)
        try:
            checkpoints = run_checkpoints(run_dir, e.checkpoints)
        except FileNotFoundError as exc:
            console.print(f"[red]rlvr eval: {exc}[/red]")
            return 2
        trained_on = OmegaConf.load(run_dir / "config.yaml").get("task", {}).get("name") \
            if (run_dir / "config.yaml").exists() else None
        if trained_on and trained_on != cfg.task.name:
            console.print(f"[yellow]the run trained on task={trained_on}; evaluating task={cfg.task.name} (pass "
                          f"task={trained_on} to evaluate what it learned)[/yellow]")
    else:
        default_output_dir(cfg, "eval")
        path = cfg.model.name_or_path
        checkpoints = [describe_model(path, relative_to=cfg.output_dir) if path else Checkpoint(None, cfg.model.name)]
    out = Path(cfg.output_dir)
    task = build_task(cfg.task, data_dir=cfg.data_dir)
    splits = list(e.splits) or default_eval_splits(task)
    console.print(f"[bold]rlvr eval[/bold]  {len(checkpoints)} model(s)  task={task.name}  splits={splits}  "
                  f"budgets={list(e.budgets)}  n={e.n}  problems/split={e.num_problems}  out={out / 'eval'}")
    from rlvr.train.budgets import statement_mismatch

    for warning in dict.fromkeys(statement_mismatch(c.run_dir, statement_template(e)) for c in checkpoints):
        if warning:
            console.print(f"[yellow]{warning}[/yellow]")
    # Eval reports verifier errors instead of aborting on them (GRPO's abort guards training, not measurement).
    runtime = eval_runtime(cfg.rewards)
    tracker = Tracker(out, cfg.logger, cfg, job_type="eval", metrics_file=None)
    all_rows = []
    progress = Progress(TextColumn("[bold]eval[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=console)
    try:
        with progress:
            bar = progress.add_task("", total=len(checkpoints) * len(splits) * len(e.budgets))
            for ckpt in checkpoints:
                model_cfg = OmegaConf.merge(cfg.model, {"name_or_path": ckpt.path} if ckpt.path else {})
                model, tokenizer = load_model_and_tokenizer(model_cfg)
                model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
                progress.update(bar, description=ckpt.label)
                tag = f"{e.tag}_{ckpt.tag}" if e.tag and len(checkpoints) > 1 else e.tag
                rows, path = sweep_checkpoint(
                    model, tokenizer, task, e, ckpt, out, runtime, splits=splits, seed=cfg.seed, tag=tag,
                    think_open=cfg.task.think_open, think_close=cfg.task.think_close,
                    on_cell=lambda split, budget: progress.update(bar, advance=1,
                                                                  description=f"{ckpt.label} {split} B={budget}"))
                all_rows += rows
                console.print(f"wrote {path} (+ .csv)")
        print_table(all_rows, console)
        errors = [r for r in all_rows if r["verifier_error_rate"] > 0]
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
                         eval_table=all_rows)
    finally:
        runtime.close()
        tracker.close()
    return 0


def main(argv: list[str]) -> int:
    return run_command("eval", argv, validate, run)
