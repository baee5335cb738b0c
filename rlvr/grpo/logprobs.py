"""Teacher-forced per-token log-probs (and entropy) of completion tokens: the trainer's side of the ratio.

``token_logprobs(..., temperature=tau)`` returns ``log softmax(z_t / tau)[y_t]``, the same quantity the rollout
engines report (see ``rlvr.rollout.hf``), so ``logprobs - sampler_logprobs`` measures only the
trainer/sampler mismatch. Dividing by the sampling temperature (verl's convention) makes the ratio refer to
the distribution that actually produced the tokens; with tau = 1 it is the raw policy.

Position ids are rebuilt from the attention mask (cumsum - 1) because prompts are left-padded: a plain forward
would number the pad columns and shift every real position, and the logprobs would no longer match the ones
``generate`` (which does the same cumsum) sampled with.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch


def _completion_logits(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       completion_start: int, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0 (use 1.0 for greedy rollouts)")
    if not 0 < completion_start < input_ids.shape[1]:
        raise ValueError(f"completion_start={completion_start} must lie inside the sequence (1..{input_ids.shape[1] - 1})"
                         ": the first completion token needs at least one prompt token before it")
    t = input_ids.shape[1] - completion_start
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)  # [N, L]
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        # skip the LM head on the prompt: the last T+1 positions predict tokens P..L-1 (and one past the end)
        logits = model(**kwargs, logits_to_keep=t + 1).logits  # [N, T+1, V]
    else:
        logits = model(**kwargs).logits[:, completion_start - 1:]  # [N, L, V] -> [N, T+1, V]
    logits = logits[:, :-1].float() / temperature  # [N, T+1, V] -> [N, T, V]: position j predicts token j+1
    targets = input_ids[:, completion_start:]  # [N, T]
    return logits, targets


def token_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_start: int,
                   temperature: float = 1.0) -> torch.Tensor:
    """[N, T] log-prob of each completion token ``input_ids[:, completion_start:]`` (T = L - completion_start).

    input_ids, attention_mask: [N, L] (``RolloutBatch.input_ids``/``attention_mask``; completion_start =
    ``RolloutBatch.prompt_length``). Values at padded completion positions are meaningless: mask them.
    Differentiable when called with grad enabled.
    """
    logits, targets = _completion_logits(model, input_ids, attention_mask, completion_start, temperature)
    # gather - logsumexp avoids materialising a second [N, T, V] log_softmax tensor
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [N, T]
    return picked - torch.logsumexp(logits, dim=-1)  # [N, T]


def token_logprobs_and_entropy(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                               completion_start: int, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """([N, T] log-probs as in ``token_logprobs``, [N, T] entropy of the tempered next-token distribution).

    Entropy is a diagnostic (collapse to ~0 means exploration is gone); compute it under no_grad unless an
    entropy bonus needs its gradient.
    """
    logits, targets = _completion_logits(model, input_ids, attention_mask, completion_start, temperature)
    logp_all = torch.log_softmax(logits, dim=-1)  # [N, T, V]
    logprobs = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [N, T]
    entropy = -(logp_all.exp() * logp_all).sum(dim=-1)  # [N, T]
    return logprobs, entropy


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` [N, T] over ``mask`` [N, T] == 1; 0 when the mask is empty (never NaN)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)
