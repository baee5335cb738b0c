"""The optimizer-step machinery of ``rlvr grpo``: micro-batches, loss normalisers, frozen log-probs, gradient
clipping and the update statistics of one step.

Micro-batches of one optimizer step share the full batch's loss denominator (``num_loss_items``), so their
summed losses, and gradients, equal one big batch's; under DDP the denominator is the whole batch's over every
rank (see "Processes" in ``rlvr.train.grpo``).

Micro-batches are cut to their rows' lengths (``plan_chunks``): a batch is padded to its longest prompt and its
longest completion, and on a CPU every padded column costs as much as a real one. Whole groups (G rows sharing a
prompt, so ``rlvr.algo.logprobs`` still runs the prompt once) are sorted by completion length and split where
the padding saved outweighs one more forward/backward call; each chunk keeps only the columns its rows use. The
loss is the same: padding is masked out, and the normalisers are the full batch's (``num_loss_items``; Dr. GRPO's
constant is the generation budget, ``rlvr.train.grpo_steps.dr_grpo_norm_constant``, whatever a chunk's width).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# One more forward/backward call, in padded token slots it must save to pay for itself. Measured (SFT'd tiny model,
# 2 CPU threads, four 16 x 16 rollout batches at T 0.5, completions 25 tokens on average, 34 at most): forward +
# backward 1.07 s as one chunk; 0.81 s (2 chunks) at 1024, 0.77 s (3) at 256, 0.82 s (3) at 64, 0.91 s (6-7) at 0.
CHUNK_OVERHEAD_TOKENS = 256


@dataclass
class Chunk:
    """One micro-batch: batch rows and the column window they need."""

    rows: Any  # [n] long: batch rows, each group's rows consecutive and in batch order
    start: int  # first input column any of these rows uses (columns before it are left padding in all of them)
    width: int  # completion columns used (T_c <= T): every row's completion ends by then

    def inputs(self, x: Any, prompt_length: int) -> Any:
        """[N, L] -> [n, P - start + T_c] (input ids, attention mask)."""
        return x[self.rows, self.start:prompt_length + self.width]

    def completion(self, x: Any) -> Any:
        """[N] -> [n], or [N, T] -> [n, T_c] (masks, log-probs, per-token advantages)."""
        return x[self.rows] if x.dim() == 1 else x[self.rows, :self.width]


def plan_chunks(attention_mask: Any, prompt_length: int, group_size: int, max_rows: int,
                overhead: int = CHUNK_OVERHEAD_TOKENS) -> list[Chunk]:
    """Micro-batches of at most ``max_rows`` rows for a prompt-major batch, attention_mask [N, L] (left-padded
    prompts up to column P, right-padded completions), minimising padded token slots + ``overhead`` per chunk.

    Units are whole groups when G <= max_rows (sorted by longest completion, then cut optimally by dynamic
    programming over the sorted order); otherwise consecutive slices of ``max_rows`` rows in batch order. Either
    way each chunk is trimmed to the columns its rows use.
    """
    import torch

    n, p = attention_mask.shape[0], prompt_length
    real = attention_mask.bool()
    completion_len = real[:, p:].sum(dim=1)  # [N] real completion tokens (completions are right-padded)
    prompt_start = p - real[:, :p].sum(dim=1)  # [N] first real prompt column (prompts are left-padded)

    def chunk(rows: Any) -> Chunk:
        return Chunk(rows, int(prompt_start[rows].min()), max(int(completion_len[rows].max()), 1))

    if group_size > max_rows or n % group_size:
        return [chunk(torch.arange(i, min(i + max_rows, n))) for i in range(0, n, max_rows)]
    groups = torch.arange(n).view(-1, group_size)  # [B', G]
    width = completion_len.view(-1, group_size).amax(dim=1)  # [B'] longest completion per group
    span = p - prompt_start.view(-1, group_size).amin(dim=1)  # [B'] longest prompt per group
    order = sorted(range(groups.shape[0]), key=lambda i: (int(width[i]), int(span[i])))
    per_chunk = max_rows // group_size  # groups per chunk at most
    # best[j]: least cost of chunking the first j sorted groups. A chunk costs its padded completion slots (rows x
    # width) plus its prompt slots once per group (the prompt runs once per group, rlvr.algo.logprobs) + overhead.
    best, cut = [0.0] + [math.inf] * len(order), [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        for i in range(max(0, j - per_chunk), j):
            members = order[i:j]
            cost = best[i] + overhead + len(members) * (
                group_size * max(int(width[g]) for g in members) + max(int(span[g]) for g in members))
            if cost < best[j]:
                best[j], cut[j] = cost, i
    bounds, j = [], len(order)
    while j > 0:
        bounds.append((cut[j], j))
        j = cut[j]
    return [chunk(torch.cat([groups[g] for g in sorted(order[i:j])])) for i, j in reversed(bounds)]


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


def frozen_logprobs(model: Any, batch: Any, chunks: list[Chunk], temperature: float) -> Any:
    """[N, T] token log-probs of ``batch``'s completions under ``model``, no graph, one micro-batch at a time
    (0 past each chunk's width, where every row is padding)."""
    import torch

    from rlvr.algo.logprobs import token_logprobs

    p = batch.prompt_length
    out = torch.zeros(batch.completion_mask.shape, dtype=torch.float32, device=batch.input_ids.device)  # [N, T]
    with torch.no_grad():
        for c in chunks:
            out[c.rows, :c.width] = token_logprobs(model, c.inputs(batch.input_ids, p),
                                                   c.inputs(batch.attention_mask, p), p - c.start,
                                                   temperature).float()  # [n, T_c]
    return out


def clip_gradients(accelerator: Any, model: Any, max_norm: float) -> float:
    """Clip the global gradient norm to ``max_norm`` (0 = no clipping); returns the norm before clipping."""
    import torch

    from rlvr.train.sharding import is_sharded, to_float

    if max_norm > 0:  # under FSDP the norm of sharded gradients is a DTensor: to_float gathers it
        return to_float(accelerator.clip_grad_norm_(model.parameters(), max_norm))
    grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
    if grads and is_sharded(model):  # each rank holds shards: the norm over the whole gradient is a collective
        return to_float(torch.nn.utils.get_total_norm(grads))
    return float(torch.stack([g.norm() for g in grads]).norm()) if grads else 0.0


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
