"""What the ``rlvr grpo`` loop calls each step besides the algorithm: the prompt stream, rollout seeds, phase
timers and the engine weight sync."""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from typing import Any, Iterator

PHASES = ("rollout", "reward", "logprob", "update", "sync", "eval")


class PromptStream:
    """The train split as an endless stream: shuffled once per epoch by (seed, epoch); ``position`` = prompts
    consumed so far. The position is all a checkpoint needs to continue the exact same order."""

    def __init__(self, samples: list, seed: int, position: int = 0):
        if not samples:
            raise ValueError("the train split is empty")
        self.samples, self.seed, self.position = samples, seed, position
        self._epoch, self._order = -1, []

    def take(self, n: int) -> list:
        out = []
        for _ in range(n):
            epoch, i = divmod(self.position, len(self.samples))
            if epoch != self._epoch:
                self._epoch, self._order = epoch, list(range(len(self.samples)))
                random.Random(f"{self.seed}/grpo/{epoch}").shuffle(self._order)
            out.append(self.samples[self._order[i]])
            self.position += 1
        return out


def rollout_seed(seed: int, step: int, round_: int, rank: int) -> int:
    """A distinct, reproducible sampler seed per (run seed, step, dynamic-sampling round, process)."""
    return (seed * 1_000_003 + step * 1_009 + round_ * 101 + rank) % (2**63)


class PhaseTimer:
    """Wall time per named phase, accumulated within a step (dynamic sampling runs rollout/reward repeatedly)."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.seconds = dict.fromkeys(PHASES, 0.0)

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        import torch

        if self.cuda:
            torch.cuda.synchronize()  # kernels are async: time the work, not the launch
        start = time.perf_counter()
        yield
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds[phase] += time.perf_counter() - start


def sync_weights(engine: Any, model: Any) -> None:
    """Give the rollout engine the policy's new weights. HF samples from the training model itself: nothing to do."""
    if getattr(engine, "model", None) is not model and hasattr(engine, "load_weights"):
        engine.load_weights(model)
