"""Policy losses of the GRPO family over token log-probs: one function, knobs from ``AlgoConfig``.

Shapes: N completions (B*G rows), T padded completion length. ``mask`` [N, T] is 1 on tokens that train.
Per-token terms, with r_t = exp(logprob_t - old_logprob_t) and advantage A (per sequence, broadcast over T):

- ``clip`` (PPO / GRPO 2402.03300 / DAPO 2503.14476):  -min(r_t A, clip(r_t, 1 - eps_low, 1 + eps_high) A)
- ``gspo`` (2507.18071): the ratio is the sequence's geometric mean s = exp(mean_t log r_t), clipped per sequence.
  Written in the paper's GSPO-token form s_t = sg(s) * pi_t / sg(pi_t): every token carries the value s (so the
  clip decision is the sequence's) and the gradient s * grad log pi_t; with ``aggregation="sequence"`` this is
  exactly GSPO's objective and gradient, and it lets TIS weights and aggregation work per token like the others.
- ``cispo`` (MiniMax-M1 2506.13585):  -sg(clip(r_t, 1 - eps_low, 1 + eps_high)) * A * logprob_t. No min(): a
  token whose ratio left the range keeps its gradient, only with a bounded weight.

Then, per token: multiplied by the TIS weight min(exp(old - sampler), tis_cap) (stop-gradient; Yao et al. 2025)
when ``cfg.tis``, plus ``kl_beta * k3`` with k3 = exp(ref - logprob) - (ref - logprob) - 1 (GRPO's estimator of
KL(pi || pi_ref), unbiased and >= 0). The KL term is not TIS-weighted: it is a regulariser, not an estimate
under the sampler.

Aggregation to a scalar:
- ``token``: sum of token terms / number of tokens (DAPO) — every token weighs the same.
- ``sequence``: mean over each sequence's tokens, then mean over sequences that have any token (GRPO).
- ``constant``: sum / (N * C), C = ``norm_constant`` (the trainer passes ``grpo.max_new_tokens``
  unless set: Dr. GRPO 2503.20783's generation budget) or T when called without one — no length-dependent weights.
``num_items`` overrides the denominator (tokens / sequences / N) so micro-batches of one optimizer step can
be summed into the same value as one big batch.

Conventions of verl and TRL that rlvr does not follow (every loss and gradient agrees with verl's ``core_algos``
to ~1e-9 and with TRL 1.16's ``_compute_loss`` to ~1e-16 where the conventions coincide):
- verl's dual-clip (``clip_ratio_c = 3``: for A < 0 the clipped loss is capped at -3A, so a reused sample whose
  ratio exploded cannot dominate a step) is not applied: with one update per batch (our default) the ratio is 1
  and the cap never acts. With ``grpo.updates_per_batch > 1`` the clip range does NOT bound that case (for A < 0
  and r > 1 + clip_high the min() picks the unclipped r * A); only gradient clipping does. The two agree while
  no A < 0 token has r > 3.
- verl clamps the log-ratio inside its KL estimators (and the k3 value to [-10, 10]); here k3 is unclamped: it
  is finite for finite log-probs and >= 0, and a clamp would hide a policy that ran away from its reference.
- Group std is the population std (divide by G, rlvr.algo.advantages); TRL and verl use G - 1 (unbiased).
- ``aggregate`` accepts only 0/1 masks: a fractional weight would count in the denominator but not in the sum.

``old_logprobs=None`` means fully on-policy (one update per batch): old = logprobs.detach(), so r = 1 with the
policy gradient. Metrics are detached 0-dim tensors (``.item()`` them when logging, so a GPU is not synced per
micro-batch).
"""

from __future__ import annotations

from typing import Any

import torch

from rlvr.algo.logprobs import masked_mean


def _k3(log_ratio: torch.Tensor) -> torch.Tensor:
    """k3 estimator r - 1 - log r of KL(q || p) for samples from q, log r = log p - log q (Schulman 2020)."""
    return torch.exp(log_ratio) - 1.0 - log_ratio


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str, norm_constant: int | None = None,
              num_items: float | None = None) -> torch.Tensor:
    """Scalar from token terms [N, T] under ``mask`` [N, T]; see the module docstring for each ``mode``."""
    if ((mask != 0) & (mask != 1)).any():  # a weight would count in the denominator but not in the sum
        raise ValueError("aggregate: the mask must hold only 0/1 (got fractional weights); weight the per-token terms "
                         "instead of the mask")
    mask = mask.to(per_token.dtype)
    summed = torch.where(mask > 0, per_token, torch.zeros_like(per_token))  # [N, T]; where() also drops NaN/inf pads
    if mode == "token":
        denom = num_items if num_items is not None else mask.sum().clamp(min=1.0)
        return summed.sum() / denom
    if mode == "sequence":
        lengths = mask.sum(dim=1)  # [N]
        per_seq = summed.sum(dim=1) / lengths.clamp(min=1.0)  # [N]
        denom = num_items if num_items is not None else (lengths > 0).sum().clamp(min=1)
        return per_seq.sum() / denom
    if mode == "constant":
        c = norm_constant if norm_constant is not None else per_token.shape[1]
        n = num_items if num_items is not None else per_token.shape[0]
        return summed.sum() / (n * c)
    raise ValueError(f"aggregation={mode!r}: use 'token', 'sequence' or 'constant'")


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor | None, sampler_logprobs: torch.Tensor | None,
                advantages: torch.Tensor, mask: torch.Tensor, cfg: Any, *, ref_logprobs: torch.Tensor | None = None,
                num_items: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(scalar loss to minimise, metrics) for one batch of completions.

    logprobs [N, T] (with grad), old_logprobs [N, T] | None, sampler_logprobs [N, T] | None (needed when
    cfg.tis), advantages [N] (or [N, T] per token), mask [N, T], ref_logprobs [N, T] (needed when
    cfg.kl_beta > 0). ``cfg`` is an AlgoConfig (or anything with its fields).
    """
    n, t = logprobs.shape
    for name, x in (("old_logprobs", old_logprobs), ("sampler_logprobs", sampler_logprobs), ("mask", mask),
                    ("ref_logprobs", ref_logprobs)):
        if x is not None and x.shape != (n, t):
            raise ValueError(f"{name} has shape {tuple(x.shape)}, logprobs has {(n, t)}")
    if advantages.shape not in ((n,), (n, t)):
        raise ValueError(f"advantages must be [N] or [N, T] = [{n}] or [{n}, {t}], got {tuple(advantages.shape)}")
    if cfg.tis and sampler_logprobs is None:
        raise ValueError("cfg.tis needs sampler_logprobs (the rollout engine's logprobs)")
    if cfg.kl_beta > 0 and ref_logprobs is None:
        raise ValueError(f"cfg.kl_beta={cfg.kl_beta} needs ref_logprobs from the reference model")

    on = mask > 0  # [N, T] bool
    zeros = torch.zeros_like(logprobs)
    # Padding may hold anything (-inf, NaN); replace it by 0 before any arithmetic so neither the loss nor the
    # gradient (where() routes a zero gradient to the dropped branch) can see it.
    logprobs = torch.where(on, logprobs, zeros)  # [N, T]
    old = logprobs.detach() if old_logprobs is None else torch.where(on, old_logprobs.detach(), zeros)
    adv = advantages.to(logprobs.dtype)
    adv = adv.unsqueeze(1) if adv.dim() == 1 else adv  # [N] -> [N, 1] broadcast over tokens
    log_ratio = logprobs - old  # [N, T], 0 on padding
    low, high = 1.0 - cfg.clip_low, 1.0 + cfg.clip_high

    if cfg.loss == "clip":
        ratio = torch.exp(log_ratio)  # [N, T]
        pg = -torch.minimum(ratio * adv, ratio.clamp(low, high) * adv)
        # clipped = the min() picked the constant branch, so the token gets no gradient
        clipped_low, clipped_high = (ratio < low) & (adv < 0), (ratio > high) & (adv > 0)
    elif cfg.loss == "gspo":
        lengths = mask.to(logprobs.dtype).sum(dim=1).clamp(min=1.0)  # [N]
        seq_log_ratio = log_ratio.sum(dim=1) / lengths  # [N] log of the geometric-mean ratio (padding is 0)
        # [N] -> [N, 1] + [N, T]: value exp(seq_log_ratio) on every token, gradient s * grad log pi_t
        ratio = torch.exp(seq_log_ratio.detach().unsqueeze(1) + logprobs - logprobs.detach())
        ratio = torch.where(on, ratio, torch.ones_like(ratio))
        pg = -torch.minimum(ratio * adv, ratio.clamp(low, high) * adv)
        clipped_low, clipped_high = (ratio < low) & (adv < 0), (ratio > high) & (adv > 0)
    elif cfg.loss == "cispo":
        ratio = torch.exp(log_ratio)  # [N, T]
        weight = ratio.clamp(low, high).detach()
        pg = -weight * adv * logprobs
        # here "clipped" = weight truncated; the token still trains
        clipped_low, clipped_high = ratio < low, ratio > high
    else:
        raise ValueError(f"loss={cfg.loss!r}: use 'clip', 'gspo' or 'cispo'")

    metrics: dict[str, torch.Tensor] = {}
    if sampler_logprobs is not None:
        # old (trainer, behaviour weights) vs sampler (engine): same weights, different numerics
        mismatch = old - torch.where(on, sampler_logprobs.detach(), zeros)  # [N, T], 0 on padding
        tis_weight = torch.exp(mismatch).clamp(max=cfg.tis_cap)  # [N, T]
        if cfg.tis:
            pg = pg * tis_weight
        with torch.no_grad():
            metrics["mismatch/k3"] = masked_mean(_k3(mismatch), mask)  # KL(sampler || trainer) estimate
            metrics["mismatch/max_abs"] = (mismatch.abs() * on).amax() if on.any() else zeros.sum()
            metrics["tis/weight_mean"] = masked_mean(tis_weight, mask)
            metrics["tis/capped_frac"] = masked_mean((torch.exp(mismatch) > cfg.tis_cap).float(), mask)

    pg_loss = aggregate(pg, mask, cfg.aggregation, cfg.norm_constant, num_items)
    loss = pg_loss
    if cfg.kl_beta > 0:
        ref_log_ratio = torch.where(on, ref_logprobs.detach(), zeros) - logprobs  # [N, T] log pi_ref - log pi
        kl = _k3(ref_log_ratio)  # [N, T]
        kl_loss = aggregate(kl, mask, cfg.aggregation, cfg.norm_constant, num_items)
        loss = pg_loss + cfg.kl_beta * kl_loss
        metrics["kl/ref"] = kl_loss.detach()

    with torch.no_grad():
        fmask = mask.to(logprobs.dtype)
        metrics["loss/pg"] = pg_loss.detach()
        metrics["ratio/mean"] = masked_mean(ratio.detach(), fmask)
        metrics["ratio/max"] = (ratio.detach() * on).amax() if on.any() else zeros.sum()
        metrics["clip/low_frac"] = masked_mean(clipped_low.float(), fmask)
        metrics["clip/high_frac"] = masked_mean(clipped_high.float(), fmask)
        metrics["clip/frac"] = metrics["clip/low_frac"] + metrics["clip/high_frac"]
        metrics["approx_kl"] = masked_mean(_k3(log_ratio.detach()), fmask)  # KL(old || new), k3
        metrics["tokens"] = fmask.sum()
    return loss, metrics
