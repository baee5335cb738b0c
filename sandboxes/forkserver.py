"""Default backend: one warm Python worker per slot, each inside its own Linux namespaces.

Why: GRPO on code runs thousands of short programs per step. Starting an interpreter per run costs ~15 ms of
CPU; forking a warm one costs ~1 ms. Isolation comes from the kernel, not from monkey-patching ``os`` inside
the program's own process (which any program can undo).

Each slot is ``unshare --net --pid --ipc --uts --mount --fork --kill-child --mount-proc python -I -S
_worker.py``, the worker being PID 1 of the new pid namespace (see :mod:`rlvr.sandboxes._worker` for the
per-run protocol). Requires root (to create namespaces without a user namespace and to switch uid).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass

from rlvr.sandboxes import _job, _worker
from rlvr.sandboxes.base import ExecutionResult, Job, Sandbox, UidLease, sandbox_error
from rlvr.sandboxes.cgroup import SlotCgroup
from rlvr.sandboxes.config import SandboxConfig

UNSHARE_FLAGS = ["--net", "--pid", "--ipc", "--uts", "--mount", "--fork", "--kill-child", "--mount-proc"]
START_TIMEOUT_S = 15.0
GRACE_S = 10.0  # beyond the run's own deadline, how long the host waits for a worker before declaring it hung

GUARANTEES = """\
forkserver ({mode} mode) — isolated:
  network: own net namespace with no interfaces up; nothing (not even the host's 127.0.0.1) is reachable
  processes: own pid namespace; cannot see or signal host processes; every process of the slot uid
    (setsid daemons included) is SIGKILLed and reaped after each run
  identity: runs as the slot's own unprivileged uid {uids} with no groups; cannot read root-only files
    (/etc/shadow, /root, /proc/<pid>/environ of other processes) or signal the worker
  filesystem: / is read-only; /tmp, /dev/shm, /var/tmp, /run/lock are private tmpfs ({tmpfs_mb} MiB each),
    wiped after every run; stdio files are unreachable by path
  ipc/uts: own SysV IPC and hostname namespaces
  environment: scrubbed (PATH, HOME, TMPDIR, LANG only)
  limits: wall {timeout_s}s, CPU {cpu}s, address space {memory_mb} MiB, file size {max_file_mb} MiB,
    {max_open_files} open files, {max_processes} processes+threads per uid; {slot_mem}
not isolated:
  reads of world-readable host files (e.g. /etc/passwd, the Python stdlib, world-readable files in $HOME)
  the kernel itself (no seccomp filter; a kernel exploit escapes), CPU caches/timing side channels
  /sys is visible (read-only by permission); CPU time is not shared fairly between slots (no cpu cgroup)
  in fork mode the program shares the warm interpreter's state (preloaded stdlib modules); use mode=exec
    for exact `python -I -S` parity
"""


@dataclass
class _Slot:
    lease: UidLease
    cgroup: SlotCgroup
    proc: subprocess.Popen | None = None


def available() -> tuple[bool, str]:
    """Whether this backend can run here, and why not."""
    if os.geteuid() != 0:
        return False, "needs root (namespaces without a user namespace, and switching to slot uids)"
    unshare = shutil.which("unshare")
    if unshare is None:
        return False, "the unshare binary (util-linux) is missing"
    try:
        r = subprocess.run([unshare, *UNSHARE_FLAGS, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"unshare failed: {e!r}"
    if r.returncode != 0:
        return False, f"unshare {' '.join(UNSHARE_FLAGS)} failed: {r.stderr.decode(errors='replace').strip()}"
    return True, ""


class ForkServerSandbox(Sandbox):
    backend = "forkserver"

    def __init__(self, cfg: SandboxConfig):
        ok, why = available()
        if not ok:
            raise RuntimeError(f"forkserver backend unavailable: {why}")
        self._unshare = shutil.which("unshare")
        super().__init__(cfg)
        c = self.cfg
        cg = self._all[0].cgroup if self._all else None
        slot_mem = (f"memory cgroup per slot ({c.slot_memory_mb or 2 * c.memory_mb} MiB for all its processes "
                    f"and tmpfs, cgroup {cg.version})" if cg is not None and cg.path else
                    f"NO memory cgroup here, so {c.max_processes} processes x {c.memory_mb} MiB bound a slot")
        self.guarantees = GUARANTEES.format(
            mode=c.mode, uids=self.uids, tmpfs_mb=c.tmpfs_mb, timeout_s=c.timeout_s,
            cpu=_job.cpu_limit(c.worker_dict(None)), memory_mb=c.memory_mb, max_file_mb=c.max_file_mb,
            max_open_files=c.max_open_files, max_processes=c.max_processes, slot_mem=slot_mem)

    # -- slots ----------------------------------------------------------------------------------------------
    def _start_slot(self, index: int) -> _Slot:
        lease = UidLease(self.cfg)
        limit = self.cfg.slot_memory_mb or 2 * self.cfg.memory_mb
        slot = _Slot(lease, SlotCgroup(lease.uid, limit))
        try:
            self._spawn(slot)
        except BaseException:
            slot.cgroup.remove()
            slot.lease.release()
            raise
        return slot

    def _spawn(self, slot: _Slot) -> None:
        worker = os.path.abspath(_worker.__file__)
        wcfg = self.cfg.worker_dict(slot.lease.uid)
        wcfg["cgroup_procs"], wcfg["cgroup_events"] = slot.cgroup.procs_file(), slot.cgroup.events_file()
        argv = [self._unshare, *UNSHARE_FLAGS, self.cfg.python, "-I", "-S", worker, json.dumps(wcfg)]
        # Scrubbed environment and no inherited fds: the worker (and so every program) starts from nothing.
        slot.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                                     close_fds=True, cwd="/")
        msg = self._recv(slot, time.monotonic() + START_TIMEOUT_S)
        if msg is None or not msg.get("ready"):
            self._kill(slot)
            why = (msg or {}).get("fatal", "no answer from the worker")
            raise RuntimeError(f"forkserver worker failed to start: {why}")

    def _stop_slot(self, slot: _Slot) -> None:
        if slot.proc is not None:
            try:
                slot.proc.stdin.close()  # EOF: the worker exits and its namespace dies with it
                slot.proc.wait(timeout=5)
            except Exception:
                pass
            self._kill(slot)
        _worker_cleanup_host(slot.lease.uid)
        slot.cgroup.remove()
        slot.lease.release()

    def _kill(self, slot: _Slot) -> None:
        proc, slot.proc = slot.proc, None
        if proc is None:
            return
        # SIGKILL, not SIGTERM: unshare --kill-child then SIGKILLs PID 1, and PID 1 ignores SIGTERM anyway.
        try:
            proc.kill()
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except Exception:
                pass

    # -- one run --------------------------------------------------------------------------------------------
    def _run_slot(self, slot: _Slot, job: Job) -> ExecutionResult:
        if slot.proc is None or slot.proc.poll() is not None:
            self._kill(slot)
            self._spawn(slot)  # a worker that died (or was killed as hung) is replaced transparently
        timeout = job.timeout_s or self.cfg.timeout_s
        req = {"program": job.program, "stdin": job.stdin or "", "files": dict(job.files or {}),
               "timeout_s": timeout}
        t0 = time.monotonic()
        try:
            data = json.dumps(req).encode()
            slot.proc.stdin.write(struct.pack(">I", len(data)) + data)
            slot.proc.stdin.flush()
        except OSError as e:
            self._kill(slot)
            return sandbox_error(f"forkserver: worker pipe broken: {e!r}")
        msg = self._recv(slot, t0 + timeout + GRACE_S)
        if msg is None or "status" not in msg:
            self._kill(slot)
            _worker_cleanup_host(slot.lease.uid)
            why = (msg or {}).get("fatal", "worker died or hung")
            return sandbox_error(f"forkserver: {why}", time.monotonic() - t0)
        if msg.get("fatal"):
            self._kill(slot)  # the worker could not clean up: never reuse it
        return ExecutionResult(msg["status"], msg["exit_code"], msg["stdout"], msg["stderr"],
                               msg["wall_s"], msg["cpu_s"])

    @staticmethod
    def _recv(slot: _Slot, deadline: float) -> dict | None:
        fd = slot.proc.stdout.fileno()
        buf = bytearray()
        need = 4
        header_done = False
        while True:
            while len(buf) < need:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    return None
                chunk = os.read(fd, need - len(buf))
                if not chunk:
                    return None
                buf += chunk
            if header_done:
                return json.loads(bytes(buf[4:need]))
            need = 4 + struct.unpack(">I", bytes(buf[:4]))[0]
            header_done = True


def _worker_cleanup_host(uid: int) -> None:
    """Belt and braces after a worker died: kill any process of the slot uid left anywhere on the host."""
    try:
        _job.kill_uid(uid)
    except OSError:
        pass
    for _ in range(100):
        if not _job.uid_alive(uid):
            return
        time.sleep(0.01)
        try:
            _job.kill_uid(uid)
        except OSError:
            pass


