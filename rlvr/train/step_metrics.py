"""One step's metrics row, computed once from the whole batch, whatever the number of processes.

Each rank puts the numbers of its completions and prompts into two small tables; with several processes they are
gathered (one collective: ranks sample the same number of rounds, so the tables have one shape) and every
statistic is computed from the gathered tables, exactly as one process computes it from its own. What is not in
the tables is this rank's alone (rank 0's in metrics.jsonl): ``verifier/*`` and ``task/*``
(``rlvr.rewards.scoring.verifier_metrics``). See "Processes" in ``rlvr.train.grpo``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rlvr.train.rollout_source import StepBatch

# per-completion columns of the gathered table, and per-prompt ones
COMPLETION_COLUMNS = ("reward", "accuracy", "tokens", "truncated", "thinking_tokens", "budget_forced")
PROMPT_COLUMNS = ("kept", "budget")  # budget: NaN = no cap


def batch_tables(batch: StepBatch, accelerator: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(completions [world * R*B*G, 6], prompts [world * R*B, 2]) float32 tables of the step (columns as
    ``COMPLETION_COLUMNS``, ``PROMPT_COLUMNS``), rank-major and prompt-major within a rank; a collective under
    several processes."""
    rollouts = batch.rollouts  # [R*B*G]
    completions = torch.stack([
        torch.cat([s.rewards for s in batch.rounds]), torch.cat([s.accuracy for s in batch.rounds]),
        torch.tensor([float(r.num_tokens) for r in rollouts]), torch.tensor([float(r.truncated) for r in rollouts]),
        torch.tensor([float(r.thinking_tokens) for r in rollouts]),
        torch.tensor([float(r.budget_forced) for r in rollouts])], dim=1)  # 6 x [R*B*G] -> [R*B*G, 6]
    prompts = torch.stack([batch.keep.float(), torch.tensor([math.nan if b is None else float(b)
                                                             for b in batch.budgets])], dim=1)  # [R*B, 2]
    if accelerator is not None and accelerator.num_processes > 1:
        completions, prompts = accelerator.gather((completions.to(accelerator.device),
                                                   prompts.to(accelerator.device)))
    return completions.cpu(), prompts.cpu()


def batch_metrics(batch: StepBatch, accelerator: Any = None, *, budgets: bool = False) -> dict[str, float]:
    """Reward, accuracy, group, filter and completion statistics over every completion sampled this step on
    every rank (all dynamic-sampling rounds), ``batch/*``, and ``budget/*`` when ``budgets`` (training budgets
    are on). A collective under several processes."""
    from rlvr.algo.advantages import zero_variance_fraction
    from rlvr.algo.filtering import dynamic_sampling_filter
    from rlvr.rewards.scoring import nan_stats

    completions, prompts = batch_tables(batch, accelerator)
    rewards, accuracy, lengths, truncated, thinking, forced = completions.unbind(1)  # 6 x [n]
    kept, prompt_budgets = prompts.unbind(1)  # 2 x [p]
    G = batch.group_size
    _, groups = dynamic_sampling_filter(accuracy.view(-1, G))  # [n] -> [groups, G]: how every group turned out
    out: dict[str, float] = {}
    out["reward/mean"], out["reward/std"] = nan_stats(rewards)
    out["reward/none_rate"] = rewards.isnan().float().mean().item()
    out["accuracy"], _ = nan_stats(accuracy)
    out |= {
        "groups/zero_std_frac": zero_variance_fraction(rewards.view(-1, G)),  # [n] -> [groups, G]
        "groups/all_correct_frac": groups["filter/all_correct_frac"],
        "groups/all_wrong_frac": groups["filter/all_wrong_frac"],
        "filter/kept_frac": kept.mean().item(),
        "completion/length_mean": lengths.mean().item(),
        "completion/length_max": lengths.max().item(),
        "completion/truncated_frac": truncated.mean().item(),
        "completion/thinking_tokens_mean": thinking.mean().item(),
        "batch/groups": batch.batch_groups,
        "batch/rounds": len(batch.rounds),
        "tokens/generated": lengths.sum().item(),
    }
    if budgets:
        capped = prompt_budgets[~prompt_budgets.isnan()]  # [capped prompts]
        out["budget/thinking_mean"] = capped.mean().item() if capped.numel() else math.nan
        out["budget/forced_frac"] = forced.mean().item()
    return out


def step_row(batch: StepBatch, update_metrics: dict[str, float], accelerator: Any, *, budgets: bool, lr: float,
             position: int, step_seconds: float, rollout_seconds: float) -> dict[str, float]:
    """The step's metrics row before eval and timings: this rank's verifier/task metrics, the whole batch's
    statistics, the update's metrics, LR, data position and throughput."""
    from rlvr.rewards.scoring import verifier_metrics

    whole = batch_metrics(batch, accelerator, budgets=budgets)
    generated = whole.pop("tokens/generated")
    return verifier_metrics(batch.rounds) | whole | update_metrics | {
        "lr": lr,
        "perf/tokens_per_s": generated / step_seconds,
        "perf/rollout_tokens_per_s": generated / max(rollout_seconds, 1e-9),
        "data/position": position,
    }


def step_samples(step: int, batch: StepBatch, limit: int, accelerator: Any, *, budgets: bool) -> list[dict]:
    """samples.jsonl rows: the first ``limit`` completions of the step's first round; under several processes
    every rank's, each with a ``rank`` field (a collective)."""
    from rlvr.rewards.scoring import sample_rows
    from rlvr.train.budgets import TrainBudgets

    first = batch.rounds[0]
    rows = sample_rows(step, first, limit)
    if budgets:
        TrainBudgets.annotate(rows, first.rollouts, batch.budgets[:len(first.samples)], batch.group_size)
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        rows = [r | {"rank": k} for k, rows_k in enumerate(gather_object([rows])) for r in rows_k]
    return rows
