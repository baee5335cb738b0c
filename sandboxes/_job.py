"""One job's life that every backend shares: its files, limits and uid, and how its end is judged.

Used on the host by the ``subprocess`` and ``bwrap`` backends and inside each slot by the fork-server worker
(:mod:`rlvr.sandboxes._worker`), so every backend applies the same rlimits, drops privileges the same way and
maps an exit status to the same ``ExecutionResult.status``. Standard library only: the worker loads this file
under ``python -I -S``, where nothing else is importable.
"""

from __future__ import annotations

import os
import resource
import signal


def cpu_limit(cfg: dict) -> int:
    return int(cfg.get("cpu_s") or (int(cfg["timeout_s"]) + 1))


def apply_rlimits(cfg: dict) -> None:
    """Set the per-process limits; called in the child before it drops privileges (root could raise them)."""
    cpu = cpu_limit(cfg)
    mem = int(cfg["memory_mb"]) << 20
    fsize = int(cfg["max_file_mb"]) << 20
    limits = [
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),  # SIGXCPU at soft, SIGKILL at hard
        (resource.RLIMIT_AS, (mem, mem)),
        (resource.RLIMIT_FSIZE, (fsize, fsize)),  # Python ignores SIGXFSZ: writes past it fail with EFBIG
        (resource.RLIMIT_NOFILE, (int(cfg["max_open_files"]),) * 2),
        (resource.RLIMIT_NPROC, (int(cfg["max_processes"]),) * 2),  # per uid; only binds a non-root uid
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_MEMLOCK, (0, 0)),
        (resource.RLIMIT_MSGQUEUE, (0, 0)),
    ]
    for which, value in limits:
        resource.setrlimit(which, value)


def drop_privileges(uid: int | None) -> None:
    """Become ``uid`` for good (real, effective and saved ids; no supplementary groups). No-op for None."""
    if uid is None or os.geteuid() != 0:
        return
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` visible in this pid namespace, including setsid daemons.

    kill(-1) from a process running as ``uid`` reaches exactly the processes it may signal: those of ``uid``.
    That is why every slot needs its own uid — with a shared one, cleaning one slot would kill the others.
    """
    pid = os.fork()
    if pid == 0:
        try:
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        except BaseException:
            pass
        os._exit(0)
    os.waitpid(pid, 0)


def uid_tasks(uid: int) -> tuple[int, int]:
    """(live processes, zombies) of ``uid`` visible in /proc."""
    live = zombies = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid != uid:
                    continue
                with open(f"/proc/{name}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state in (b"Z", b"X"):
                zombies += 1
            else:
                live += 1
    return live, zombies


def uid_alive(uid: int) -> bool:
    """Whether a live (non-zombie) process of ``uid`` exists; a zombie holds no resources and runs nothing."""
    return uid_tasks(uid)[0] > 0


def classify(cfg: dict, timed_out: bool, wait_status: int, cpu_s: float | None,
             out_size: int, err_size: int, stderr_tail: str, oom_killed: bool = False) -> tuple[str, int | None]:
    """Map how a run ended to (status, exit_code); exit_code is -signal when a signal killed it."""
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        code: int | None = -sig
    else:
        sig = None
        code = os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else None
    max_out = int(cfg["max_output_kb"]) << 10
    tail = stderr_tail[-2000:]
    if timed_out or sig == signal.SIGXCPU or (sig == signal.SIGKILL and (cpu_s or 0) >= cpu_limit(cfg) - 0.05):
        return "timeout", code
    if oom_killed:
        return "memory", code
    if code == 0:
        return ("output_limit" if max(out_size, err_size) > max_out else "ok"), code
    if sig == signal.SIGXFSZ or "File too large" in tail or max(out_size, err_size) > max_out:
        return "output_limit", code
    if "MemoryError" in tail or "Cannot allocate memory" in tail or "std::bad_alloc" in tail:
        return "memory", code
    return "runtime_error", code


def read_capped(path: str, cap: int) -> tuple[str, int]:
    """(text of the first ``cap`` bytes, full size in bytes)."""
    try:
        with open(path, "rb") as f:
            data = f.read(cap)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return "", 0
    return data.decode("utf-8", "replace"), size


def program_env(home: str) -> dict[str, str]:
    """The whole environment a program sees: nothing inherited, so no secrets can leak through it."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8"}


def write_job_files(work: str, program: str, files: dict | None, uid: int | None) -> None:
    """Create main.py and the job's extra files under ``work``, owned by the slot uid."""
    entries = dict(files or {})
    entries["main.py"] = program
    for rel, text in entries.items():
        if os.path.isabs(rel) or ".." in rel.split("/"):
            raise ValueError(f"job file path must be relative and stay inside the work dir: {rel!r}")
        path = os.path.join(work, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    if uid is not None and os.geteuid() == 0:
        for root, dirs, names in os.walk(work):
            for n in dirs + names:
                os.chown(os.path.join(root, n), uid, uid)
        os.chown(work, uid, uid)


def hidden_ancestor(path: str) -> str | None:
    """Highest ancestor directory of ``path`` that other users cannot traverse (e.g. /root), else None."""
    parts = os.path.realpath(path).split("/")
    for i in range(2, len(parts) + 1):
        d = "/".join(parts[:i])
        if not os.stat(d).st_mode & 0o001:
            return d
    return None
