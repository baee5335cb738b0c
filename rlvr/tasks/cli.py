"""``rlvr tasks``: list the tasks, or render one sample of a task.

    rlvr tasks                                  # names, descriptions, where each would load its data from
    rlvr tasks gsm8k data_dir=../shared/data    # one sample: chat-rendered prompt, reference answer, verifiers
    rlvr tasks arith split=test_ops3 index=5
"""

from __future__ import annotations

import json

from omegaconf import DictConfig

from rlvr.config.loading import run_command


def _source_hint(task) -> str:
    from rlvr.tasks.datasets_tasks import DatasetTask
    from rlvr.tasks.loading import DataSourceError

    if not isinstance(task, DatasetTask):
        return "generated"
    try:
        return task.source(task.splits[-1])
    except DataSourceError:
        return "needs task.path"


def list_tasks(cfg: DictConfig) -> int:
    from rich.console import Console
    from rich.table import Table

    from rlvr.tasks import TASKS, build_task

    table = Table(title="tasks (rlvr tasks NAME renders a sample)")
    for col in ("name", "splits", "data source", "description"):
        table.add_column(col)
    for name in sorted(TASKS):
        task = build_task(_with_name(cfg, name), data_dir=cfg.data_dir)
        table.add_row(name, ", ".join(task.splits), _source_hint(task), task.description)
    Console().print(table)
    return 0


def _with_name(cfg: DictConfig, name: str) -> DictConfig:
    from omegaconf import OmegaConf

    return OmegaConf.merge(cfg.task, {"name": name})


def show_task(cfg: DictConfig) -> int:
    from rich.console import Console
    from rich.panel import Panel

    from rlvr.models import load_tokenizer
    from rlvr.tasks import build_task

    console = Console()
    task = build_task(cfg.task, data_dir=cfg.data_dir)
    split = cfg.split or task.splits[-1]
    samples = task.samples(split, limit=cfg.index + 1)
    if len(samples) <= cfg.index:
        console.print(f"[red]split {split!r} of {task.name!r} has only {len(samples)} samples[/red]")
        return 2
    sample = samples[cfg.index]
    tokenizer = load_tokenizer(cfg.model)
    rendered = tokenizer.apply_chat_template(sample.prompt, add_generation_prompt=True, tokenize=False)
    answer = sample.answer if isinstance(sample.answer, str) else json.dumps(sample.answer, indent=1)[:1500]
    console.print(Panel(rendered, title=f"{task.name} / {split} / {sample.id}: prompt as the model sees it "
                                        f"({cfg.model.name_or_path or cfg.model.name} chat template)"))
    console.print(Panel(answer, title="reference answer"))
    console.print(f"verifiers: {list(sample.verifiers)}   meta: {dict(sample.meta)}   source: {_source_hint(task)}")
    if sample.solution:
        console.print(Panel(sample.solution[:1500], title="reference solution (SFT target)"))
    return 0


def main(argv: list[str]) -> int:
    positional = [a for a in argv if "=" not in a and not a.startswith("-")]
    overrides = [a for a in argv if a not in positional]
    if len(positional) > 1:
        print(f"rlvr tasks: give at most one task name, got {positional}")
        return 2
    if positional:
        overrides = [f"task.name={positional[0]}"] + overrides
    return run_command("tasks", overrides, lambda cfg: [], show_task if positional else list_tasks)
