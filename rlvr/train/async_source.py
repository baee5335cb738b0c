"""Bounded-staleness asynchronous rollouts for ``rlvr grpo`` (``rollout=server server.max_staleness=K``).

What
----
``AsyncSource`` wraps the server-backed ``EngineSource`` (``rlvr.train.rollout_source``) and implements the same
``RolloutSource`` members (``collect``, ``sync``, ``position``, ``close``) plus ``metrics()``, which the loop
merges into the step's row. One background *producer* thread calls the inner source's ``collect(step)`` for the
steps ahead, in order (rollout -> reward -> dynamic sampling, exactly as the synchronous loop does them), and
puts each ``StepBatch`` in a queue, tagged with the weight version the servers held when its generation started
(``ServerEngine.version``, the weight sync's counter). The trainer's ``collect(step)`` takes the next batch off
the queue; while the trainer runs the update for step s, the servers already sample step s+1 (.. s+K).

``K = 0`` is never wrapped: ``build_source`` returns the plain ``EngineSource`` and the loop is the synchronous
one, bit for bit (no thread, same calls in the same order).

Staleness (what K bounds)
-------------------------
The policy that trains on step j's batch has had every update before j pushed: its version is
``P(j) = v0 + (j - 1 - start_step)``. The producer starts generating step j only once the trainer has synced the
update of step ``j - K - 1`` (``_synced >= j - K - 1``), so the batch's version ``V(j) >= P(j) - K`` and
``staleness = P(j) - V(j)`` lies in ``[0, K]``; ``collect`` asserts it. ``K = 1`` is the classic one-step
overlap: step j+1 is sampled by version j-1's weights while step j's update runs.

Rows get ``rollout/staleness_mean`` and ``rollout/staleness_max`` (over the step's rollouts: with the exclusion
below, every rollout of a step comes from one version, so the two are equal; they differ only if a future
transport syncs mid-batch), ``sync/version`` (the servers' version after this step's sync) and
``time/rollout_wait`` (seconds the trainer blocked on the queue). ``time/rollout`` and ``time/reward`` are the
producer's own seconds for that batch, so ``perf/rollout_tokens_per_s`` stays the servers' throughput; they
overlap the update, so the ``time/*`` phases no longer add up to ``time/step``.

Sync vs in-flight requests: a lock, not ``pause(mode=keep)``
------------------------------------------------------------
``sync`` never runs while the producer is inside ``collect``: it raises a "sync pending" flag (the producer
starts no new step while it is set), waits for the step in progress to finish, pushes, then lets the producer
go on. ``pause(mode=keep)`` alone would keep in-flight requests alive across the reload, but (a) a request
would then be sampled by two versions under one tag (its staleness would be misreported), and (b)
``/reset_prefix_cache`` cannot free blocks that running requests hold, so later requests could reuse KV blocks
computed with the old weights. The exclusion costs little: with K = 1 the trainer needs step s+1's batch right
after this sync anyway, so waiting for it first loses nothing; with K > 1 a sync waits for at most the one
step in progress.

Importance sampling: a batch up to K versions old is off-policy. The loss recomputes "old" log-probs with the
current policy, so the correction is ``algo.tis`` (the per-token weight ``min(exp(old - sampler), tis_cap)``
against the servers' logprobs, ``rlvr.algo.loss``); validation refuses ``server.max_staleness > 0`` without it.

Data position and resume
------------------------
``position`` is the stream position after the *consumed* batches (recorded by the producer right after each
``collect``, handed out with the batch), never after the produced ones: a checkpoint at step s stores the
position after step s, and a resume regenerates the in-flight steps s+1.. from there. Prompts come from the
repositionable ``PromptStream`` and every rollout seed from (seed, step, round, rank), so a regenerated step
samples the same prompts with the same seeds, from a newer policy (with dynamic sampling the number of rounds,
and so the position, can then differ from the run that was killed; without it, position = step * B exactly).

Shutdown and errors: the producer is a daemon thread; ``close`` sets a stop flag, wakes it, waits for the step
in progress (an HTTP request cannot be interrupted; it ends within ``server.request_timeout_s``), then closes the
inner source. An exception in the producer is stored and re-raised by the trainer's next ``collect`` (or
``sync``), so a broken server stops the run instead of hanging it.

Limits: one trainer process (as ``rollout=server``). The producer renders prompts and decodes completions with
its own deep copy of the tokenizer (a fast tokenizer's Rust object refuses concurrent mutable use, "Already
borrowed", e.g. the held-out eval's padded encode on the trainer thread); the reward runtime is used by the
producer only.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from rlvr.train.loop_parts import PhaseTimer
from rlvr.train.rollout_source import StepBatch


@dataclass
class Produced:
    """One step's batch as the producer made it."""

    step: int
    batch: StepBatch
    version: int  # servers' weight version when its generation started
    position: int  # stream position right after it was collected
    seconds: dict[str, float]  # the producer's phase timings (rollout, reward)


class AsyncSource:
    """``RolloutSource`` with up to ``max_staleness`` steps of rollouts in flight (see the module docstring).

    Args:
        inner: the server-backed ``EngineSource`` (its ``engine`` has a ``version``).
        max_staleness: K >= 1.
        start_step: steps completed before (a resume); the producer starts at ``start_step + 1``.
        max_steps: the last step to produce (nothing is generated past the run's end).
    """

    def __init__(self, inner: Any, max_staleness: int, *, start_step: int, max_steps: int):
        if max_staleness < 1:
            raise ValueError(f"AsyncSource needs max_staleness >= 1, got {max_staleness} (0 = the plain source)")
        self.inner, self.K, self.max_steps = inner, max_staleness, max_steps
        engine = getattr(inner, "engine", None)
        if getattr(engine, "tokenizer", None) is not None:  # the producer's own copy (see "Limits")
            engine.tokenizer = copy.deepcopy(engine.tokenizer)
        self._cond = threading.Condition()
        self._queue: deque[Produced] = deque()
        self._next = start_step + 1  # next step the producer makes
        self._synced = start_step  # last step whose update the servers hold
        self._consumed = start_step  # last step handed to the trainer
        self._position = inner.position  # after the consumed batches
        self._busy = self._sync_pending = self._stop = False
        self._error: BaseException | None = None
        self._last: dict[str, float] = {}
        self._thread = threading.Thread(target=self._produce, name="rlvr-async-rollouts", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------ producer
    def _may_start(self) -> bool:
        return (self._next <= self.max_steps and not self._sync_pending
                and self._synced >= self._next - self.K - 1)

    def _produce(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._stop or self._may_start())
                    if self._stop:
                        return
                    step, self._busy = self._next, True
                    version = self.version  # no sync can run while _busy: the whole step is this version
                timer = PhaseTimer(cuda=False)
                try:
                    batch = self.inner.collect(step, timer)
                    item = Produced(step, batch, version, self.inner.position, dict(timer.seconds))
                finally:
                    with self._cond:
                        self._busy = False
                        self._cond.notify_all()
                with self._cond:
                    self._queue.append(item)
                    self._next += 1
                    self._cond.notify_all()
        except BaseException as exc:  # surfaced in the trainer's next collect/sync
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"the async rollout producer failed: {self._error!r}") from self._error

    # ------------------------------------------------------------------------------------------ trainer side
    @property
    def version(self) -> int:
        """The servers' weight version now (the sync's counter)."""
        return int(self.inner.engine.version)

    @property
    def engine(self) -> Any:
        return self.inner.engine

    @property
    def position(self) -> int:
        """Prompts consumed by the batches handed out so far (what a checkpoint stores)."""
        return self._position

    def collect(self, step: int, timer: PhaseTimer) -> StepBatch:
        """The next batch (blocks until the producer has it); records its staleness (asserted <= K)."""
        start = time.perf_counter()
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._error is not None or self._stop)
            if not self._queue:
                self._raise_error()
                raise RuntimeError("the async rollout source is closed")
            item = self._queue.popleft()
        waited = time.perf_counter() - start
        if item.step != step:
            raise RuntimeError(f"the trainer asked for step {step}, the producer made step {item.step}")
        staleness = self.version - item.version
        if not 0 <= staleness <= self.K:
            raise AssertionError(f"step {step}: rollouts {staleness} versions old, server.max_staleness={self.K}")
        self._consumed, self._position = step, item.position
        for phase, seconds in item.seconds.items():
            timer.seconds[phase] = timer.seconds.get(phase, 0.0) + seconds
        timer.seconds["rollout_wait"] = timer.seconds.get("rollout_wait", 0.0) + waited
        self._last = {"rollout/staleness_mean": float(staleness), "rollout/staleness_max": float(staleness)}
        return item.batch

    def sync(self, policy: Any) -> None:
        """Push the update to the servers once the producer is between steps; then it may run one step further."""
        with self._cond:
            self._sync_pending = True
            try:
                self._cond.wait_for(lambda: not self._busy or self._error is not None)
                self._raise_error()
            except BaseException:
                self._sync_pending = False
                raise
        try:
            self.inner.sync(policy)
        finally:
            with self._cond:
                self._sync_pending = False
                self._synced = self._consumed
                self._cond.notify_all()

    def metrics(self) -> dict[str, float]:
        """Row metrics of the step just consumed and synced: staleness of its batch, the servers' version."""
        return self._last | {"sync/version": float(self.version)}

    def close(self) -> None:
        """Stop the producer (after the step in progress), then close the inner source. Idempotent."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=self._join_timeout())
        self.inner.close()

    def _join_timeout(self) -> float | None:
        engine = getattr(self.inner, "engine", None)
        timeout = getattr(engine, "request_timeout_s", None)
        return None if timeout is None else 2 * float(timeout) + 60
