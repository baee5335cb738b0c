"""Rollouts -> rewards and accuracy tensors (via the reward runtime), plus the per-step reward/verifier metrics.

Two numbers per completion, kept apart on purpose:
- ``reward``: the weighted sum of the sample's verifier scores (``rlvr.rewards.runtime``), plus DAPO's soft overlong
  penalty when ``algo.overlong == "penalty"``. This is what advantages are computed from. NaN = no trusted
  reward (no verifier applied, or one broke): advantage 0, excluded from its group's statistics.
- ``accuracy``: the score of the sample's *primary* verifier (its first spec with a non-zero weight), i.e. "is
  the answer right", without format bonuses or length penalties. Dynamic sampling judges groups by it (DAPO
  2503.14476) and it is what ``accuracy`` in metrics.jsonl means. NaN when that verifier broke or did not apply.

``score`` is the one path from (samples, rollouts) to those numbers: GRPO (``score_round``: plus the overlong
penalty), ``rlvr eval`` and the in-training sweeps (``rlvr.eval.budget_sweep``), the greedy held-out eval
(``rlvr.eval.heldout``) and distill all call it, so every one of them runs the verifiers in the reward runtime's
pool (hard timeouts; a broken verifier is an ``error``, never a silent 0) and agrees on which verifier is primary
(``primary_spec``, the only place that decides it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from rlvr.algo.filtering import overlong_penalty
from rlvr.rewards.runtime import VerifierSpec, parse_spec
from rlvr.rollout.types import Rollout
from rlvr.tasks.base import Sample
from rlvr.verifiers.base import VerifyResult


@dataclass
class ScoredRound:
    """One round of rollouts (B prompts x G completions, prompt-major) and their scores."""

    samples: list[Sample]  # [B]
    rollouts: list[Rollout]  # [N = B*G]
    rewards: torch.Tensor  # [N] float, NaN = no trusted reward (score_round: includes the overlong penalty)
    accuracy: torch.Tensor  # [N] float in [0, 1], NaN = primary verifier broke / did not apply
    results: list[dict[str, VerifyResult]]  # [N] verifier key -> result
    metrics: dict[str, float]  # the runtime's verifier/<key>/... metrics for this round

    def primary(self) -> list[VerifyResult | None]:
        """[N] each completion's result from its sample's primary verifier (None: the sample has none)."""
        group = len(self.rollouts) // max(len(self.samples), 1)
        return [res.get(primary_key(self.samples[i // group]) or "") for i, res in enumerate(self.results)]


def primary_spec(sample: Sample) -> VerifierSpec | None:
    """The verifier that says whether the answer is right: the sample's first spec with a non-zero weight."""
    for spec in sample.verifiers:
        parsed = parse_spec(spec)
        if parsed.weight != 0:
            return parsed
    return None


def primary_key(sample: Sample) -> str | None:
    spec = primary_spec(sample)
    return None if spec is None else spec.key


def score(runtime: Any, samples: Sequence[Sample], rollouts: Sequence[Rollout], group_size: int) -> ScoredRound:
    """Score ``rollouts`` (prompt-major: rollout i answers ``samples[i // group_size]``) with each sample's verifier
    specs in ``runtime``; rewards are the runtime's weighted sums (no shaping)."""
    rows = [samples[i // group_size] for i in range(len(rollouts))]  # [N] prompt-major: row i is prompt i // G
    batch = runtime.score([r.text for r in rollouts], [s.answer for s in rows], [list(s.verifiers) for s in rows],
                          metas=[dict(s.meta) for s in rows])
    rewards = torch.tensor([math.nan if r is None else r for r in batch.rewards], dtype=torch.float32)  # [N]
    accuracy = []
    for sample, res in zip(rows, batch.results):
        r = res.get(primary_key(sample) or "")
        accuracy.append(math.nan if r is None or r.error is not None or r.score is None else float(r.score))
    return ScoredRound(list(samples), list(rollouts), rewards, torch.tensor(accuracy, dtype=torch.float32),  # [N]
                       batch.results, batch.metrics)


def score_round(runtime: Any, samples: Sequence[Sample], rollouts: Sequence[Rollout], group_size: int, algo: Any,
                max_new_tokens: int) -> ScoredRound:
    """GRPO's scoring: ``score`` plus DAPO's soft overlong penalty on the reward when ``algo.overlong == "penalty"``."""
    scored = score(runtime, samples, rollouts, group_size)
    if algo.overlong == "penalty":
        lengths = torch.tensor([r.num_tokens for r in rollouts])  # [N]
        scored.rewards = scored.rewards + overlong_penalty(lengths, max_new_tokens, algo.overlong_buffer)  # NaN stays
    return scored


def nan_stats(x: torch.Tensor) -> tuple[float, float]:
    """(mean, population std) over the non-NaN entries; NaN when there are none."""
    x = x[~x.isnan()]
    if not x.numel():
        return math.nan, math.nan
    return x.mean().item(), x.std(unbiased=False).item()


def verifier_metrics(rounds: Sequence[ScoredRound]) -> dict[str, float]:
    """The runtime's and each verifier's metrics (``verifier/*``) and the per-task ones (``task/*``) over every
    completion sampled this step (all rounds). Reward and accuracy statistics are the whole batch's, computed once
    in ``rlvr.train.step_metrics`` (for one rank or many), so they are not repeated here."""
    out: dict[str, float] = {}
    # Runtime metrics are rates/means per round: combine them weighted by the round's rows (timeouts: counts).
    total = sum(len(r.rollouts) for r in rounds)
    for r in rounds:
        for key, value in r.metrics.items():
            if key == "reward/none_rate" or value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            weight = 1.0 if key.endswith("/timeouts") else len(r.rollouts) / total
            out[key] = out.get(key, 0.0) + weight * value
    # Each verifier's own score spread (per key) over all rows where it applied.
    keys = sorted({k for r in rounds for res in r.results for k in res})
    for key in keys:
        scores = torch.tensor([math.nan if (v := res.get(key)) is None or v.error is not None or v.score is None
                               else float(v.score) for r in rounds for res in r.results])
        out[f"verifier/{key}/mean"], out[f"verifier/{key}/std"] = nan_stats(scores)
    return out | task_metrics(rounds)


def task_metrics(rounds: Sequence[ScoredRound]) -> dict[str, float]:
    """Per-task ``task/<name>/accuracy|reward|frac`` for rows whose sample names its task (``meta["task"]``, set by
    the ``mix`` task), over every completion of the step; empty when no row names one. ``frac`` is the task's share
    of the step's completions (the mix weights, up to sampling noise)."""
    names, accuracy, rewards = [], [], []
    for r in rounds:
        group = len(r.rollouts) // max(len(r.samples), 1)
        names += [r.samples[i // group].meta.get("task") for i in range(len(r.rollouts))]  # [N] row -> task
        accuracy.append(r.accuracy)
        rewards.append(r.rewards)
    if not any(isinstance(n, str) for n in names):
        return {}
    accuracy_all, rewards_all = torch.cat(accuracy), torch.cat(rewards)  # [sum N]
    out: dict[str, float] = {}
    for name in sorted({n for n in names if isinstance(n, str)}):
        rows = torch.tensor([n == name for n in names])  # [sum N] bool
        out[f"task/{name}/accuracy"], _ = nan_stats(accuracy_all[rows])
        out[f"task/{name}/reward"], _ = nan_stats(rewards_all[rows])
        out[f"task/{name}/frac"] = rows.float().mean().item()
    return out


def sample_rows(step: int, scored: ScoredRound, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` completions of a round as samples.jsonl rows."""
    group_size = len(scored.rollouts) // max(len(scored.samples), 1)
    rows = []
    for i, r in enumerate(scored.rollouts[:limit]):
        sample = scored.samples[i // group_size]
        rows.append({
            "step": step, "sample_id": r.sample_id, "index": r.index, "prompt": sample.prompt[-1]["content"],
            "answer": sample.answer, "completion": r.text, "reward": _finite(scored.rewards[i].item()),
            "accuracy": _finite(scored.accuracy[i].item()), "tokens": r.num_tokens, "finish_reason": r.finish_reason,
            "scores": {k: v.score for k, v in scored.results[i].items()},
            "errors": {k: v.error for k, v in scored.results[i].items() if v.error},
        })
    return rows


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
