"""The replica check of a multi-process ``rlvr grpo`` run (a collective: every rank calls it at the same point).

The whole-batch metrics are ``rlvr.train.step_metrics`` (one path for one process or many); the other rules live
in the step that they concern (see "Processes" in ``rlvr.train.grpo``).
"""

from __future__ import annotations

from typing import Any


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
