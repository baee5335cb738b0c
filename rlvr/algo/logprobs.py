"""Teacher-forced per-token log-probs (and entropy) of completion tokens: the trainer's side of the ratio.

``token_logprobs(..., temperature=tau)`` returns ``log softmax(z_t / tau)[y_t]``, the same quantity the rollout
engines report (see ``rlvr.rollout.hf``), so ``logprobs - sampler_logprobs`` measures only the
trainer/sampler mismatch. Dividing by the sampling temperature (verl's convention) makes the ratio refer to
the distribution that actually produced the tokens; with tau = 1 it is the raw policy.

Position ids are rebuilt from the attention mask (cumsum - 1) because prompts are left-padded: a plain forward
would number the pad columns and shift every real position, and the logprobs would no longer match the ones
``generate`` (which does the same cumsum) sampled with.

Shared prompts: a GRPO batch is prompt-major, G completions per prompt, so the same prompt sits in G rows. When
consecutive rows repeat a prompt, the prompt columns go through the model once per distinct prompt: the group's
first row runs whole, its prompt KV cache (with the autograd graph, so gradients through the prompt positions
still flow, summed over the rows that use them) is copied to the group's other rows, and a second forward runs
their completion columns against it. The arithmetic per row is the full forward's, with attention over the same
L keys, so the logits are the full forward's (bit-identical on CPU in the tests) and so are the gradients up to
summation order; the work saved is (G-1)/G of the prompt columns. Used for a plain ``nn.Module`` whose forward
takes ``past_key_values`` and returns a cache that can select rows (``DynamicCache``); a DDP/FSDP wrapper (two
forwards per backward would upset its gradient hooks), gradient checkpointing (no cache in training) or anything
else takes the single full forward. ``share_prompts=False`` forces the full forward.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch


def _keeps_logits(model: Any) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def _shared_prompt_rows(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        completion_start: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(first row of each distinct prompt [U], prompt index of each row [N]) when sharing applies, else None."""
    n = input_ids.shape[0]
    if n < 2 or getattr(model, "is_gradient_checkpointing", False):
        return None
    if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)) \
            or type(model).__name__.startswith(("FullyShardedDataParallel", "FSDP")):
        return None
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False) \
            or "past_key_values" not in inspect.signature(model.forward).parameters:
        return None
    p = completion_start
    new = torch.ones(n, dtype=torch.bool, device=input_ids.device)  # [N] row starts a new prompt
    new[1:] = ((input_ids[1:, :p] != input_ids[:-1, :p]) | (attention_mask[1:, :p] != attention_mask[:-1, :p])).any(1)
    first = new.nonzero().squeeze(1)  # [U]
    if first.numel() == n:
        return None
    return first, new.long().cumsum(0) - 1  # [U], [N]


def _completion_logits(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       completion_start: int, temperature: float,
                       share_prompts: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(logits [N, T, V] / temperature in fp32, targets [N, T], restore): rows may come in another order (shared
    prompts); then ``restore`` [N] puts per-row results back in batch order (``x[restore]``), else it is None."""
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0 (use 1.0 for greedy rollouts)")
    if not 0 < completion_start < input_ids.shape[1]:
        raise ValueError(f"completion_start={completion_start} must lie inside the sequence (1..{input_ids.shape[1] - 1})"
                         ": the first completion token needs at least one prompt token before it")
    t = input_ids.shape[1] - completion_start
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)  # [N, L]
    targets = input_ids[:, completion_start:]  # [N, T]
    shared = _shared_prompt_rows(model, input_ids, attention_mask, completion_start) if share_prompts else None
    logits, restore = None, None
    if shared is not None:
        found = _shared_prompt_logits(model, input_ids, attention_mask, position_ids, completion_start, shared)
        if found is not None:
            logits, rows = found  # rows [N]: batch row of each logits row
            targets, restore = targets[rows], rows.argsort()
    if logits is None:
        kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        if _keeps_logits(model):
            # skip the LM head on the prompt: the last T+1 positions predict tokens P..L-1 (and one past the end)
            logits = model(**kwargs, logits_to_keep=t + 1).logits  # [N, T+1, V]
        else:
            logits = model(**kwargs).logits[:, completion_start - 1:]  # [N, L, V] -> [N, T+1, V]
        logits = logits[:, :-1]  # [N, T+1, V] -> [N, T, V]: position j predicts token j+1
    logits = logits.float() / temperature  # [N, T, V]
    return logits, targets, restore


def _shared_prompt_logits(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          position_ids: torch.Tensor, completion_start: int,
                          shared: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(completion logits [N, T, V], the batch row of each of their rows [N]) with the prompt columns run once per
    distinct prompt (module docstring), or None when the model's cache cannot copy rows (the caller then runs the
    full forward). Rows come group-first-rows first, so no [N, T, V] tensor is copied to restore the order.

    The first row of each prompt group runs whole (prompt and completion); its KV cache, cut back to the prompt
    columns, is copied to the group's other rows, which then run only their completion columns. Every attention
    in both forwards spans the same L keys as in the full forward, so the kernels reduce in the same order and
    the logits equal the full forward's (bit for bit on CPU here).
    """
    first, prompt_of_row = shared  # [U], [N]
    n, p = input_ids.shape[0], completion_start
    t = input_ids.shape[1] - p
    keep = {"logits_to_keep": t + 1} if _keeps_logits(model) else {}
    out = model(input_ids=input_ids[first], attention_mask=attention_mask[first], position_ids=position_ids[first],
                use_cache=True, **keep)  # the first row of each group, whole: [U, L]
    cache = out.past_key_values
    if cache is None or not hasattr(cache, "batch_select_indices") or not hasattr(cache, "crop"):
        return None
    head = out.logits[:, -(t + 1):]  # [U, T+1, V]: positions P-1 .. L-1
    is_first = torch.zeros(n, dtype=torch.bool, device=input_ids.device)
    is_first[first] = True
    others = (~is_first).nonzero().squeeze(1)  # [N-U]
    cache.crop(-t)  # keep the prompt columns: [U, ..., P, ...]
    cache.batch_select_indices(prompt_of_row[others])  # -> [N-U, ..., P, ...], differentiable
    rest = model(input_ids=input_ids[others, p:], attention_mask=attention_mask[others],
                 position_ids=position_ids[others, p:], past_key_values=cache, use_cache=True).logits  # [N-U, T, V]
    rest = torch.cat([head[prompt_of_row[others], :1], rest[:, :-1]], dim=1)  # [N-U, T, V]
    return torch.cat([head[:, :-1], rest]), torch.cat([first, others])  # [N, T, V], [N]


def token_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_start: int,
                   temperature: float = 1.0, *, share_prompts: bool = True) -> torch.Tensor:
    """[N, T] log-prob of each completion token ``input_ids[:, completion_start:]`` (T = L - completion_start).

    input_ids, attention_mask: [N, L] (``RolloutBatch.input_ids``/``attention_mask``; completion_start =
    ``RolloutBatch.prompt_length``). Values at padded completion positions are meaningless: mask them.
    Differentiable when called with grad enabled. ``share_prompts``: see the module docstring.
    """
    logits, targets, restore = _completion_logits(model, input_ids, attention_mask, completion_start, temperature,
                                                  share_prompts)
    # gather - logsumexp avoids materialising a second [N, T, V] log_softmax tensor
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [N, T]
    logprobs = picked - torch.logsumexp(logits, dim=-1)  # [N, T]
    return logprobs if restore is None else logprobs[restore]


def token_logprobs_and_entropy(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                               completion_start: int, temperature: float = 1.0, *, share_prompts: bool = True,
                               entropy_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """([N, T] log-probs as in ``token_logprobs``, [N, T] entropy of the tempered next-token distribution).

    Entropy is a diagnostic (collapse to ~0 means exploration is gone), so by default it is computed from
    detached logits under no_grad: no [N, T, V] tensors are kept for the backward pass beyond the log-probs' own
    (``entropy_grad=True`` keeps its graph, for an entropy bonus). Log-probs as in ``token_logprobs``.
    """
    logits, targets, restore = _completion_logits(model, input_ids, attention_mask, completion_start, temperature,
                                                  share_prompts)
    lse = torch.logsumexp(logits, dim=-1)  # [N, T]
    logprobs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse  # [N, T]
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        logp_all = torch.log_softmax(logits if entropy_grad else logits.detach(), dim=-1)  # [N, T, V]
        entropy = -(logp_all.exp() * logp_all).sum(dim=-1)  # [N, T]
    if restore is not None:
        logprobs, entropy = logprobs[restore], entropy[restore]
    return logprobs, entropy


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` [N, T] weighted by ``mask`` [N, T] (0/1, or token weights); 0 when the mask is empty (never
    NaN). A total weight below 1 is divided by as it is, not raised to 1, so fractional masks give a true mean."""
    mask = mask.to(x.dtype).clamp(min=0.0)  # [N, T]; a negative weight counts as 0, as in rlvr.algo.loss.aggregate
    total = mask.sum()
    return (x * mask).sum() / torch.where(total > 0, total, torch.ones_like(total))
