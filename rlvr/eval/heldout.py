"""Greedy held-out accuracy per split: the check after SFT and every ``grpo.eval_every`` steps of GRPO.

It is the budget sweep's cell (``rlvr.eval.sampling``) at one setting: no thinking cap, n=1, temperature 0,
through the HF engine on the in-memory model, scored on the one scoring path (``rlvr.rewards.scoring.score``: the
sample's verifiers in the reward runtime's pool, with hard timeouts). Correct = the sample's primary verifier
(``rlvr.rewards.scoring.primary_spec``: math on arith, the code verifier on a code task or a mix's code rows)
scores >= 1, so SFT reports the same notion of "correct" that GRPO is rewarded with. A verifier that breaks or
hangs is counted in ``errors`` (and is not correct); a sample with no weighted verifier is never correct.

Before this eval became an engine cell it decoded with its own batched transformers ``generate`` loop; on the
tiny model (the SFT and GRPO checkpoints of the fixed-seed baseline, test_ops1..4, up to 100 problems a split)
the engine's greedy completions were identical to it, text and token counts, with either HF decoder.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from rlvr.eval.sampling import sample_and_score
from rlvr.rewards.scoring import ScoredRound
from rlvr.rollout.base import SamplingParams

__all__ = ["SplitResult", "evaluate_heldout", "print_results", "run_eval", "split_result",
           "write_eval"]


@dataclass
class SplitResult:
    split: str
    n: int
    correct: int
    errors: int
    mean_completion_tokens: float
    examples: list[dict[str, Any]]

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0


def split_result(split: str, scored: ScoredRound, keep_examples: int = 3) -> SplitResult:
    """One split's greedy cell (n=1: rollout i answers sample i) as a SplitResult."""
    correct = errors = 0
    examples = []
    for sample, rollout, r in zip(scored.samples, scored.rollouts, scored.primary()):
        errors += r is not None and r.error is not None
        ok = r is not None and r.error is None and r.score is not None and r.score >= 1.0
        correct += ok
        if len(examples) < keep_examples:
            examples.append({"prompt": sample.prompt[-1]["content"], "completion": rollout.text,
                             "answer": sample.answer, "correct": ok})
    mean_tokens = sum(r.num_tokens for r in scored.rollouts) / max(len(scored.rollouts), 1)
    return SplitResult(split, len(scored.samples), correct, errors, mean_tokens, examples)


def evaluate_heldout(model: Any, tokenizer: Any, task: Any, splits: Sequence[str], num_problems: int,
                     max_new_tokens: int, batch_size: int, runtime: Any, console: Any = None,
                     what: str = "held-out eval") -> list[SplitResult]:
    """Greedy accuracy of ``model`` on the first ``num_problems`` of each split, verified in ``runtime``. With a
    ``console``: the cost line (``rlvr.eval.cost``) first, then a progress bar with an ETA, one tick per split."""
    import time

    from rlvr.eval.cost import heldout_cost, progress, prompt_tokens, record
    from rlvr.rollout.hf import HFEngine

    engine = HFEngine(model, tokenizer, batch_size=batch_size)
    # seeded: the engine forks the RNG, so an eval inside training leaves the trainer's random stream untouched
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens, seed=0)
    cost = None
    if console is not None:
        cost = heldout_cost(splits, num_problems, max_new_tokens, batch_size, what,
                            prompt_tokens(tokenizer, task.samples(splits[0], limit=4)) if splits else 0.0)
        console.print(cost.describe(model))
    results = []
    started = time.perf_counter()
    with progress(console, what, len(splits), cost.estimate_s(model) if cost else None) as tick:
        for split in splits:
            scored = sample_and_score(engine, task.samples(split, limit=num_problems), runtime, 1, params)
            results.append(split_result(split, scored))
            tick(split)
    generations = sum(r.n for r in results)
    record(model, "heldout", sum(r.mean_completion_tokens * r.n for r in results), time.perf_counter() - started,
           generations, source="the last held-out eval")
    return results


def write_eval(output_dir: Path, results: Sequence[SplitResult], step: int, name: str = "sft_heldout") -> Path:
    """eval/<name>.json (rows + a few examples per split) and eval/<name>.csv; returns the json path."""
    eval_dir = Path(output_dir) / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    rows = [{"step": step, "split": r.split, "n": r.n, "accuracy": r.accuracy, "errors": r.errors,
             "mean_completion_tokens": r.mean_completion_tokens} for r in results]
    examples = {r.split: r.examples for r in results}
    (eval_dir / f"{name}.json").write_text(json.dumps({"rows": rows, "examples": examples}, indent=2))
    with (eval_dir / f"{name}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return eval_dir / f"{name}.json"


def print_results(results: Sequence[SplitResult], console: Any, num_examples: int = 2) -> None:
    """The accuracy table, then up to ``num_examples`` generations of the first and of the last split (each split
    once, also when there is only one)."""
    from rich.table import Table

    table = Table(title="held-out greedy accuracy (primary verifier)")
    for col in ("split", "problems", "accuracy", "verifier errors", "mean tokens"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(r.split, str(r.n), f"{100 * r.accuracy:.1f}%", str(r.errors), f"{r.mean_completion_tokens:.1f}")
    console.print(table)
    shown = list(results[:1]) + (list(results[-1:]) if len(results) > 1 else [])
    for r in shown if num_examples > 0 else []:
        for ex in r.examples[:num_examples]:
            mark = "[green]✓[/green]" if ex["correct"] else "[red]✗[/red]"
            console.print(f"{mark} [bold]{ex['prompt']}[/bold] (answer {ex['answer']})\n{ex['completion']}\n")


def run_eval(model: Any, tokenizer: Any, task: Any, cfg: Any, splits: list[str], out: Any, step: int, console: Any,
             runtime: Any = None) -> dict:
    """The greedy held-out eval inside `rlvr grpo` at `step`: accuracy per split, printed and written to eval/.
    ``runtime``: a measuring runtime to reuse (``rlvr.rewards.runtime.eval_runtime``); None starts one for the call."""
    from rlvr.rewards.runtime import eval_runtime

    g = cfg.grpo
    own = runtime is None
    runtime = eval_runtime(cfg.rewards) if own else runtime
    try:
        results = evaluate_heldout(model, tokenizer, task, splits, g.eval_num_problems, g.eval_max_new_tokens,
                                   g.eval_batch_size, runtime, console=console, what=f"held-out eval @ step {step}")
    finally:
        if own:
            runtime.close()
    write_eval(out, results, step=step, name=f"grpo_step{step}")
    console.print(f"eval @ step {step}: " + "  ".join(f"{r.split} {100 * r.accuracy:.1f}%" for r in results))
    return {f"eval/{r.split}/accuracy": r.accuracy for r in results}
