"""One evaluation cell: n completions per problem from a rollout engine at one setting, scored on the one path.

Every evaluation is built from this cell: the budget sweep (``rlvr eval``, the pipeline's eval stage, the
in-training sweep: one cell per split x budget) and the greedy held-out eval (one cell per split: no cap, n=1,
temperature 0). Scoring is ``rlvr.rewards.scoring.score``, the same as GRPO's: the sample's verifiers in the reward
runtime's pool, with hard timeouts.
"""

from __future__ import annotations

from typing import Any, Sequence

from rlvr.rewards.scoring import ScoredRound, score
from rlvr.rollout.base import SamplingParams
from rlvr.rollout.budget import ThinkingBudget
from rlvr.tasks.base import Sample


def sampling_params(budget: int | None, *, temperature: float, top_p: float, max_new_tokens: int,
                    answer_tokens: int, seed: int | None) -> SamplingParams:
    """SamplingParams for one budget; ``None`` = no thinking cap (only max_new_tokens caps the completion)."""
    return SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
                          budget=None if budget is None else ThinkingBudget(thinking=budget, answer=answer_tokens))


def sample_and_score(engine: Any, samples: Sequence[Sample], runtime: Any, n: int, params: SamplingParams,
                     asked: Sequence[Sample] | None = None) -> ScoredRound:
    """``n`` completions of each sample (prompt-major [P*n]), scored against ``samples``. ``asked``: the prompts
    as the model sees them when they differ from ``samples`` (a budget stated in the prompt)."""
    rollouts = engine.generate(list(asked if asked is not None else samples), n=n, params=params)  # [P*n]
    return score(runtime, samples, rollouts, n)
