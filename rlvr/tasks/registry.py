"""Task registry: names -> Task classes. Rejects duplicates; a miss lists the valid names.

A leaf: it imports no task. The built-in tasks are registered by ``rlvr/tasks/__init__.py``, which Python runs
before any ``rlvr.tasks.*`` module, so ``TASKS`` is complete whichever way it is reached; ``mix`` can then build
its components through this module without the registry importing ``mix`` back (no import cycle).
"""

from __future__ import annotations

from typing import Any

from rlvr.tasks.base import Task

TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in TASKS and TASKS[cls.name] is not cls:
        raise ValueError(
            f"task name {cls.name!r} is already registered by {TASKS[cls.name].__module__}."
            f"{TASKS[cls.name].__qualname__}; pick another name for {cls.__module__}.{cls.__qualname__}"
        )
    TASKS[cls.name] = cls
    return cls


def available_tasks() -> list[str]:
    return sorted(TASKS)


def build_task(cfg: Any, data_dir: str | None = None) -> Task:
    """The task named ``cfg.name`` configured by ``cfg`` (a ``TaskConfig``)."""
    if cfg.name not in TASKS:
        raise KeyError(f"unknown task {cfg.name!r}; valid tasks: {', '.join(available_tasks())}")
    return TASKS[cfg.name](cfg, data_dir=data_dir)
