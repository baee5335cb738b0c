"""Reward runtime: score a batch of completions with verifier specs in a process pool with hard timeouts.

Why a hand-rolled pool rather than ``concurrent.futures``: a ``ProcessPoolExecutor`` cannot kill one hung task
(a ``future.cancel()`` on a running call does nothing) and one segfaulting worker breaks the whole executor and
every pending future. Here each worker gets a small chunk of calls over its own pipe and streams back one result
per call; the parent waits on pipes and process sentinels with a per-call deadline (restarted at every result),
SIGKILLs a worker that overruns, replaces a worker that dies, records the call that was running as an ``error``
and requeues the rest of its chunk — the batch is scored normally. No ``signal.alarm`` (it only works in the
main thread and cannot interrupt C code such as a sympy/gmpy call). Verifiers are built once per worker and spec
and kept across ``score`` calls, as is the pool itself.

Scripts that create a runtime need an ``if __name__ == "__main__":`` guard (forkserver/spawn re-import the main
module in workers).

Reward of a sample = sum over specs with weight != 0 of ``weight * score``:
- ``score is None`` (verifier does not apply): excluded, not counted as 0;
- ``error`` (timeout, crash, exception) in a weighted verifier: the sample's reward is ``None`` (untrusted),
  never a silent 0 — the trainer masks it, and ``verifier/<name>/error_rate`` counts it;
- weight 0: run and logged only;
- no weighted verifier applies: reward ``None``.

A spec is a verifier name or a mapping ``{"name": str, "weight": float = 1.0, "label": str = name, **config}``;
``label`` distinguishes two uses of one verifier (metrics are keyed by it).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any, Mapping, Sequence

from rlvr.config.sections import RewardsConfig
from rlvr.verifiers.base import VerifyResult
from rlvr.verifiers.registry import check_name


def eval_runtime(config: Any) -> "RewardRuntime":
    """A runtime for measuring (``rlvr eval``, the in-training sweeps, the held-out eval): the ``rewards`` section's
    workers and timeouts, but it never aborts on verifier errors; it reports them (GRPO's abort guards training)."""
    from dataclasses import replace

    from omegaconf import OmegaConf

    if not isinstance(config, RewardsConfig):
        config = RewardsConfig(**OmegaConf.to_container(config, resolve=True))
    return RewardRuntime(replace(config, abort_error_rate=1.0))


_MAX_CHUNK = 16


class RewardErrorRateExceeded(RuntimeError):
    """A verifier failed on too many samples in one batch (see ``RewardsConfig.abort_error_rate``)."""


@dataclass(frozen=True)
class VerifierSpec:
    name: str
    weight: float = 1.0
    label: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.label or self.name


def parse_spec(spec: str | Mapping[str, Any] | VerifierSpec) -> VerifierSpec:
    if isinstance(spec, VerifierSpec):
        return spec
    if isinstance(spec, str):
        return VerifierSpec(spec)
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ValueError(f"verifier spec must be a name or a mapping with a 'name' string, got {spec!r}")
    rest = dict(spec)
    name = rest.pop("name")
    weight = rest.pop("weight", 1.0)
    label = rest.pop("label", "")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise ValueError(f"verifier spec {name!r}: weight must be a finite number, got {weight!r}")
    return VerifierSpec(name, float(weight), str(label), rest)


@dataclass
class BatchScores:
    rewards: list[float | None]                 # [N] weighted reward; None = nothing applied or a verifier broke
    results: list[dict[str, VerifyResult]]      # [N] spec key -> that verifier's result
    metrics: dict[str, float]                   # verifier/<key>/{mean,applicable_rate,error_rate,...}
    last_errors: dict[str, str] = field(default_factory=dict)  # spec key -> one error message, for the log


# -- worker side -----------------------------------------------------------------------------------------------------
def _worker_main(conn) -> None:
    from rlvr.verifiers import load  # imported in the worker: plugins load in the process that runs them

    cache: dict[str, Any] = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        # A chunk of calls; each result is sent as soon as it is ready, so the parent can restart the per-call
        # deadline and knows exactly which call was running if this process hangs or dies.
        for task_id, spec_json, completion, answer, meta in msg:
            try:
                verifier = cache.get(spec_json)
                if verifier is None:
                    spec = json.loads(spec_json)
                    verifier = cache[spec_json] = load(spec["name"], **spec["config"])
                result = verifier(completion, answer, meta=meta)
                if not isinstance(result, VerifyResult):
                    result = VerifyResult(None, error=f"verifier returned {type(result).__name__}, not VerifyResult")
                reply = (task_id, result)
            except BaseException as exc:  # noqa: BLE001 - report everything, including SystemExit from a plugin
                reply = (task_id, VerifyResult(None, error=f"{type(exc).__name__}: {exc}"[:500]))
            try:
                conn.send(reply)
            except Exception as exc:  # noqa: BLE001 - e.g. unpicklable metrics from a plugin
                conn.send((task_id, VerifyResult(None, error=f"result could not be sent: {type(exc).__name__}: {exc}")))


class _Worker:
    def __init__(self, ctx):
        parent, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True, name="rlvr-verifier")
        self.proc.start()
        child.close()
        self.conn = parent
        self.inflight: deque[int] = deque()  # task ids sent, in the order the worker runs them
        self.deadline = 0.0                   # for the call now running (inflight[0])
        self.calls = 0

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.join(timeout=5)
        finally:
            self.conn.close()


def _spec_json(spec: VerifierSpec) -> str:
    try:
        return json.dumps({"name": spec.name, "config": dict(spec.config)}, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"verifier spec {spec.key!r}: config must be JSON-serialisable ({exc})") from exc


class RewardRuntime:
    """A reusable pool; ``score`` once per training step. Use as a context manager or call ``close()``."""

    def __init__(self, config: RewardsConfig | None = None):
        self.config = config or RewardsConfig()
        if self.config.timeout_s <= 0:
            raise ValueError("RewardsConfig.timeout_s must be > 0")
        self._workers: list[_Worker] = []
        self._ctx = multiprocessing.get_context(self.config.start_method) if self.config.num_workers > 0 else None
        if self.config.start_method == "forkserver" and self._ctx is not None:
            # Imported once in the fork server, so a replacement worker starts in milliseconds, not ~1 s.
            self._ctx.set_forkserver_preload(["rlvr.rewards.runtime", "rlvr.verifiers.math"])
        self._local: dict[str, Any] = {}
        self._checked_names: set[str] = set()
        self.replaced_workers = 0

    # -- pool management ---------------------------------------------------------------------------------------------
    def _ensure_workers(self) -> None:
        while len(self._workers) < self.config.num_workers:
            self._workers.append(_Worker(self._ctx))

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers[self._workers.index(worker)] = _Worker(self._ctx)
        self.replaced_workers += 1

    def close(self) -> None:
        for w in self._workers:
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        for w in self._workers:
            w.proc.join(timeout=1)
            if w.proc.is_alive():
                w.kill()
            else:
                w.conn.close()
        self._workers = []

    def __enter__(self) -> "RewardRuntime":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # -- execution ---------------------------------------------------------------------------------------------------
    def _run_local(self, tasks: list[tuple[str, str, Any, Any]]) -> list[VerifyResult]:
        from rlvr.verifiers import load

        out = []
        for spec_json, completion, answer, meta in tasks:
            try:
                if spec_json not in self._local:
                    spec = json.loads(spec_json)
                    self._local[spec_json] = load(spec["name"], **spec["config"])
                result = self._local[spec_json](completion, answer, meta=meta)
                if not isinstance(result, VerifyResult):
                    result = VerifyResult(None, error=f"verifier returned {type(result).__name__}, not VerifyResult")
            except Exception as exc:  # noqa: BLE001
                result = VerifyResult(None, error=f"{type(exc).__name__}: {exc}"[:500])
            out.append(result)
        return out

    def _run_pool(self, tasks: list[tuple[str, str, Any, Any]]) -> list[VerifyResult]:
        self._ensure_workers()
        results: list[VerifyResult | None] = [None] * len(tasks)
        pending = deque(range(len(tasks)))
        timeout = self.config.timeout_s
        # Chunks pipeline the calls (a worker never idles waiting for the parent); small enough to balance load.
        chunk_size = max(1, min(_MAX_CHUNK, len(tasks) // (4 * len(self._workers)) or 1))

        def fail_running(w: _Worker, error: str) -> None:
            """The call in progress gets ``error``; the rest of the chunk goes back to the queue; replace ``w``."""
            results[w.inflight.popleft()] = VerifyResult(None, error=error)
            pending.extendleft(reversed(w.inflight))
            w.inflight.clear()
            self._replace(w)

        while pending or any(w.inflight for w in self._workers):
            for w in list(self._workers):
                if w.inflight or not pending:
                    continue
                if self.config.max_calls_per_worker and w.calls >= self.config.max_calls_per_worker:
                    self._replace(w)
                    continue
                limit = chunk_size
                if self.config.max_calls_per_worker:
                    limit = min(limit, self.config.max_calls_per_worker - w.calls)
                ids = [pending.popleft() for _ in range(min(limit, len(pending)))]
                try:
                    w.conn.send([(tid, *tasks[tid]) for tid in ids])
                except (OSError, ValueError, TypeError) as exc:
                    if isinstance(exc, OSError):  # the worker died between calls: requeue, fresh worker
                        pending.extendleft(reversed(ids))
                    else:  # unpicklable input: no worker will do better
                        for tid in ids:
                            results[tid] = VerifyResult(None, error=f"could not send task: {exc}")
                    self._replace(w)
                    continue
                w.inflight.extend(ids)
                w.calls += len(ids)
                w.deadline = time.monotonic() + timeout
            busy = [w for w in self._workers if w.inflight]
            if not busy:
                continue
            wait_for = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            ready = set(wait([x for w in busy for x in (w.conn, w.proc.sentinel)], timeout=wait_for))
            for w in busy:
                if w.conn in ready or w.proc.sentinel in ready:
                    try:
                        while w.inflight and w.conn.poll():
                            got_id, result = w.conn.recv()
                            results[got_id] = result
                            if w.inflight and w.inflight[0] == got_id:
                                w.inflight.popleft()
                            w.deadline = time.monotonic() + timeout  # the next call starts now
                    except (EOFError, OSError):
                        pass
                    if w.inflight and not w.proc.is_alive():
                        w.proc.join(timeout=1)
                        fail_running(w, f"verifier worker died (exit code {w.proc.exitcode})")
                        continue
                if w.inflight and time.monotonic() >= w.deadline:
                    fail_running(w, f"timeout after {timeout:g}s")
        return results  # type: ignore[return-value]

    def score(
        self,
        completions: Sequence[str],
        answers: Sequence[Any],
        specs: Sequence[Any] | Sequence[Sequence[Any]],
        metas: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> BatchScores:
        """Score N completions. ``specs`` is one list of specs for every row, or one list per row."""
        n = len(completions)
        if len(answers) != n or (metas is not None and len(metas) != n):
            raise ValueError(f"score: {n} completions but {len(answers)} answers / metas of another length")
        per_row = bool(specs) and all(isinstance(s, (list, tuple)) for s in specs)
        if per_row and len(specs) != n:
            raise ValueError(f"score: per-row specs has {len(specs)} rows for {n} completions")
        row_specs = [[parse_spec(s) for s in (specs[i] if per_row else specs)] for i in range(n)]
        for row in row_specs:
            keys = [s.key for s in row]
            if len(set(keys)) != len(keys):
                raise ValueError(f"score: two specs share the key {keys}; give one a distinct 'label'")
        spec_json = {id(s): _spec_json(s) for row in row_specs for s in row}
        for s in {s.name for row in row_specs for s in row} - self._checked_names:
            check_name(s)  # a typo in the config fails here, once, not as N per-call errors
            self._checked_names.add(s)
        index, tasks = [], []
        for i, row in enumerate(row_specs):
            for s in row:
                index.append((i, s))
                tasks.append((spec_json[id(s)], completions[i], answers[i], None if metas is None else metas[i]))
        flat = self._run_pool(tasks) if self.config.num_workers > 0 else self._run_local(tasks)
        results: list[dict[str, VerifyResult]] = [{} for _ in range(n)]
        for (i, s), r in zip(index, flat):
            results[i][s.key] = r
        rewards = [_combine(row_specs[i], results[i]) for i in range(n)]
        metrics, last_errors = _metrics(row_specs, results, rewards)
        self._check_error_rate(metrics, last_errors, row_specs)
        return BatchScores(rewards, results, metrics, last_errors)

    def _check_error_rate(self, metrics: dict[str, float], last_errors: dict[str, str],
                          row_specs: list[list[VerifierSpec]]) -> None:
        counts: dict[str, int] = {}
        for row in row_specs:
            for s in row:
                counts[s.key] = counts.get(s.key, 0) + 1
        for key, calls in counts.items():
            rate = metrics[f"verifier/{key}/error_rate"]
            if calls >= self.config.abort_min_calls and rate > self.config.abort_error_rate:
                raise RewardErrorRateExceeded(
                    f"verifier {key!r} failed on {rate:.0%} of {calls} calls in this batch "
                    f"(abort_error_rate={self.config.abort_error_rate}); last error: "
                    f"{last_errors.get(key, '?')}. Fix the verifier or raise rewards.timeout_s / "
                    "rewards.abort_error_rate.")


def _combine(specs: list[VerifierSpec], results: dict[str, VerifyResult]) -> float | None:
    total, applied = 0.0, False
    for s in specs:
        if s.weight == 0:
            continue
        r = results[s.key]
        if r.error is not None:
            return None
        if r.score is None:
            continue
        total += s.weight * float(r.score)
        applied = True
    return total if applied else None


def _metrics(row_specs, results, rewards) -> tuple[dict[str, float], dict[str, str]]:
    out: dict[str, float] = {}
    last_errors: dict[str, str] = {}
    sums: dict[str, dict[str, float]] = {}
    for row, res in zip(row_specs, results):
        for s in row:
            r = res[s.key]
            acc = sums.setdefault(s.key, {"calls": 0, "errors": 0, "applicable": 0, "score": 0.0, "timeouts": 0})
            acc["calls"] += 1
            if r.error is not None:
                acc["errors"] += 1
                acc["timeouts"] += r.error.startswith("timeout")
                last_errors[s.key] = r.error
            elif r.score is not None:
                acc["applicable"] += 1
                acc["score"] += float(r.score)
            for k, v in r.metrics.items():  # per-sample indicators/values: batch mean, missing counts as 0
                acc["m/" + k] = acc.get("m/" + k, 0.0) + float(v)
    for key, acc in sums.items():
        calls = acc["calls"]
        out[f"verifier/{key}/error_rate"] = acc["errors"] / calls
        out[f"verifier/{key}/timeouts"] = float(acc["timeouts"])
        out[f"verifier/{key}/applicable_rate"] = acc["applicable"] / calls
        out[f"verifier/{key}/mean"] = acc["score"] / acc["applicable"] if acc["applicable"] else float("nan")
        for k, v in acc.items():
            if k.startswith("m/"):
                out[f"verifier/{key}/{k[2:]}"] = v / calls
    valid = [r for r in rewards if r is not None]
    out["reward/none_rate"] = 1 - len(valid) / len(rewards) if rewards else 0.0
    return out, last_errors


def score_batch(completions, answers, specs, metas=None, config: RewardsConfig | None = None) -> BatchScores:
    """One-shot convenience (starts and stops a pool); training loops should keep a ``RewardRuntime``."""
    with RewardRuntime(config) as runtime:
        return runtime.score(completions, answers, specs, metas)
