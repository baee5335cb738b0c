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

``mask`` entries are token weights: ``aggregate`` puts the same weight on a token in the sum and in the
denominator (an entry <= 0 counts as 0 in both), so a fractional mask gives a weighted mean; the GSPO sequence
ratio and the metrics weight tokens the same way. The trainer passes 0/1 masks, for which every result is the
plain masked one bit for bit (w * x is x for w = 1).

Conventions of verl (``core_algos``) and TRL (``GRPOTrainer._compute_loss``) that rlvr does not follow. Where
none of them is triggered, every loss and gradient agrees with verl to ~1e-9 and with TRL 1.16 to ~1e-16 on
random inputs:
- verl's dual-clip (Ye et al. 2020, ``clip_ratio_c = 3``): for A < 0 verl caps the token loss at -3A, so a
  token whose ratio grew past 3 stops contributing gradient. PPO's clip alone does not bound that case (for
  A < 0 and r > 1 + eps the min() picks the unclipped r * A). rlvr keeps the papers' objective (PPO, GRPO, DAPO,
  GSPO and CISPO define none): ratios only leave 1 when a batch is reused (``grpo.updates_per_batch > 1``;
  the default of 1 gives r = 1 exactly, where the cap cannot act), and a token the policy now strongly prefers
  although A < 0 is the one that most needs pushing down; gradient clipping bounds the step. The two agree
  whenever no A < 0 token has r > 3.
- verl's clamps: it clamps log r to [-20, 20] before exp() in the policy loss, and in its k3 KL
  (``kl_penalty="low_var_kl"``) clamps log(pi_ref / pi) to [-20, 20] and the k3 value to [-10, 10]. rlvr
  computes both unclamped: k3 is finite for finite log-probs and >= 0, while a clamp zeroes the gradient exactly
  on the tokens that drifted furthest from the reference and makes a policy that ran away look calm in
  ``kl/ref`` (it saturates at 10). Identical while |log r| < 20 and k3 < 10. TRL's k3 has no clamp, like rlvr.
- Group std (``rlvr.algo.advantages``): rlvr divides by n (population std); verl (``torch.std``) and TRL
  (``nanstd``) divide by n - 1, so rlvr's advantages are sqrt((G - 1) / G) times theirs (0.71 at G = 2, 0.94 at
  G = 8). rlvr's std is defined for every group size (verl special-cases a group of one as mean 0, std 1) and
  maps a 0/1 pair to +-1; the factor is a constant per G that the learning rate absorbs, but a learning rate
  copied from verl or TRL is off by it at small G. The loss itself is independent of this choice.
- TRL's ``cispo`` truncates the weight from above only, min(r, eps_high); rlvr clips both sides, and the
  ``cispo`` preset's ``clip_low = 1`` puts the floor at 0, which is the same thing. TRL's optional two-sided
  clip (``delta``) is not implemented.

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


def _nonzero(x: torch.Tensor) -> torch.Tensor:
    """``x`` with zeros replaced by 1: an empty mask divides 0 by 1 (a weight sum may be < 1, so no clamp)."""
    return torch.where(x > 0, x, torch.ones_like(x))


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str, norm_constant: int | None = None,
              num_items: float | None = None) -> torch.Tensor:
    """Scalar from token terms [N, T] under ``mask`` [N, T]; see the module docstring for each ``mode``.

    ``mask`` entries are token weights, the same in the sum and in the denominator (entries <= 0 count as 0), so
    a fractional mask gives a weighted mean, not a sum of unweighted terms over a weighted count.
    """
    on = mask > 0  # [N, T] bool
    weight = torch.where(on, mask.to(per_token.dtype), torch.zeros_like(per_token))  # [N, T]
    # where(), not a product, drops the pads: they may hold NaN/inf, and 0 * inf is NaN
    summed = torch.where(on, per_token * weight, torch.zeros_like(per_token))  # [N, T]
    if mode == "token":
        denom = num_items if num_items is not None else _nonzero(weight.sum())
        return summed.sum() / denom
    if mode == "sequence":
        lengths = weight.sum(dim=1)  # [N] total weight of each sequence
        per_seq = summed.sum(dim=1) / _nonzero(lengths)  # [N]
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
        weight = torch.where(on, mask.to(logprobs.dtype), zeros)  # [N, T] token weights, 0 on padding
        # [N] log of the (weighted) geometric-mean ratio; padding is 0 in both factors
        seq_log_ratio = (log_ratio * weight).sum(dim=1) / _nonzero(weight.sum(dim=1))
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
