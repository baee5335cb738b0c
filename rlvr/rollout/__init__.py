"""Rollout: turn task samples into sampled completions (``Rollout``) and padded training batches.

``RolloutEngine`` is the interface every engine implements; ``HFEngine`` is the transformers one, ``VLLMEngine``
the vLLM one, and ``rlvr.rollout.engines.build_engine`` picks one by name; ``rlvr.rollout.prompts`` renders the
prompt tokens they all share. Engines are imported from their own modules so that importing this package never
loads torch-heavy backends by accident.
``SamplingParams(budget=ThinkingBudget(...))`` turns on s1-style thinking budgets in every engine (budget.py).
"""

from rlvr.rollout.base import RolloutEngine, SamplingParams
from rlvr.rollout.budget import ThinkingBudget
from rlvr.rollout.types import FinishReason, Rollout, RolloutBatch

__all__ = ["FinishReason", "Rollout", "RolloutBatch", "RolloutEngine", "SamplingParams", "ThinkingBudget"]
