"""Tasks map dataset rows to ``Sample``s: prompt messages, reference answer, verifier specs, meta."""

from rlvr.tasks.base import ResponseFormat, Sample, Task
from rlvr.tasks.registry import TASKS, available_tasks, build_task, register_task

__all__ = ["Sample", "Task", "ResponseFormat", "TASKS", "available_tasks", "build_task", "register_task"]
