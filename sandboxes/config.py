"""SandboxConfig: every knob of code execution in one dataclass, each with the trade-off it controls.

The defaults suit GRPO on code (HumanEval/MBPP-sized programs, thousands of runs per step on a few cores).
Hydra wiring lives in rlvr/config/schema.py; this module has no dependency on it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field


@dataclass
class SandboxConfig:
    backend: str = field(default="auto", metadata={"help": (
        "auto | forkserver | bwrap | subprocess. auto picks the strongest that works on this host: forkserver "
        "(root + namespaces, fastest and strongest), then bwrap (user namespaces, any user, a fresh interpreter "
        "per run: ~2x slower), then subprocess (rlimits only: NOT isolated, warns loudly).")})
    mode: str = field(default="fork", metadata={"help": (
        "forkserver only. fork: run each program in a fork of a warm interpreter (fastest; the program sees "
        "modules the worker preloaded). exec: exec a fresh `python -I -S` per run inside the same namespaces "
        "(exact interpreter parity, roughly half the throughput).")})
    workers: int = field(default=0, metadata={"help": (
        "Parallel slots for run_many (each has its own uid and, for forkserver, its own namespaces). "
        "0 = os.cpu_count(). More than the core count only helps when programs sleep or wait.")})
    timeout_s: float = field(default=10.0, metadata={"help": (
        "Wall-clock limit per run; the whole process group and every process of the slot uid is killed at it. "
        "Short limits keep a GRPO step fast; too short fails slow-but-correct programs (status timeout).")})
    cpu_s: float = field(default=0.0, metadata={"help": (
        "RLIMIT_CPU per process in seconds; 0 = timeout_s + 1. Catches busy loops even if the wall clock is "
        "generous; busy threads share one process budget.")})
    memory_mb: int = field(default=1024, metadata={"help": (
        "RLIMIT_AS (address space) per process. Too low breaks numpy/threads (each thread reserves stack); "
        "too high lets workers x memory_mb exceed host RAM.")})
    max_file_mb: int = field(default=16, metadata={"help": (
        "RLIMIT_FSIZE: largest file (stdout/stderr included) a program may write; beyond it writes fail "
        "with EFBIG and the run is output_limit.")})
    max_output_kb: int = field(default=1024, metadata={"help": (
        "Bytes of stdout/stderr returned to the caller; a run that wrote more is output_limit. Larger values "
        "cost host memory per result.")})
    slot_memory_mb: int = field(default=0, metadata={"help": (
        "forkserver: memory cgroup limit for everything one slot runs (all processes plus its tmpfs), where "
        "the host allows one; 0 = 2 x memory_mb, negative = none. Without it a slot is bounded only by "
        "max_processes x memory_mb. At the limit the OOM killer kills inside the slot (status memory).")})
    tmpfs_mb: int = field(default=64, metadata={"help": (
        "forkserver: size of each private tmpfs (/tmp, /dev/shm, /var/tmp, /run/lock); it is RAM, per slot.")})
    max_open_files: int = field(default=256, metadata={"help": "RLIMIT_NOFILE per process."})
    max_processes: int = field(default=64, metadata={"help": (
        "RLIMIT_NPROC for the slot uid (processes + threads, counted per uid). Caps fork bombs; too low "
        "breaks programs that use thread or process pools. The kernel ignores it for root, which is why root "
        "hosts always run programs as a slot uid; a non-root caller's own processes count against it too.")})
    uid_base: int = field(default=200_000, metadata={"help": (
        "First uid of the pool the sandboxes draw slot uids from (root only). Each open slot locks one uid "
        "host-wide, so concurrent sandboxes never share one; pick a range no real user owns.")})
    uid_count: int = field(default=4096, metadata={"help": "Size of the slot uid pool."})
    python: str = field(default="", metadata={"help": (
        "Interpreter that runs programs; empty = the real binary behind this process (os.path.realpath of "
        "sys._base_executable), never a pyenv shell shim.")})
    preload: tuple = field(default=(
        "math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string", "typing",
        "random", "statistics", "fractions", "decimal", "operator", "copy", "json", "hashlib", "datetime",
        "threading", "io", "traceback", "ctypes", "types", "atexit"), metadata={"help": (
        "forkserver fork mode: stdlib modules imported once in the warm worker, so a program's imports cost "
        "nothing. Only ever the standard library: the worker runs with -I -S.")})

    def resolved(self) -> "SandboxConfig":
        """A copy with the derived defaults filled in and values checked."""
        import sys

        c = SandboxConfig(**asdict(self))
        c.workers = self.workers or (os.cpu_count() or 1)
        if not c.python:
            c.python = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
        errors = []
        if c.backend not in ("auto", "forkserver", "bwrap", "subprocess"):
            errors.append(f"backend={c.backend!r}: use auto, forkserver, bwrap or subprocess")
        if c.mode not in ("fork", "exec"):
            errors.append(f"mode={c.mode!r}: use fork or exec")
        if c.timeout_s <= 0:
            errors.append("timeout_s must be > 0")
        for name in ("memory_mb", "max_file_mb", "max_output_kb", "tmpfs_mb", "max_open_files", "max_processes"):
            if getattr(c, name) <= 0:
                errors.append(f"{name} must be > 0")
        if errors:
            raise ValueError("invalid SandboxConfig: " + "; ".join(errors))
        return c

    def worker_dict(self, uid: int | None) -> dict:
        """The plain-JSON view handed to the in-sandbox worker (stdlib only, no dataclasses)."""
        d = asdict(self)
        d["preload"] = list(self.preload)
        d["uid"] = uid
        return d
