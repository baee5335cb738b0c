"""Per-slot memory cgroup: one limit for everything a slot runs, where the host lets root create one.

RLIMIT_AS bounds each process, but a program may start ``max_processes`` of them, so rlimits alone bound a slot
at max_processes x memory_mb — more than the host has. A memory cgroup per slot caps the sum (tmpfs pages
written by the program included); at the cap the kernel's OOM killer SIGKILLs a process inside the slot and
nothing outside it. Supported: cgroup v1 memory controller, and v2 where the caller's cgroup may delegate
the memory controller. When neither works the slot runs without one and ``guarantees`` says so.
"""

from __future__ import annotations

import os
import time

V1_ROOT = "/sys/fs/cgroup/memory"
V2_ROOT = "/sys/fs/cgroup"


def _own_cgroup() -> tuple[str, str] | None:
    """(version, directory of this process's memory cgroup) or None."""
    try:
        lines = open("/proc/self/cgroup").read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") and os.path.isdir(V1_ROOT):
            return "v1", os.path.join(V1_ROOT, path.lstrip("/"))
    for line in lines:
        if line.startswith("0::"):
            base = os.path.join(V2_ROOT, line[3:].lstrip("/"))
            try:
                if "memory" in open(os.path.join(base, "cgroup.subtree_control")).read().split():
                    return "v2", base
            except OSError:
                return None
    return None


class SlotCgroup:
    """A memory cgroup named after the slot uid; ``path`` is None when none could be made."""

    def __init__(self, uid: int, limit_mb: int):
        self.path: str | None = None
        self.version = ""
        if os.geteuid() != 0 or limit_mb <= 0:
            return
        own = _own_cgroup()
        if own is None:
            return
        version, base = own
        _sweep_stale(base)
        path = os.path.join(base, f"rlvr-sandbox-{uid}")
        limit = str(limit_mb << 20)
        try:
            os.makedirs(path, exist_ok=True)
            if version == "v1":
                _write(path, "memory.limit_in_bytes", limit)
                try:  # no swap either (fails harmlessly where swap accounting is off)
                    _write(path, "memory.memsw.limit_in_bytes", limit)
                except OSError:
                    pass
            else:
                _write(path, "memory.max", limit)
                _write(path, "memory.swap.max", "0")
        except OSError:
            _rmdir(path)
            return
        self.path, self.version = path, version

    def procs_file(self) -> str | None:
        return None if self.path is None else os.path.join(self.path, "cgroup.procs")

    def events_file(self) -> str | None:
        """The file whose ``oom_kill N`` line counts OOM kills in this cgroup."""
        if self.path is None:
            return None
        return os.path.join(self.path, "memory.oom_control" if self.version == "v1" else "memory.events")

    def remove(self) -> None:
        if self.path is not None:
            _rmdir(self.path)
            self.path = None


def _sweep_stale(base: str) -> None:
    """Remove slot cgroups whose owner died without closing (e.g. a SIGKILLed reward worker).

    A cgroup is stale when nobody holds its uid's lease (see base.UidLease) and no task is left in it.
    """
    import socket

    try:
        names = [n for n in os.listdir(base) if n.startswith("rlvr-sandbox-")]
    except OSError:
        return
    for name in names:
        uid = name.rsplit("-", 1)[-1]
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.bind(f"\0rlvr-sandbox-uid-{uid}")  # succeeds only when no live sandbox holds this uid
        except OSError:
            continue
        else:
            try:
                os.rmdir(os.path.join(base, name))  # fails while tasks remain: left alone
            except OSError:
                pass
        finally:
            probe.close()


def _write(path: str, name: str, value: str) -> None:
    with open(os.path.join(path, name), "w") as f:
        f.write(value)


def _rmdir(path: str) -> None:
    for _ in range(100):  # the last killed tasks may take a moment to leave
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
