"""Tasks map dataset rows to ``Sample``s: prompt messages, reference answer, verifier specs, meta.

The built-in tasks are registered here rather than in ``registry`` so that ``registry`` stays a leaf that
``mix`` (which builds its component tasks) can import.
"""

from rlvr.tasks.arith import ArithTask
from rlvr.tasks.base import ResponseFormat, Sample, Task
from rlvr.tasks.datasets_tasks import (AIME24Task, AMC23Task, GenericTask, GSM8KTask, HumanEvalTask, Math500Task,
                                       MBPPTask)
from rlvr.tasks.mix import MixTask
from rlvr.tasks.registry import TASKS, available_tasks, build_task, register_task

for _cls in (ArithTask, GSM8KTask, Math500Task, AIME24Task, AMC23Task, HumanEvalTask, MBPPTask, GenericTask, MixTask):
    register_task(_cls)

__all__ = ["Sample", "Task", "ResponseFormat", "TASKS", "available_tasks", "build_task", "register_task"]
