"""Which samples train: DAPO dynamic sampling (drop groups with no signal) and overlong handling.

Dynamic sampling (DAPO 2503.14476) judges a group by verifier *accuracy* [B, G], not by the shaped reward:
a group where every completion is right (or every one wrong) has zero advantage and gives no gradient, even
if a format bonus or length penalty makes its shaped rewards differ. A group is kept when its valid (non-NaN)
accuracies are not all equal — for 0/1 accuracy, exactly DAPO's 0 < #correct < G; for partial credit (e.g. a
share of unit tests passed) any spread counts. Groups with fewer than two valid accuracies are dropped.
Refilling the batch with fresh prompts is the trainer's loop (``AlgoConfig.max_sampling_rounds``).

Overlong handling for completions that hit ``max_new_tokens`` (their answer was cut off, so a 0 reward says
"too long", not "wrong"):
- ``overlong_mask``: drop truncated completions from the loss (DAPO's overlong filtering);
- ``overlong_penalty``: DAPO's soft overlong punishment, added to the reward:
      0                              if L <= L_max - L_cache
      ((L_max - L_cache) - L) / L_cache   if L_max - L_cache < L <= L_max    (falls linearly from 0 to -1)
      -1                             if L > L_max
  with L_max = max_new_tokens (the engine never returns more, so a truncated completion gets exactly -1).
"""

from __future__ import annotations

import torch


def dynamic_sampling_filter(accuracy: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """accuracy [B, G] (NaN = unscored) -> (keep [B] bool, stats).

    stats: ``filter/kept_frac``, ``filter/all_correct_frac`` (every valid accuracy >= 1), ``filter/all_wrong_frac``
    (every valid accuracy <= 0), ``filter/unscored_frac`` (fewer than two valid accuracies).
    """
    if accuracy.dim() != 2:
        raise ValueError(f"accuracy must be [B, G], got shape {tuple(accuracy.shape)}")
    acc = accuracy.float()
    valid = ~acc.isnan()  # [B, G]
    hi = acc.masked_fill(~valid, float("-inf")).amax(dim=1)  # [B]
    lo = acc.masked_fill(~valid, float("inf")).amin(dim=1)  # [B]
    enough = valid.sum(dim=1) >= 2  # [B]
    keep = enough & (hi > lo)
    b = max(acc.shape[0], 1)
    stats = {
        "filter/kept_frac": keep.sum().item() / b,
        "filter/all_correct_frac": (enough & (lo >= 1)).sum().item() / b,
        "filter/all_wrong_frac": (enough & (hi <= 0)).sum().item() / b,
        "filter/unscored_frac": (~enough).sum().item() / b,
    }
    return keep, stats


def overlong_mask(mask: torch.Tensor, truncated: torch.Tensor) -> torch.Tensor:
    """mask [N, T] with the rows of truncated completions (truncated [N] bool) zeroed (DAPO overlong filtering)."""
    if truncated.shape != mask.shape[:1]:
        raise ValueError(f"truncated has shape {tuple(truncated.shape)}, expected [{mask.shape[0]}]")
    keep = (~truncated.bool()).to(mask.dtype).unsqueeze(1)  # [N] -> [N, 1]
    return mask * keep


def overlong_penalty(lengths: torch.Tensor, max_new_tokens: int, buffer: int | None = None) -> torch.Tensor:
    """[N] soft overlong penalty in [-1, 0] for completion lengths [N] (DAPO eq. 13).

    ``buffer`` = L_cache in tokens; None = 20% of max_new_tokens (DAPO: 4096 of 20480), at least 1.
    """
    if buffer is None:
        buffer = max(1, round(0.2 * max_new_tokens))
    if not 0 < buffer <= max_new_tokens:
        raise ValueError(f"overlong buffer={buffer} must be in 1..max_new_tokens={max_new_tokens}")
    free = max_new_tokens - buffer  # lengths up to here are never penalised
    lengths = lengths.float()
    ramp = (free - lengths) / buffer  # [N] 0 at `free`, -1 at max_new_tokens
    return ramp.clamp(min=-1.0, max=0.0)
