"""Fallback backend: a fresh ``python -I -S`` per run under rlimits — NOT isolation.

Used by ``auto`` only when neither namespaces (forkserver) nor bubblewrap work; it then warns loudly.
Under root each slot still drops to its own uid and every process of that uid is killed after the run;
as an ordinary user the program runs as that user and only its process group is killed.
The bubblewrap backend reuses this spawn-wait-judge-clean cycle with a different command prefix.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

from rlvr.sandboxes import _job
from rlvr.sandboxes.base import ExecutionResult, Job, Sandbox, UidLease
from rlvr.sandboxes.config import SandboxConfig

NOT_ISOLATED = (
    "network (the program can reach 127.0.0.1 and any host the machine can), the host filesystem (writes to "
    "/tmp, /var/tmp, /dev/shm and any path the user may write persist; root-only files stay unreadable only "
    "under root's uid drop), host processes and their /proc entries (visible; signalable when same uid), "
    "environment of other processes of the same uid, SysV IPC, hostname; no memory cgroup (max_processes x "
    "memory_mb bounds a run); {daemons}")


@dataclass
class _Slot:
    lease: UidLease | None
    tmp_root: str


class SubprocessSandbox(Sandbox):
    backend = "subprocess"

    def __init__(self, cfg: SandboxConfig):
        if os.geteuid() == 0:
            python = cfg.resolved().python
            hidden = _job.hidden_ancestor(python)
            if hidden is not None:
                raise RuntimeError(
                    f"{self.backend} backend: the interpreter {python} lies under {hidden}, which the unprivileged "
                    f"slot uid cannot enter; pass python=<a world-readable interpreter> (e.g. /usr/bin/python3)")
        super().__init__(cfg)
        daemons = ("setsid daemons are killed through the slot uid" if self.uids else
                   "setsid/double-fork daemons outlive the run (only the process group is killed)")
        self.not_isolated = NOT_ISOLATED.format(daemons=daemons)
        c = self.cfg
        self.guarantees = (
            f"{self.backend} — isolated: only resource limits (wall {c.timeout_s}s, CPU, address space "
            f"{c.memory_mb} MiB, file size {c.max_file_mb} MiB, open files, processes"
            + (f" per slot uid {self.uids}; runs as that unprivileged uid, environment scrubbed)"
               if self.uids else "; environment scrubbed; runs as the calling user)")
            + f"\nnot isolated: {self.not_isolated}\n")

    # -- hooks for the bubblewrap subclass ------------------------------------------------------------------
    def _argv(self, work: str) -> tuple[list[str], str]:
        """(command, cwd) that runs main.py from ``work``."""
        return [self.cfg.python, "-I", "-S", "main.py"], work

    def _pass_fds(self) -> tuple[int, ...]:
        return ()

    def _after_drop(self) -> None:
        """Hook run in the child after the uid drop, just before exec."""

    def _program_status(self, status: int) -> int:
        """The program's wait status, from the status of the process we started."""
        return status

    # -- slots ----------------------------------------------------------------------------------------------
    def _start_slot(self, index: int) -> _Slot:
        lease = UidLease(self.cfg) if os.geteuid() == 0 else None
        root = tempfile.mkdtemp(prefix="rlvr-sandbox-")
        os.chmod(root, 0o711)  # the uid may enter its work dir but not list or open the root-only io dir
        return _Slot(lease, root)

    def _stop_slot(self, slot: _Slot) -> None:
        if slot.lease is not None:
            _kill_uid_until_gone(slot.lease.uid)
            slot.lease.release()
        shutil.rmtree(slot.tmp_root, ignore_errors=True)

    def _run_slot(self, slot: _Slot, job: Job) -> ExecutionResult:
        uid = slot.lease.uid if slot.lease else None
        work = os.path.join(slot.tmp_root, "w")
        io_dir = os.path.join(slot.tmp_root, "io")  # tmp_root is 0700 root: unreachable by path for the uid
        os.mkdir(work, 0o700)
        os.mkdir(io_dir, 0o700)
        try:
            return self._spawn_and_wait(job, uid, work, io_dir)
        finally:
            if uid is not None:
                _kill_uid_until_gone(uid)
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(io_dir, ignore_errors=True)

    def _spawn_and_wait(self, job: Job, uid: int | None, work: str, io_dir: str) -> ExecutionResult:
        cfg = self.cfg.worker_dict(uid)
        timeout = job.timeout_s or self.cfg.timeout_s
        cfg["timeout_s"] = timeout
        _job.write_job_files(work, job.program, job.files, uid)
        paths = [os.path.join(io_dir, n) for n in ("stdin", "stdout", "stderr")]
        with open(paths[0], "w", encoding="utf-8") as f:
            f.write(job.stdin or "")
        argv, cwd = self._argv(work)

        after_drop = self._after_drop

        def preexec() -> None:  # runs in the child between fork and exec; no imports, no locks
            _job.apply_rlimits(cfg)
            _job.drop_privileges(uid)
            after_drop()

        t0 = time.monotonic()
        with open(paths[0], "rb") as fin, open(paths[1], "wb") as fout, open(paths[2], "wb") as ferr:
            proc = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr, cwd=cwd, close_fds=True,
                                    env=_job.program_env(self._home(work)), start_new_session=True,
                                    preexec_fn=preexec, pass_fds=self._pass_fds())
        pidfd = os.pidfd_open(proc.pid)
        try:
            timed_out = not select.select([pidfd], [], [], timeout)[0]
        finally:
            os.close(pidfd)
        if timed_out:
            for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), lambda: os.kill(proc.pid, signal.SIGKILL)):
                try:
                    kill()
                except OSError:
                    pass
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = -1  # already reaped by wait4; keeps Popen from waiting or warning
        status = self._program_status(status)
        wall = time.monotonic() - t0
        cap = self.cfg.max_output_kb << 10
        stdout, out_size = _job.read_capped(paths[1], cap)
        stderr, err_size = _job.read_capped(paths[2], cap)
        cpu = ru.ru_utime + ru.ru_stime
        st, code = _job.classify(cfg, timed_out, status, cpu, out_size, err_size, stderr)
        if code == 1 and stderr.startswith("bwrap: ") and not stdout:
            st = "sandbox_error"
        return ExecutionResult(st, code, stdout, stderr, wall, cpu)

    def _home(self, work: str) -> str:
        return work


def _kill_uid_until_gone(uid: int, max_zombies: int = 4, zombie_wait_s: float = 5.0) -> None:
    """Kill every host process of ``uid`` (setsid daemons included) and wait until none is left.

    Killed orphans become zombies of the host's init. Zombies still count against RLIMIT_NPROC, so after a
    fork bomb wait (bounded) for init to reap them; an init that reaps lazily makes that wait visible.
    """
    for _ in range(200):
        _job.kill_uid(uid)
        if not _job.uid_alive(uid):
            break
        time.sleep(0.005)
    end = time.monotonic() + zombie_wait_s
    while _job.uid_tasks(uid)[1] > max_zombies and time.monotonic() < end:
        time.sleep(0.02)
