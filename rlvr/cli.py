"""The ``rlvr`` command: ``rlvr <command> [hydra overrides ...]``.

Each command lives in its own module and exposes ``main(argv: list[str]) -> int``; this file only dispatches,
so ``rlvr --help`` stays fast (no torch import) and a new command is one line in ``COMMANDS``.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module with a ``main(argv) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "card": ("rlvr.runs.runcard", "print a run's card (RUNCARD.md): models, data, verifiers, recipe, lineage, eval"),
    "check-contamination": ("rlvr.runs.contamination", "n-gram overlap between a task's training prompts and eval sets"),
    "diff-runs": ("rlvr.runs.diff_runs", "what differs between two runs' recipes, data, verifiers and model hashes"),
    "distill": ("rlvr.train.distill", "rejection sampling: sample a model, keep verified-correct traces as SFT data"),
    "eval": ("rlvr.eval.cli", "accuracy vs thinking budget (pass@1, pass@k, maj@k) per checkpoint and split"),
    "grpo": ("rlvr.train.grpo", "GRPO on a task's verifiable rewards (from an SFT checkpoint or any model)"),
    "pipeline": ("rlvr.pipeline", "distill -> sft -> grpo -> eval -> plot in one run directory, resumable"),
    "plan": ("rlvr.train.plan_cli", "memory per device of a GRPO run from its config (no weights): fits or not"),
    "plot": ("rlvr.eval.plots", "train-time vs test-time scaling plots from a run's budget sweeps (PNG + wandb)"),
    "sft": ("rlvr.train.sft", "cold-start supervised fine-tuning on reasoning traces (TRL SFTTrainer)"),
    "tasks": ("rlvr.tasks.cli", "list tasks, or render a sample prompt and reference answer of one"),
    "verify": ("rlvr.rewards.verify_cli", "score a jsonl of completions with any verifier"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: rlvr <command> [key=value ...]   (Hydra overrides, e.g. model=tiny sft.max_steps=100)",
        "",
        "commands:",
        *(f"  {name:<{width}}  {help_}" for name, (_, help_) in sorted(COMMANDS.items())),
        "",
        "`rlvr <command> [key=value ...] --help` shows every option with the value the command will run with",
        "and its help; `--cfg job` prints that config as YAML; `--multirun key=a,b ...` (-m) sweeps through",
        "Hydra's sweeper and launcher (jobs in hydra.sweep.dir/0, /1, ...).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from rlvr import __version__

        print(f"rlvr {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"rlvr: unknown command {name!r}.\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
