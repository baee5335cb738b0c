"""Collectives of a multi-process ``rlvr grpo`` run: whole-batch metrics over every rank, replica fingerprints.

Both are collectives (every rank must call them at the same point); in one process they reduce to local work.
See "Processes" in ``rlvr.train.grpo`` for the rules they rely on.
"""

from __future__ import annotations

from typing import Any


def whole_batch_metrics(accelerator: Any, rounds: list, filter_keep: list, group_size: int,
                        step_seconds: float, rollout_seconds: float) -> dict[str, float]:
    """Reward, accuracy, group and completion statistics over every rank's completions of this step.

    A collective. Ranks sample the same number of rounds (see "Processes"), so their per-completion tables have
    one shape and gather into [world * rounds * B * G, 5], still prompt-major in groups of G.
    """
    import torch

    from rlvr.algo.advantages import zero_variance_fraction
    from rlvr.algo.filtering import dynamic_sampling_filter
    from rlvr.rewards.scoring import nan_stats

    rollouts = [r for s in rounds for r in s.rollouts]
    local = torch.stack([torch.cat([s.rewards for s in rounds]), torch.cat([s.accuracy for s in rounds]),
                         torch.tensor([float(r.num_tokens) for r in rollouts]),
                         torch.tensor([float(r.truncated) for r in rollouts]),
                         torch.tensor([float(r.thinking_tokens) for r in rollouts])], dim=1)  # 5 x [N] -> [N, 5]
    keep = torch.cat(filter_keep).float()  # [rounds * B]
    table, keep = accelerator.gather((local.to(accelerator.device), keep.to(accelerator.device)))
    rewards, accuracy, lengths, truncated, thinking = table.cpu().unbind(1)  # 5 x [world * N]
    _, groups = dynamic_sampling_filter(accuracy.view(-1, group_size))  # [world * N] -> [groups, G]
    out = {}
    out["reward/mean"], out["reward/std"] = nan_stats(rewards)
    out["reward/none_rate"] = rewards.isnan().float().mean().item()
    out["accuracy"], _ = nan_stats(accuracy)
    generated = lengths.sum().item()
    return out | {
        "groups/zero_std_frac": zero_variance_fraction(rewards.view(-1, group_size)),
        "groups/all_correct_frac": groups["filter/all_correct_frac"],
        "groups/all_wrong_frac": groups["filter/all_wrong_frac"],
        "filter/kept_frac": keep.mean().item(),
        "completion/length_mean": lengths.mean().item(),
        "completion/length_max": lengths.max().item(),
        "completion/truncated_frac": truncated.mean().item(),
        "completion/thinking_tokens_mean": thinking.mean().item(),
        "perf/tokens_per_s": generated / step_seconds,
        "perf/rollout_tokens_per_s": generated / max(rollout_seconds, 1e-9),
    }


def replica_fingerprints(accelerator: Any, model: Any) -> list[list[float]]:
    """Every rank's [sum, sum of squares] of its weights (float64), gathered; raises if the ranks' copies differ.

    A collective. DDP keeps replicas identical, so this is a cheap guard: a checkpoint of rank 0's weights must
    describe every rank. Identical weights give bit-identical sums (same operations in the same order).
    """
    import torch

    local = torch.zeros(2, dtype=torch.float64, device=accelerator.device)  # [2]
    with torch.no_grad():
        for p in model.parameters():
            q = p.detach().double()
            local += torch.stack([q.sum(), (q * q).sum()])
    per_rank = accelerator.gather(local[None]).cpu().tolist()  # [world, 2]
    if any(f != per_rank[0] for f in per_rank):
        raise RuntimeError(f"the processes' model weights differ (fingerprint per rank: {per_rank}): DDP did not "
                           "keep them in sync; a checkpoint of rank 0's weights would not describe this run")
    return per_rank
