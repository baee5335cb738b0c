"""``scripts/bench_grpo_vs_trl.py --mode accuracy``: train each system once from the same start model with the same
budget, then greedy held-out accuracy per operation count (``rlvr.eval.heldout.evaluate_heldout``, judged by the
``math`` verifier) for the start model and each result; the outputs are written through ``bench_report``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from bench_report import SYSTEMS, write_outputs
from bench_spec import arith_task_config, base_spec, env_info, progress_bar, resolve_model, run_one


def evaluate_model(folder: str, args) -> list[dict[str, Any]]:
    import torch

    from rlvr.config import ModelConfig
    from rlvr.eval.heldout import evaluate_heldout
    from rlvr.models import load_model_and_tokenizer
    from rlvr.config import RewardsConfig
    from rlvr.rewards.runtime import eval_runtime
    from rlvr.tasks import build_task

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model_and_tokenizer(ModelConfig(name_or_path=folder, dtype="float32"))
    task = build_task(arith_task_config(args.arith))
    splits = args.eval_splits or task.default_eval_splits()
    runtime = eval_runtime(RewardsConfig())
    try:
        results = evaluate_heldout(model, tokenizer, task, splits, args.eval_problems,
                                   args.eval_max_new_tokens, 200, runtime)
    finally:
        runtime.close()
    return [{"split": r.split, "n": r.n, "accuracy": r.accuracy, "errors": r.errors,
             "mean_completion_tokens": r.mean_completion_tokens} for r in results]


def accuracy_mode(args, out: Path) -> dict[str, Any]:
    from rich.console import Console

    console = Console()
    if not args.model:
        console.print("[yellow]--mode accuracy without --model starts from the untrained tiny model: accuracy "
                      "stays ~0. Give an SFT checkpoint (e.g. runs/sft/final).[/yellow]")
    model = resolve_model(args.model)
    trl_lr = args.trl_lr if args.trl_lr is not None else args.lr
    result: dict[str, Any] = {"mode": "accuracy", "env": env_info(), "settings": {
        "model": model, "prompts": args.prompts, "group": args.group, "max_new_tokens": args.max_new_tokens,
        "lr": args.lr, "trl_lr": trl_lr, "lr_scheduler": args.lr_scheduler, "warmup_steps": args.warmup_steps,
        "verifiers": args.verifiers, "temperature": args.temperature, "steps": args.steps, "warmup": args.warmup,
        "threads": args.threads, "systems": list(args.systems),
        "eval_problems": args.eval_problems, "eval_max_new_tokens": args.eval_max_new_tokens,
        "reward_workers": args.reward_workers, "seed": args.seed, "engines": args.engines,
        "ours_overrides": list(args.ours_override or ()), "arith": args.arith, "eval_splits": args.eval_splits},
        "engines": {}}
    plan = [(engine, step) for engine in args.engines for step in (*args.systems, "eval")]
    start_eval = None
    with progress_bar() as progress:
        bar = progress.add_task("accuracy", total=len(plan) + 1)
        progress.update(bar, description="eval: start model")
        start_eval = evaluate_model(model, args)
        progress.console.print("start: " + "  ".join(f"{r['split']} {100 * r['accuracy']:.1f}%" for r in start_eval))
        progress.advance(bar)
        for engine, step in plan:
            e = result["engines"].setdefault(engine, {"train": {}, "eval": {"start": start_eval}})
            if step in SYSTEMS:
                progress.update(bar, description=f"{engine}: train {step} ({args.steps} steps)")
                tag = f"accuracy_{engine}_{step}"
                spec = replace(base_spec(args, engine, model), system=step, out_dir=str(out / "runs" / tag),
                               lr=args.lr if step == "ours" else trl_lr, save_final=True)
                row = run_one(spec, out / "logs", args.run_timeout, tag)
                e["train"][step] = row
                if row.get("error"):
                    progress.console.print(f"[red]{tag} failed[/red]: {row['error']}\n"
                                           f"{row.get('output_tail', '')[-1500:]}")
            else:
                for system in SYSTEMS:
                    final = e["train"].get(system, {}).get("final")
                    if final and Path(final, "config.json").exists():
                        progress.update(bar, description=f"{engine}: eval {system}")
                        e["eval"][system] = evaluate_model(final, args)
                        progress.console.print(f"{engine} {system}: " + "  ".join(
                            f"{r['split']} {100 * r['accuracy']:.1f}%" for r in e["eval"][system]))
            write_outputs(out, "accuracy", result)
            progress.advance(bar)
    return result
