"""What every sandbox backend shares: the result and job types, slot uids, and the parallel run_many.

A backend owns ``workers`` slots. A slot is one unit of parallelism with its own unprivileged uid (when the
host runs as root), so a slot's cleanup — "kill everything of my uid" — can never touch another slot or
another sandbox. Uids are locked host-wide with abstract unix sockets: no files to clean up, and the kernel
releases the lock when the holder dies.
"""

from __future__ import annotations

import atexit
import os
import queue
import socket
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from rlvr.sandboxes.config import SandboxConfig

STATUSES = ("ok", "runtime_error", "timeout", "memory", "output_limit", "sandbox_error")


@dataclass(frozen=True)
class ExecutionResult:
    status: str  # "ok" | "runtime_error" | "timeout" | "memory" | "output_limit" | "sandbox_error"
    exit_code: int | None  # -N when killed by signal N; None when it never ran or could not be waited for
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float | None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class Job:
    program: str
    stdin: str = ""
    files: Mapping[str, str] | None = None
    timeout_s: float | None = None  # overrides SandboxConfig.timeout_s for this job


def sandbox_error(msg: str, wall_s: float = 0.0) -> ExecutionResult:
    return ExecutionResult("sandbox_error", None, "", msg, wall_s, None)


class UidLease:
    """Exclusive, host-wide claim on one uid from the pool, held until release() or process death."""

    def __init__(self, cfg: SandboxConfig):
        start = (os.getpid() * 7) % cfg.uid_count  # spread concurrent sandboxes so they rarely probe the same uid
        for i in range(cfg.uid_count):
            uid = cfg.uid_base + (start + i) % cfg.uid_count
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.bind(f"\0rlvr-sandbox-uid-{uid}")
            except OSError:
                sock.close()
                continue
            self.uid, self._sock = uid, sock
            return
        raise RuntimeError(f"no free sandbox uid in [{cfg.uid_base}, {cfg.uid_base + cfg.uid_count})")

    def release(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


_OPEN: "weakref.WeakSet[Sandbox]" = weakref.WeakSet()
_HOOKED_PID: list[int] = []


def _close_all() -> None:
    for sb in list(_OPEN):
        try:
            sb.close()
        except Exception:
            pass


def _register_exit_hook() -> None:
    """Close sandboxes at interpreter exit — also in multiprocessing workers, which skip atexit handlers."""
    if _HOOKED_PID and _HOOKED_PID[0] == os.getpid():
        return
    _HOOKED_PID[:] = [os.getpid()]
    atexit.register(_close_all)
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _close_all, exitpriority=100)


class Sandbox:
    """Base class: subclasses implement ``_start_slot``, ``_run_slot`` and ``_stop_slot``."""

    backend: str = "?"
    guarantees: str = ""

    def __init__(self, cfg: SandboxConfig):
        self.cfg = cfg.resolved()
        self._slots: queue.Queue = queue.Queue()
        self._all: list[Any] = []
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False
        self._lock = threading.Lock()
        _register_exit_hook()
        _OPEN.add(self)
        try:
            for i in range(self.cfg.workers):
                slot = self._start_slot(i)
                self._all.append(slot)
                self._slots.put(slot)
        except BaseException:
            self.close()
            raise

    # -- subclass hooks -------------------------------------------------------------------------------------
    def _start_slot(self, index: int) -> Any:
        raise NotImplementedError

    def _run_slot(self, slot: Any, job: Job) -> ExecutionResult:
        raise NotImplementedError

    def _stop_slot(self, slot: Any) -> None:
        raise NotImplementedError

    # -- public API -----------------------------------------------------------------------------------------
    def run(self, program: str, stdin: str = "", files: Mapping[str, str] | None = None,
            *, timeout_s: float | None = None) -> ExecutionResult:
        return self._run(Job(program, stdin, files, timeout_s))

    def run_many(self, jobs: Sequence[str | Job]) -> list[ExecutionResult]:
        """Run jobs in parallel across the slots; results come back in input order."""
        jobs = [j if isinstance(j, Job) else Job(j) for j in jobs]
        if len(jobs) <= 1 or self.cfg.workers == 1:
            return [self._run(j) for j in jobs]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.cfg.workers, thread_name_prefix=f"sandbox-{self.backend}")
        return list(self._pool.map(self._run, jobs))

    def _run(self, job: Job) -> ExecutionResult:
        if self._closed:
            raise RuntimeError("sandbox is closed")
        slot = self._slots.get()
        try:
            return self._run_slot(slot, job)
        except Exception as e:  # a backend bug or a dead worker is the sandbox's failure, never the program's
            return sandbox_error(f"{self.backend}: {e!r}")
        finally:
            self._slots.put(slot)

    @property
    def uids(self) -> list[int]:
        """The slot uids (empty when programs run as the calling user)."""
        return [s.lease.uid for s in self._all if getattr(s, "lease", None) is not None]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for slot in self._all:
            try:
                self._stop_slot(slot)
            except Exception:
                pass

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend={self.backend} workers={self.cfg.workers}>"
