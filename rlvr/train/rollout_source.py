"""The rollout side of ``rlvr grpo``, as the loop sees it: a source of scored rollout groups.

``RolloutSource.collect(step, timer) -> StepBatch`` is the only way the loop gets data: B groups of G scored
completions per rank (steps 1-3 of the story in ``rlvr.train.grpo``), plus ``sync(policy)`` after each update and
``position`` (what a checkpoint stores to continue the same data). ``EngineSource`` is the in-process one: the
prompt stream, the train budgets, a rollout engine over the policy, the reward runtime and dynamic sampling. A
remote or asynchronous source (rollout servers) implements the same three members; the update does not change.

DDP rules that live here (see "Processes" in ``rlvr.train.grpo``): each rank takes its slice of a shared stream;
rollout seeds include the rank; dynamic sampling stops when *every* rank has B groups (a collective after each
round), so all ranks sample the same number of rounds and their streams stay in step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch

from rlvr.rewards.scoring import ScoredRound
from rlvr.rollout.types import Rollout
from rlvr.train.loop_parts import PhaseTimer, PromptStream, rollout_seed


@dataclass
class StepBatch:
    """One step's scored rollouts on this rank: every round sampled, and the groups the update trains on."""

    rounds: list[ScoredRound]  # [R] rounds, each B prompts x G completions, prompt-major
    kept: list[tuple[int, int]]  # [B' <= B] (round, group) of the informative groups the update trains on
    keep: torch.Tensor  # [R * B] bool: the filter's verdict on every group sampled (all True without filtering)
    budgets: list[int | None]  # [R * B] thinking budget per prompt (None = no cap)
    batch_groups: int  # groups kept over every rank (<= B * world): 0 = no rank trains this step
    group_size: int  # G

    @property
    def rollouts(self) -> list[Rollout]:
        """[R * B * G] every completion sampled this step, round by round, prompt-major."""
        return [r for s in self.rounds for r in s.rollouts]

    def rows(self) -> list[tuple[int, int]]:
        """[B' * G] (round, row) of the kept groups' completions, group by group."""
        G = self.group_size
        return [(ri, b * G + j) for ri, b in self.kept for j in range(G)]


class RolloutSource(Protocol):
    """What the loop needs from the rollout side (see the module docstring)."""

    position: int  # prompts consumed from the train stream: a checkpoint stores it, a resume starts from it

    def collect(self, step: int, timer: PhaseTimer) -> StepBatch: ...

    def sync(self, policy: Any) -> None: ...

    def close(self) -> None: ...


class EngineSource:
    """Rollouts from an in-process engine, scored in the reward runtime, filtered by dynamic sampling.

    ``accelerator`` gives rank, world and the collective of the joint stopping rule (a one-process run has no
    partner to wait for). ``budgets``: ``rlvr.train.budgets.TrainBudgets``.
    """

    def __init__(self, engine: Any, runtime: Any, stream: PromptStream, budgets: Any, sampling: Any, algo: Any, *,
                 prompts_per_step: int, group_size: int, max_new_tokens: int, seed: int, accelerator: Any):
        self.engine, self.runtime, self.stream, self.budgets = engine, runtime, stream, budgets
        self.sampling, self.algo, self.seed, self.accelerator = sampling, algo, seed, accelerator
        self.B, self.G, self.max_new_tokens = prompts_per_step, group_size, max_new_tokens

    @property
    def position(self) -> int:
        return self.stream.position

    def collect(self, step: int, timer: PhaseTimer) -> StepBatch:
        """Rollout -> reward -> dynamic sampling, refilling with fresh prompts up to the round cap."""
        from rlvr.algo.filtering import dynamic_sampling_filter
        from rlvr.rewards.scoring import score_round

        algo, B, G, acc = self.algo, self.B, self.G, self.accelerator
        rank, world = acc.process_index, acc.num_processes
        rounds: list[ScoredRound] = []
        kept: list[tuple[int, int]] = []
        keep: list[torch.Tensor] = []  # [R] x [B] bool
        budgets: list[int | None] = []  # [R * B]
        for round_ in range(algo.max_sampling_rounds if algo.dynamic_sampling else 1):
            first = self.stream.position + rank * B  # stream position of this rank's first prompt
            samples = self.stream.take(B * world)[rank * B:(rank + 1) * B]  # every rank advances the stream
            samples, prompt_budgets = self.budgets.assign(samples, step, first)  # stated if asked
            budgets += prompt_budgets
            params = replace(self.sampling, seed=rollout_seed(self.seed, step, round_, rank))
            with timer("rollout"):
                rollouts = self.budgets.generate(self.engine, samples, prompt_budgets, G, params)  # [B*G]
            with timer("reward"):
                scored = score_round(self.runtime, samples, rollouts, G, algo, self.max_new_tokens)
            rounds.append(scored)
            if algo.dynamic_sampling:
                round_keep, _ = dynamic_sampling_filter(scored.accuracy.view(B, G))  # [B*G] -> [B, G]; [B]
            else:
                round_keep = torch.ones(B, dtype=torch.bool)  # [B]
            keep.append(round_keep)
            kept += [(len(rounds) - 1, b) for b in round_keep.nonzero().squeeze(1).tolist()]
            counts = kept_counts(acc, len(kept))  # [world] groups kept so far per rank
            if counts.min() >= B:  # all ranks stop together, so they sample the same rounds
                break
        return StepBatch(rounds, kept[:B], torch.cat(keep), budgets, int(counts.clamp(max=B).sum().item()), G)

    def sync(self, policy: Any) -> None:
        """Push the policy's new weights into the engine (a no-op for HF, which samples from the policy itself)."""
        from rlvr.train.loop_parts import sync_weights

        sync_weights(self.engine, policy)

    def close(self) -> None:
        self.runtime.close()
        if hasattr(self.engine, "close"):
            self.engine.close()  # frees vLLM's engine and its process group, so a later engine can start here


def kept_counts(accelerator: Any, kept: int) -> torch.Tensor:
    """[world] every rank's kept-group count (a collective under several processes; [kept] alone otherwise)."""
    local = torch.tensor([kept], device=accelerator.device)  # [1]
    return accelerator.gather(local).cpu() if accelerator.num_processes > 1 else local.cpu()


def stream_of(task: Any, split: str, limit: int | None, seed: int, position: int,
              process_verifier: str | None = None) -> PromptStream:
    """The train split as a ``PromptStream`` at ``position``; checks the process verifier can score its rows."""
    stream = PromptStream(task.samples(split, limit=limit), seed=seed, position=position)
    if process_verifier:
        from rlvr.algo.process import check_process_verifier

        check_process_verifier(process_verifier, stream.samples)
    return stream

