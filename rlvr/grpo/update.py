"""The optimizer-step machinery of ``rlvr grpo``: micro-batches, loss normalisers, frozen log-probs, gradient
clipping and the update statistics of one step.

Micro-batches of one optimizer step share the full batch's loss denominator (``num_loss_items``), so their
summed losses, and gradients, equal one big batch's; under DDP the denominator is the whole batch's over every
rank (see "Processes" in ``rlvr.grpo.trainer``).
"""

from __future__ import annotations

import math
from typing import Any


def micro_batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def num_loss_items(mask: Any, aggregation: str, accelerator: Any = None) -> float:
    """The full batch's loss denominator, so that micro-batch losses add up to the full-batch loss.

    With several processes the full batch is every rank's: DDP *averages* the ranks' gradients, so each rank
    divides by (items on all ranks) / world, and the average is the gradient of one token-mean (DAPO) or
    sequence-mean over the whole batch rather than a mean of per-rank means.
    """
    import torch

    if aggregation == "token":
        items = mask.sum().item()
    elif aggregation == "sequence":
        items = (mask.sum(dim=1) > 0).sum().item()
    else:
        items = mask.shape[0]  # constant: N sequences
    if accelerator is None or accelerator.num_processes == 1:
        return max(items, 1)
    total = accelerator.reduce(torch.tensor(float(items), dtype=torch.float64, device=accelerator.device), "sum")
    return max(total.item(), 1.0) / accelerator.num_processes


def frozen_logprobs(model: Any, batch: Any, chunks: list[slice], temperature: float) -> Any:
    """[N, T] token log-probs of ``batch``'s completions under ``model``, no graph, one micro-batch at a time."""
    import torch

    from rlvr.grpo.logprobs import token_logprobs

    with torch.no_grad():
        return torch.cat([token_logprobs(model, batch.input_ids[c], batch.attention_mask[c], batch.prompt_length,
                                         temperature) for c in chunks])  # n x [n_i, T] -> [N, T]


def clip_gradients(accelerator: Any, model: Any, max_norm: float) -> float:
    """Clip the global gradient norm to ``max_norm`` (0 = no clipping); returns the norm before clipping."""
    import torch

    if max_norm > 0:
        return float(accelerator.clip_grad_norm_(model.parameters(), max_norm))
    grads = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(grads).norm()) if grads else 0.0


class UpdateStats:
    """Combines ``policy_loss`` metrics over micro-batches and passes into one value per key.

    Loss terms are already normalised by the full batch (``num_items``), so micro-batches add up and passes are
    averaged; maxima stay maxima; every other metric is a token mean, weighted by the micro-batch's tokens.
    """

    ADDITIVE = ("loss", "loss/pg", "kl/ref", "tokens")

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.tokens = 0.0
        self.grad_norms: list[float] = []

    def add(self, metrics: dict[str, Any], tokens: float) -> None:
        self.tokens += tokens
        for key, value in metrics.items():
            value = float(value)
            if key in self.ADDITIVE:
                self.sums[key] = self.sums.get(key, 0.0) + value
            elif key.endswith("max") or key.endswith("max_abs"):
                self.sums[key] = max(self.sums.get(key, -math.inf), value)
            else:
                self.sums[key] = self.sums.get(key, 0.0) + value * tokens

    def add_pass(self, grad_norm: float) -> None:
        self.grad_norms.append(grad_norm)

    def combine_ranks(self, accelerator: Any) -> None:
        """Make the sums the whole batch's (a collective: every rank ran the same passes, so has the same keys).

        Token-weighted sums and ``tokens`` add up over ranks, maxima take the maximum, and the loss terms, each
        rank's share of the loss under the global normaliser (``num_loss_items``), average to the whole batch's
        loss. Grad norms are of the all-reduced gradient, the same on every rank.
        """
        import torch

        keys = sorted(self.sums)
        local = torch.tensor([[self.sums[k] for k in keys] + [self.tokens]], dtype=torch.float64,
                             device=accelerator.device)  # [1, K + 1]
        per_rank = accelerator.gather(local).cpu()  # [world, K + 1]
        for i, key in enumerate(keys):
            if key.endswith("max") or key.endswith("max_abs"):
                self.sums[key] = per_rank[:, i].max().item()
            elif key in self.ADDITIVE and key != "tokens":
                self.sums[key] = per_rank[:, i].mean().item()
            else:
                self.sums[key] = per_rank[:, i].sum().item()
        self.tokens = per_rank[:, -1].sum().item()

    def result(self) -> dict[str, float]:
        passes = max(len(self.grad_norms), 1)
        out = {}
        for key, value in self.sums.items():
            if key in self.ADDITIVE:
                out[key] = value / passes
            elif key.endswith("max") or key.endswith("max_abs"):
                out[key] = value
            else:
                out[key] = value / max(self.tokens, 1.0)
        out["grad_norm"] = sum(self.grad_norms) / passes
        return out
