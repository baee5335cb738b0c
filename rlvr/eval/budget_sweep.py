"""Accuracy vs thinking budget, per checkpoint x task split x budget: the one evaluation behind ``rlvr eval``
(``rlvr.eval.cli``), the pipeline's eval stage and the sweep inside ``rlvr grpo`` (``rlvr.eval.in_training``).

For each model, each held-out split and each budget B, every problem gets n sampled completions with the thinking
block capped at B tokens (s1 budget forcing: at B, ``</think>`` is forced and the answer gets
``eval.answer_tokens`` more; ``null`` = no cap), scored by the task's verifiers on the one scoring path
(``rlvr.rewards.scoring.score``: the reward runtime, where a broken verifier is an *error*, excluded from accuracy
and counted in ``verifier_error_rate``, never a silent 0). One row per (checkpoint, task, split, budget):

    pass@1 (mean over problems of the fraction of right samples), pass@k (unbiased, Chen et al. 2021) and maj@k
    (majority vote, ties = fraction of tied answers that are right) for k in eval.k_list, mean_thinking_tokens,
    tokens_per_answer, truncation_rate (hit a token cap), budget_forced_rate (thinking cut by the budget),
    verifier_error_rate, n_problems, and for the scaling plots: step, train_tokens (cumulative, from the run
    directory: ``rlvr.runs.layout``), test_tokens (tokens to answer the split once at this budget =
    n_problems x tokens_per_answer) and total_compute_tokens = train_tokens + test_tokens (``rlvr plot`` also
    offers a test workload other than "the eval set once": ``--queries``).

Rows go to ``<out>/eval/budget_sweep_<tag>.json`` (+ ``.csv``), one file per checkpoint, so re-evaluating one
checkpoint replaces its file and ``rlvr plot`` gathers them all. Every budget and split uses the same sampler seed
(common random numbers: two budgets differ only where the cap bites). ``budget_sweep`` is the core over an engine,
``sweep_checkpoint`` sweeps one in-memory model and writes its file, ``evaluate_checkpoints`` loads and sweeps a
list of checkpoints (``rlvr eval`` and the pipeline).

A model trained with its budget stated in the prompt (``grpo.train_budget.state_in_prompt``) is evaluated with
``eval.state_budget_in_prompt=true``: each swept budget B is then written into every prompt, exactly as in
training (``rlvr.eval.budget_statement``).
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from rlvr.eval.budget_statement import state_budget, statement_template
from rlvr.eval.metrics import ProblemSamples, aggregate
from rlvr.runs.layout import Checkpoint

if TYPE_CHECKING:
    from rlvr.rewards.scoring import ScoredRound

SWEEP_PREFIX = "budget_sweep_"


# ------------------------------------------------------------------------------------------------ one cell
def answer_key(extracted: str | None) -> str | None:
    """The vote maj@k counts: the verifier's extracted answer, normalised (math rules: "82." and "$82$" agree)."""
    if extracted is None or not str(extracted).strip():
        return None
    from rlvr.verifiers.math_normalize import normalize

    try:
        return normalize(str(extracted))
    except Exception:  # noqa: BLE001 - a non-math verifier's extraction: compare it verbatim
        return str(extracted).strip()


def verdicts(scored: ScoredRound, n: int) -> tuple[list[ProblemSamples], int, int, str | None]:
    """Per-problem verdicts of the primary verifier: (problems, errors, not-applicable count, one error message)."""
    problems = [ProblemSamples([], []) for _ in scored.samples]
    errors = not_applicable = 0
    last_error = None
    for i, r in enumerate(scored.primary()):
        if r is not None and r.error is not None:
            errors += 1
            last_error = r.error
        elif r is None or r.score is None:
            not_applicable += 1
        ok = None if r is None or r.error is not None or r.score is None else float(r.score)
        problems[i // n].correct.append(ok)
        problems[i // n].answers.append(answer_key(r.extracted) if r is not None and ok is not None else None)
    return problems, errors, not_applicable, last_error


def cell_row(task_name: str, split: str, budget: int | None, scored: ScoredRound, n: int,
             k_list: Sequence[int], seconds: float) -> dict[str, Any]:
    """The row of one (split, budget) cell (module docstring)."""
    problems, errors, not_applicable, last_error = verdicts(scored, n)
    rollouts = scored.rollouts
    total = len(rollouts)
    generated = sum(r.num_tokens for r in rollouts)
    row: dict[str, Any] = {"task": task_name, "split": split, "budget": budget, "n_problems": len(scored.samples),
                           "n": n}
    row |= aggregate(problems, k_list)
    row |= {
        "mean_thinking_tokens": sum(r.thinking_tokens for r in rollouts) / total,
        "tokens_per_answer": generated / total,
        "truncation_rate": sum(r.truncated for r in rollouts) / total,
        "budget_forced_rate": sum(bool(getattr(r, "budget_forced", False)) for r in rollouts) / total,
        "verifier_error_rate": errors / total,
        "not_applicable_rate": not_applicable / total,
        "test_tokens": generated / n,  # answering every problem of the split once
        "seconds": seconds,
    }
    if last_error:
        row["last_verifier_error"] = last_error[:300]
    return row


# ------------------------------------------------------------------------------------------------ the sweep
def budget_sweep(engine: Any, task: Any, splits: Sequence[str], budgets: Sequence[int | None], runtime: Any, *,
                 n: int = 8, k_list: Sequence[int] = (1,), num_problems: int = 50, answer_tokens: int = 16,
                 temperature: float = 0.6, top_p: float = 1.0, max_new_tokens: int = 128, seed: int = 0,
                 on_cell: Callable[[str, int | None], None] | None = None,
                 budget_statement: str | None = None) -> list[dict[str, Any]]:
    """One row per (split, budget): see the module docstring. ``on_cell`` is called after each cell (progress).
    ``budget_statement``: a template with {budget} written into each prompt for its budget (None = plain prompts)."""
    from rlvr.eval.sampling import sample_and_score, sampling_params  # torch: not needed by `rlvr eval --help`

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
            asked = None if budget_statement is None else [state_budget(s, budget, budget_statement) for s in samples]
            scored = sample_and_score(engine, samples, runtime, n, params, asked=asked)
            rows.append(cell_row(task.name, split, budget, scored, n, k_list, time.perf_counter() - started))
            if on_cell is not None:
                on_cell(split, budget)
    return rows


# ------------------------------------------------------------------------------------------------ files
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


# ------------------------------------------------------------------------------------------------ models
def record_sweep(model: Any, rows: Sequence[dict[str, Any]], seconds: float) -> None:
    """The sweep's measured throughput (generated tokens / wall seconds, scoring included) for the next estimate."""
    from rlvr.eval.cost import record

    generations = sum(r["n_problems"] * r["n"] for r in rows)
    tokens = sum(r["tokens_per_answer"] * r["n_problems"] * r["n"] for r in rows)
    record(model, "sweep", tokens, seconds, generations, source="the last sweep")


def sweep_checkpoint(model: Any, tokenizer: Any, task: Any, eval_cfg: Any, ckpt: Checkpoint, out_dir: str | Path,
                     runtime: Any, *, splits: Sequence[str] | None = None, seed: int = 0, tag: str | None = None,
                     on_cell: Callable | None = None, think_open: str = "<think>",
                     think_close: str = "</think>", console: Any = None,
                     what: str | None = None) -> tuple[list[dict[str, Any]], Path]:
    """Sweep one in-memory model (HF engine) and write its file; the in-training sweep calls this on the policy.
    With a ``console``: the cost line (``rlvr.eval.cost``) before it starts and, unless ``on_cell`` reports
    progress to the caller's own bar, a progress bar with an ETA (``what`` names it)."""
    from rlvr.eval.cost import progress, prompt_tokens, sweep_cost
    from rlvr.rollout.hf import HFEngine

    e = eval_cfg
    splits = list(splits or e.splits or task.default_eval_splits())
    engine = HFEngine(model, tokenizer, batch_size=e.batch_size, think_open=think_open, think_close=think_close)
    cost = sweep_cost(e, splits, what or f"budget sweep of {ckpt.label}",
                      prompt_tokens(tokenizer, task.samples(splits[0], limit=4)) if console is not None else 0.0)
    if console is not None:
        console.print(cost.describe(model))
    started = time.perf_counter()
    with progress(console, cost.what, len(splits) * len(e.budgets), cost.estimate_s(model),
                  enabled=on_cell is None) as tick:
        def cell(split: str, budget: int | None) -> None:
            tick(f"{split} B={budget}")
            if on_cell is not None:
                on_cell(split, budget)

        rows = budget_sweep(engine, task, splits, list(e.budgets), runtime, n=e.n, k_list=list(e.k_list),
                            num_problems=e.num_problems, answer_tokens=e.answer_tokens, temperature=e.temperature,
                            top_p=e.top_p, max_new_tokens=e.max_new_tokens, seed=seed, on_cell=cell,
                            budget_statement=statement_template(e))
    record_sweep(model, rows, time.perf_counter() - started)
    rows = with_checkpoint(rows, ckpt)
    settings = OmegaConf.to_container(e, resolve=True) if isinstance(e, DictConfig) else asdict(e)
    meta = {"checkpoint": ckpt.label, "model_path": ckpt.path, "step": ckpt.step, "train_tokens": ckpt.train_tokens,
            "task": task.name, "splits": splits, "eval": settings, "seed": seed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return rows, write_sweep(out_dir, rows, tag or ckpt.tag, meta)


def evaluate_checkpoints(cfg: DictConfig, task: Any, checkpoints: Sequence[Checkpoint], splits: Sequence[str],
                         out: Path, console: Any, *, tag_of: Callable[[Checkpoint], str | None] | None = None,
                         reuse: Callable[[Checkpoint], list[dict] | None] | None = None,
                         on_cell: Callable[[Checkpoint, str, int | None], None] | None = None) -> list[dict[str, Any]]:
    """Load each checkpoint in turn (``cfg.model`` with its path), sweep it with ``cfg.eval`` and write its file
    under ``out``: the one loop behind ``rlvr eval`` and the pipeline's eval stage. ``tag_of``: the file tag
    (default the checkpoint's); ``reuse(ckpt)``: rows of an up-to-date sweep to keep instead of sweeping again
    (None = sweep); ``on_cell(ckpt, split, budget)``: progress. Verifier errors are reported, never an abort
    (``rlvr.rewards.runtime.eval_runtime``)."""
    import torch

    from rlvr.models import load_model_and_tokenizer
    from rlvr.rewards.runtime import eval_runtime

    runtime = eval_runtime(cfg.rewards)
    rows: list[dict[str, Any]] = []
    try:
        for ckpt in checkpoints:
            kept = reuse(ckpt) if reuse is not None else None
            if kept is not None:
                rows += kept
                continue
            started = time.perf_counter()
            model_cfg = OmegaConf.merge(cfg.model, {"name_or_path": ckpt.path} if ckpt.path else {})
            model, tokenizer = load_model_and_tokenizer(model_cfg)
            model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
            progress = None if on_cell is None else (lambda split, budget, c=ckpt: on_cell(c, split, budget))
            mine, path = sweep_checkpoint(model, tokenizer, task, cfg.eval, ckpt, out, runtime, splits=splits,
                                          seed=cfg.seed, tag=tag_of(ckpt) if tag_of else None, on_cell=progress,
                                          think_open=cfg.task.think_open, think_close=cfg.task.think_close,
                                          console=console)
            rows += mine
            console.print(f"{ckpt.label}: wrote {path} (+ .csv) in {time.perf_counter() - started:.0f}s")
            del model
    finally:
        runtime.close()
    return rows
