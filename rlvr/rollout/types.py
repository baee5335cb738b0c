"""Typed containers for sampled completions: one ``Rollout`` per completion, ``RolloutBatch`` for B x G of them.

A ``Rollout`` is what an engine returns: plain Python sequences, cheap to pickle to reward workers and to write
to samples.jsonl. A ``RolloutBatch`` is what the loss consumes: the same rollouts, prompt-major (the G
completions of prompt b are rows b*G .. b*G+G-1), padded into tensors with one shared column where the
completion starts, so a single forward pass scores every completion token:

    input_ids = [pad pad p0 p1 p2 | c0 c1 c2 eos pad pad]   prompts left-padded to P, completions right-padded to T
                 <------ P ------> <---------- T -------->

Shape letters: B prompts, G completions per prompt, N = B*G rows, P padded prompt length, T padded completion
length, L = P + T.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, Sequence

import torch

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Rollout:
    """One sampled completion of one prompt.

    ``completion_ids`` includes the token that ended the completion (the eos, or the last token of a stop
    string) so the policy learns to emit it; ``text`` is decoded without special tokens, so it has no eos.

    Under a thinking budget (``SamplingParams.budget``, ``rlvr.rollout.budget``) the engine also inserts tokens the
    policy did not sample (the forced ``</think>`` + answer cue, "Wait" cues): they sit in ``completion_ids`` in
    order, have logprob 0.0 and are flagged in ``forced_mask``.
    """

    sample_id: str
    prompt_ids: tuple[int, ...]  # [P_i] prompt tokens (chat template applied), no padding
    completion_ids: tuple[int, ...]  # [T_i] sampled tokens, no padding
    logprobs: tuple[float, ...]  # [T_i] sampler log-prob of each sampled token (see the engine for the distribution)
    text: str
    finish_reason: FinishReason  # "stop": emitted eos / a stop string; "length": hit max_new_tokens (or, under a
    #                              thinking budget, the answer budget)
    thinking_tokens: int  # completion tokens inside the thinking block (engine docstring / budget.py define it)
    index: int = 0  # which of the n completions of this prompt (0..n-1)
    forced_mask: tuple[bool, ...] = ()  # [T_i] True on tokens the engine inserted (budget forcing); () = none forced
    budget_forced: bool = False  # thinking was cut at the budget and the end of thinking was forced
    waits: int = 0  # times a too-early end of thinking was replaced by the wait cue (min_thinking)

    def __post_init__(self) -> None:
        if len(self.logprobs) != len(self.completion_ids):
            raise ValueError(
                f"rollout {self.sample_id!r}: {len(self.logprobs)} logprobs for {len(self.completion_ids)} tokens"
            )
        if self.forced_mask and len(self.forced_mask) != len(self.completion_ids):
            raise ValueError(f"rollout {self.sample_id!r}: forced_mask has {len(self.forced_mask)} entries for "
                             f"{len(self.completion_ids)} tokens (use () when nothing was forced)")
        if self.finish_reason not in ("stop", "length"):
            raise ValueError(f"finish_reason must be 'stop' or 'length', got {self.finish_reason!r}")

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    @property
    def num_tokens(self) -> int:
        return len(self.completion_ids)

    @property
    def num_forced(self) -> int:
        return sum(self.forced_mask)


@dataclass(frozen=True)
class RolloutBatch:
    """B prompts x G completions as padded tensors, prompt-major. Build with ``RolloutBatch.from_rollouts``."""

    rollouts: tuple[Rollout, ...]  # N = B*G, prompt-major
    group_size: int  # G
    input_ids: torch.Tensor  # [N, L] long: left-padded prompt then right-padded completion
    attention_mask: torch.Tensor  # [N, L] long: 1 on real prompt and completion tokens
    completion_ids: torch.Tensor  # [N, T] long: input_ids[:, P:]
    completion_mask: torch.Tensor  # [N, T] float: 1 on real, sampled completion tokens (the loss mask)
    forced_mask: torch.Tensor  # [N, T] bool: True on engine-inserted tokens (context, not trained on)
    sampler_logprobs: torch.Tensor  # [N, T] float: engine log-probs, 0 on padding
    completion_lengths: torch.Tensor  # [N] long: real tokens per completion (forced ones included)
    truncated: torch.Tensor  # [N] bool: finish_reason == "length"
    thinking_tokens: torch.Tensor  # [N] long
    prompt_length: int  # P: column where every completion starts (completion_start for token_logprobs)
    sample_ids: tuple[str, ...] = field(default=())  # [B] one id per group

    @property
    def num_groups(self) -> int:
        return len(self.rollouts) // self.group_size

    @property
    def max_completion_length(self) -> int:
        return self.completion_ids.shape[1]

    @classmethod
    def from_rollouts(cls, rollouts: Sequence[Rollout], group_size: int, pad_token_id: int) -> "RolloutBatch":
        """Pad ``rollouts`` (prompt-major, ``group_size`` consecutive rollouts per prompt) into tensors.

        Raises ValueError when the count is not a multiple of ``group_size`` or a group mixes sample ids,
        because every later stage (advantages, filtering) relies on rows b*G..b*G+G-1 sharing one prompt.
        """
        if group_size < 1 or not rollouts or len(rollouts) % group_size:
            raise ValueError(f"need a positive multiple of group_size={group_size} rollouts, got {len(rollouts)}")
        sample_ids = []
        for start in range(0, len(rollouts), group_size):
            ids = {r.sample_id for r in rollouts[start:start + group_size]}
            if len(ids) != 1:
                raise ValueError(f"rows {start}..{start + group_size - 1} mix samples {sorted(ids)}: rollouts must "
                                 "be prompt-major with group_size completions per prompt")
            sample_ids.append(rollouts[start].sample_id)
        n = len(rollouts)
        p = max(len(r.prompt_ids) for r in rollouts)
        t = max(1, max(r.num_tokens for r in rollouts))  # >= 1 column so empty completions still give a tensor
        input_ids = torch.full((n, p + t), pad_token_id, dtype=torch.long)  # [N, L]
        attention_mask = torch.zeros((n, p + t), dtype=torch.long)  # [N, L]
        sampler_logprobs = torch.zeros((n, t), dtype=torch.float32)  # [N, T]
        forced = torch.zeros((n, t), dtype=torch.bool)  # [N, T]
        for i, r in enumerate(rollouts):
            lp, lc = len(r.prompt_ids), r.num_tokens
            input_ids[i, p - lp:p] = torch.tensor(r.prompt_ids, dtype=torch.long)
            attention_mask[i, p - lp:p + lc] = 1
            if lc:
                input_ids[i, p:p + lc] = torch.tensor(r.completion_ids, dtype=torch.long)
                sampler_logprobs[i, :lc] = torch.tensor(r.logprobs, dtype=torch.float32)
            if r.forced_mask:
                forced[i, :lc] = torch.tensor(r.forced_mask, dtype=torch.bool)
        return cls(
            rollouts=tuple(rollouts),
            group_size=group_size,
            input_ids=input_ids,
            attention_mask=attention_mask,
            completion_ids=input_ids[:, p:],  # [N, T]
            # forced tokens are attended to (context) but the policy did not sample them: no loss on them
            completion_mask=attention_mask[:, p:].float().masked_fill(forced, 0.0),  # [N, T]
            forced_mask=forced,
            sampler_logprobs=sampler_logprobs,
            completion_lengths=torch.tensor([r.num_tokens for r in rollouts], dtype=torch.long),
            truncated=torch.tensor([r.truncated for r in rollouts], dtype=torch.bool),
            thinking_tokens=torch.tensor([r.thinking_tokens for r in rollouts], dtype=torch.long),
            prompt_length=p,
            sample_ids=tuple(sample_ids),
        )

    def grouped(self, x: torch.Tensor) -> torch.Tensor:
        """View a per-row tensor [N, ...] as [B, G, ...]."""
        return x.reshape(self.num_groups, self.group_size, *x.shape[1:])  # [N, ...] -> [B, G, ...]

    def select_groups(self, keep: torch.Tensor) -> "RolloutBatch":
        """The batch restricted to the groups where ``keep`` [B] is True (padding widths are kept as they are)."""
        keep = torch.as_tensor(keep, dtype=torch.bool).reshape(-1)
        if keep.numel() != self.num_groups:
            raise ValueError(f"keep has {keep.numel()} entries for {self.num_groups} groups")
        rows = keep.repeat_interleave(self.group_size)  # [B] -> [N]
        idx = rows.nonzero().squeeze(1).tolist()
        return replace(
            self,
            rollouts=tuple(self.rollouts[i] for i in idx),
            input_ids=self.input_ids[rows],
            attention_mask=self.attention_mask[rows],
            completion_ids=self.completion_ids[rows],
            completion_mask=self.completion_mask[rows],
            forced_mask=self.forced_mask[rows],
            sampler_logprobs=self.sampler_logprobs[rows],
            completion_lengths=self.completion_lengths[rows],
            truncated=self.truncated[rows],
            thinking_tokens=self.thinking_tokens[rows],
            sample_ids=tuple(s for s, k in zip(self.sample_ids, keep.tolist()) if k),
        )

    def to(self, device: torch.device | str) -> "RolloutBatch":
        return replace(
            self,
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            completion_ids=self.completion_ids.to(device),
            completion_mask=self.completion_mask.to(device),
            forced_mask=self.forced_mask.to(device),
            sampler_logprobs=self.sampler_logprobs.to(device),
            completion_lengths=self.completion_lengths.to(device),
            truncated=self.truncated.to(device),
            thinking_tokens=self.thinking_tokens.to(device),
        )
