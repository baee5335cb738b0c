"""``rlvr.train.async_source.AsyncSource``'s scheduler: ordering, the staleness bound, the consumed position,
sync exclusion, errors and shutdown. The inner source is a small stand-in with the three members the scheduler
uses (collect / sync / position, and an engine with a version counter): this tests the scheduling logic, not a
rollout engine (tests/integration/test_async_grpo.py runs the real servers)."""

from __future__ import annotations

import threading
import time

import pytest

from rlvr.train.async_source import AsyncSource
from rlvr.train.loop_parts import PhaseTimer


class Engine:
    def __init__(self):
        self.version = 1  # the first sync happened at start, as for ServerEngine


class Inner:
    """B prompts per step from a counter; ``collect`` records the version it sampled with; ``sync`` bumps it."""

    def __init__(self, B=2, start=0, fail_at=None, delay=0.0):
        self.engine, self.B, self.position, self.fail_at, self.delay = Engine(), B, start, fail_at, delay
        self.sampled: dict[int, int] = {}  # step -> version during its collect
        self.in_collect = False
        self.overlaps = 0  # syncs that ran while a collect was in progress (must stay 0)
        self.closed = False

    def collect(self, step, timer):
        self.in_collect = True
        try:
            if step == self.fail_at:
                raise ValueError("server broke")
            with timer("rollout"):
                time.sleep(self.delay)
            self.sampled[step] = self.engine.version
            self.position += self.B
            return ("batch", step)
        finally:
            self.in_collect = False

    def sync(self, policy):
        self.overlaps += self.in_collect
        self.engine.version += 1

    def close(self):
        self.closed = True


def _run(source, steps, start=0, update_s=0.0):
    rows = []
    for step in range(start + 1, start + steps + 1):
        timer = PhaseTimer(cuda=False)
        assert source.collect(step, timer) == ("batch", step)
        time.sleep(update_s)  # the update: the producer runs ahead meanwhile
        source.sync(None)
        rows.append(source.metrics() | {"position": source.position, "wait": timer.seconds["rollout_wait"]})
    return rows


@pytest.mark.parametrize("K", [1, 2])
def test_staleness_bounded_and_reached(K):
    inner = Inner(delay=0.01)
    source = AsyncSource(inner, K, start_step=0, max_steps=8)
    try:
        rows = _run(source, 8, update_s=0.02)
    finally:
        source.close()
    stale = [r["rollout/staleness_max"] for r in rows]
    assert all(0 <= s <= K for s in stale) and max(stale) == K
    assert stale[0] == 0  # step 1 is sampled by the starting weights, which also train it
    assert [r["sync/version"] for r in rows] == list(range(2, 10))  # one push per step
    assert [r["position"] for r in rows] == [2 * s for s in range(1, 9)]  # after the consumed batches
    assert inner.overlaps == 0 and inner.closed
    assert max(inner.sampled) == 8  # nothing produced past max_steps


def test_position_is_the_consumed_one_while_steps_are_in_flight():
    inner = Inner()
    source = AsyncSource(inner, 2, start_step=0, max_steps=10)
    try:
        source.collect(1, PhaseTimer(cuda=False))
        deadline = time.time() + 5
        while inner.position < 6 and time.time() < deadline:  # steps 2 and 3 get produced meanwhile
            time.sleep(0.01)
        assert inner.position == 6 and source.position == 2  # a checkpoint now must store 2, not 6
    finally:
        source.close()


def test_resume_starts_at_the_next_step_from_the_stored_position():
    inner = Inner(start=4)  # a checkpoint after step 2 with B=2
    source = AsyncSource(inner, 1, start_step=2, max_steps=4)
    try:
        rows = _run(source, 2, start=2)
    finally:
        source.close()
    assert [r["position"] for r in rows] == [6, 8] and sorted(inner.sampled) == [3, 4]


def test_producer_error_surfaces_in_collect():
    source = AsyncSource(Inner(fail_at=2), 1, start_step=0, max_steps=4)
    try:
        source.collect(1, PhaseTimer(cuda=False))
        with pytest.raises(RuntimeError, match="producer failed") as info:  # in the sync or the next collect
            source.sync(None)
            source.collect(2, PhaseTimer(cuda=False))
        assert isinstance(info.value.__cause__, ValueError)
    finally:
        source.close()


def test_close_stops_a_waiting_producer_and_unblocks_nothing_left():
    inner = Inner()
    source = AsyncSource(inner, 1, start_step=0, max_steps=100)
    time.sleep(0.05)  # the producer made steps 1-2 and now waits for a sync
    source.close()
    assert not source._thread.is_alive() and inner.closed and max(inner.sampled) == 2
    with pytest.raises(RuntimeError):  # the queue still holds steps 1-2, but a closed source hands out nothing new
        for step in range(1, 4):
            source.collect(step, PhaseTimer(cuda=False))


def test_sync_waits_for_the_step_in_progress():
    inner = Inner(delay=0.2)
    source = AsyncSource(inner, 2, start_step=0, max_steps=3)
    try:
        source.collect(1, PhaseTimer(cuda=False))  # step 2 is being produced now (0.2 s)
        done = threading.Event()
        threading.Thread(target=lambda: (source.sync(None), done.set())).start()
        assert done.wait(5) and inner.overlaps == 0
    finally:
        source.close()


def test_k0_is_refused():
    with pytest.raises(ValueError, match="max_staleness >= 1"):
        AsyncSource(Inner(), 0, start_step=0, max_steps=1)


@pytest.mark.parametrize("overrides, key", [
    ([], None),
    (["rollout=server", "server.max_staleness=1", "algo.tis=true"], None),
    (["rollout=server", "server.max_staleness=1"], "algo.tis"),  # stale samples need the IS correction
    (["rollout=hf", "server.max_staleness=1", "algo.tis=true"], "server.max_staleness"),  # servers only
    (["rollout=server", "server.max_staleness=-1"], "server.max_staleness"),
])
def test_max_staleness_validation(overrides, key):
    from rlvr.config.loading import compose_config
    from rlvr.train.grpo_validation import validate

    cfg = compose_config("grpo", ["model=tiny", "task=arith", "logger=none", *overrides])
    keys = [p.key for p in validate(cfg)]
    assert keys == ([] if key is None else [key])
