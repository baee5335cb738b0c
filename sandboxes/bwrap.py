"""Bubblewrap backend: a fresh ``python -I -S`` per run inside bwrap's namespaces, for hosts without root.

Install: ``apt-get install -y bubblewrap``. bwrap is started with a scrubbed environment (``--clearenv``
too), as the calling user — or, when the caller is root, as the slot's own unprivileged uid, so bwrap uses
an unprivileged user namespace and the program can never hold real root. Every namespace is unshared
(user, pid, net, ipc, uts, cgroup), / is bound read-only, /tmp, /var/tmp, /run/lock and /dev/shm are fresh
tmpfs, /proc belongs to the new pid namespace, and ``--die-with-parent`` plus the pid namespace make
killing bwrap kill everything the program started, daemons included.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from rlvr.sandboxes.subproc import SubprocessSandbox

INNER_WORK = "/tmp/w"


def available() -> tuple[bool, str]:
    exe = shutil.which("bwrap")
    if exe is None:
        return False, "bubblewrap is not installed (apt-get install -y bubblewrap)"
    argv = [exe, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev", "--proc",
            "/proc", "--tmpfs", "/tmp", "true"]
    try:
        preexec = None
        if os.geteuid() == 0:  # probe the way runs happen: as an unprivileged uid
            def preexec():
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
        r = subprocess.run(argv, capture_output=True, timeout=10, env={"PATH": "/usr/bin:/bin"},
                           preexec_fn=preexec, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"bwrap failed: {e!r}"
    if r.returncode != 0:
        return False, f"bwrap cannot create namespaces here: {r.stderr.decode(errors='replace').strip()}"
    return True, ""


class BwrapSandbox(SubprocessSandbox):
    backend = "bwrap"

    def __init__(self, cfg):
        ok, why = available()
        if not ok:
            raise RuntimeError(f"bwrap backend unavailable: {why}")
        self._bwrap = shutil.which("bwrap")
        super().__init__(cfg)
        c = self.cfg
        who = f"the slot's unprivileged uid {self.uids}" if self.uids else "the calling user (inside a user namespace)"
        self.not_isolated = (
            "reads of host files readable by " + who + " (e.g. world-readable files; under a non-root caller "
            "the caller's own files such as $HOME, read-only); the kernel (no seccomp filter beyond bwrap's "
            "defaults); no memory cgroup (RLIMIT_AS per process, so max_processes x memory_mb bounds a run)")
        self.guarantees = (
            f"bwrap — isolated: own user/pid/net/ipc/uts/cgroup namespaces (no network at all, host processes "
            f"invisible, everything killed with the run), runs as {who}, / read-only, private tmpfs /tmp "
            f"/var/tmp /run/lock /dev/shm discarded per run, scrubbed environment; limits: wall {c.timeout_s}s, "
            f"address space {c.memory_mb} MiB, file size {c.max_file_mb} MiB, open files, processes. A fresh "
            f"interpreter per run (exact `python -I -S` parity, ~2x slower than forkserver).\n"
            f"not isolated: {self.not_isolated}\n")

    def _argv(self, work: str) -> tuple[list[str], str]:
        argv = [self._bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
                "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                "--tmpfs", "/tmp", "--tmpfs", "/var/tmp", "--tmpfs", "/run/lock",
                "--bind", work, INNER_WORK, "--chdir", INNER_WORK, "--hostname", "sandbox"]
        for k, v in sorted(self._env().items()):
            argv += ["--setenv", k, v]
        return argv + ["--", self.cfg.python, "-I", "-S", "main.py"], "/"

    def _program_status(self, status: int) -> int:
        # bwrap's init reports a program killed by signal N as exit code 128+N; turn it back into a signal
        # (a program that itself exits with 129..159 is therefore reported as killed by a signal).
        if os.WIFEXITED(status) and 128 < os.WEXITSTATUS(status) < 160:
            return os.WEXITSTATUS(status) - 128
        return status

    def _env(self) -> dict[str, str]:
        from rlvr.sandboxes._job import program_env

        return program_env(INNER_WORK)

    def _home(self, work: str) -> str:
        return INNER_WORK
