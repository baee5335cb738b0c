"""Group-relative advantages: rewards [B, G] -> advantages [B, G] (B prompts, G completions each).

    A_ij = (r_ij - baseline_i) / (scale + eps)

- baseline: the group mean (GRPO, DeepSeekMath 2402.03300), or with ``leave_one_out`` the mean of the other
  completions of the same prompt (RLOO, 2402.14740), which is independent of r_ij and so unbiased.
- scale: ``"group"`` the group's std (GRPO), ``"batch"`` one std for the whole batch, ``"none"`` 1 (Dr. GRPO
  2503.20783, which argues per-group std up-weights too-easy and too-hard prompts).

Choices where the papers are silent or differ:
- std is the population std (divide by n, not n-1): defined for any group size, and a 0/1 pair maps to +-1.
  TRL (``nanstd``) and verl (``torch.std``) use the n-1 std, giving +-0.71 there: rlvr's advantages are
  sqrt((n-1)/n) times theirs (see ``rlvr.algo.loss`` for what that means when copying their learning rates).
- ``"batch"`` scales by the std of the *centred* rewards over the informative groups (the RMS advantage), so
  between-prompt difficulty differences do not shrink the advantages, and the scale does not depend on how
  many zero-variance groups the batch happened to contain. Lite PPO (Liu et al. 2025, "Tricks or Traps?")
  uses the std of raw rewards.
- A zero-variance group (every valid reward equal, or fewer than two valid rewards) has no learning signal:
  its advantages are exactly 0 regardless of ``eps`` (dividing a float-noise difference by eps would turn
  rounding into a huge advantage).
- ``negative_weight`` (lambda) scales the advantages below 0 after centring and scaling, so failed completions
  are pushed down lambda times as hard as successful ones are pulled up (W-REINFORCE, Zhu et al. 2025, "The
  Surprising Effectiveness of Negative Reinforcement in LLM Reasoning", 2506.01347, lambda = 0.1). lambda = 0 is
  positive-sample reinforcement alone (rejection-sampling fine-tuning on-policy); 1 is plain GRPO.
- NaN reward = "no trusted reward" (no applicable verifier, or the verifier broke; see rlvr.rewards.runtime): the
  completion gets advantage 0 and is left out of its group's mean and std and out of the batch std, so an
  unscorable completion neither helps nor hurts its siblings.
"""

from __future__ import annotations

import torch


def _check(rewards: torch.Tensor) -> torch.Tensor:
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [B, G], got shape {tuple(rewards.shape)}")
    return rewards.float() if not rewards.is_floating_point() else rewards


def informative_groups(rewards: torch.Tensor) -> torch.Tensor:
    """[B] bool: the group has at least two valid (non-NaN) rewards and they are not all equal."""
    rewards = _check(rewards)
    valid = ~rewards.isnan()  # [B, G]
    hi = rewards.masked_fill(~valid, float("-inf")).amax(dim=1)  # [B]
    lo = rewards.masked_fill(~valid, float("inf")).amin(dim=1)  # [B]
    return (valid.sum(dim=1) >= 2) & (hi > lo)


def zero_variance_fraction(rewards: torch.Tensor) -> float:
    """Share of groups with no reward variance (all equal, or < 2 valid rewards): they contribute no gradient."""
    return 1.0 - informative_groups(rewards).float().mean().item()


def compute_advantages(rewards: torch.Tensor, std_scaling: str = "group", leave_one_out: bool = False,
                       eps: float = 1e-6, negative_weight: float = 1.0) -> torch.Tensor:
    """rewards [B, G] (NaN = no reward) -> advantages [B, G]; see the module docstring for every rule.

    Guarantees: finite output; 0 for NaN rewards and for zero-variance groups; with the group-mean baseline
    and ``negative_weight=1`` the valid advantages of each group sum to 0 (also true for leave-one-out).
    """
    if std_scaling not in ("group", "batch", "none"):
        raise ValueError(f"std_scaling={std_scaling!r}: use 'group', 'batch' or 'none'")
    rewards = _check(rewards)
    valid = ~rewards.isnan()  # [B, G]
    r = rewards.masked_fill(~valid, 0.0)  # [B, G] NaN -> 0 so sums ignore them
    n = valid.sum(dim=1, keepdim=True).to(r.dtype)  # [B, 1] valid completions per group
    total = r.sum(dim=1, keepdim=True)  # [B, 1]
    mean = total / n.clamp(min=1.0)  # [B, 1]
    if leave_one_out:
        baseline = (total - r) / (n - 1).clamp(min=1.0)  # [B, G] mean of the other valid completions
    else:
        baseline = mean  # [B, 1]
    centred = (r - baseline) * valid  # [B, G]
    keep = informative_groups(rewards).unsqueeze(1) & valid  # [B, G]

    if std_scaling == "group":
        var = (((r - mean) * valid) ** 2).sum(dim=1, keepdim=True) / n.clamp(min=1.0)  # [B, 1] population variance
        scale = var.sqrt()
    elif std_scaling == "batch":
        pool = centred[keep]  # [K] centred rewards of informative groups (their mean is 0)
        scale = pool.pow(2).mean().sqrt() if pool.numel() else torch.ones((), dtype=r.dtype, device=r.device)
    else:
        scale = torch.ones((), dtype=r.dtype, device=r.device)
    advantages = centred / (scale + eps)
    if negative_weight != 1.0:
        advantages = torch.where(advantages < 0, advantages * negative_weight, advantages)
    return torch.where(keep, advantages, torch.zeros_like(advantages))
