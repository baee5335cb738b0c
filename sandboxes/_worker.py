"""The warm fork-server worker: PID 1 of a sandbox slot's namespaces, running one program at a time.

Started once per slot by :mod:`rlvr.sandboxes.forkserver` as a script (``python -I -S _worker.py CONFIG_JSON``)
inside fresh net/pid/ipc/uts/mount namespaces, it makes the root filesystem read-only, mounts private tmpfs on
/tmp, /dev/shm, /var/tmp and /run/lock, then serves run requests from the host over its stdin/stdout pipes
(4-byte length + JSON). It imports nothing but the standard library and its sibling :mod:`rlvr.sandboxes._job`
(the limits, privilege drop, uid-wide kill and status classification every backend shares), imported from its
own folder for that one import, because ``-I -S`` puts neither ``rlvr`` nor that folder on ``sys.path``.

Per run the worker forks a child that starts its own session/process group, redirects stdio to files the
program cannot reach by path (a root-only directory), applies rlimits, drops to the slot's own uid and then
either runs the program in the warm interpreter (mode "fork") or execs ``python -I -S main.py`` (mode "exec").
Afterwards — whatever the program did — the worker kills every process of the slot uid, reaps everything in
the namespace (orphans reparent to PID 1, i.e. to the worker) and wipes all tmpfs mounts, so no process,
file or IPC object survives into the next run.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import struct
import sys
import time

if __name__ == "__main__":  # the fork server: -I -S put neither rlvr nor this folder on sys.path
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _job import (apply_rlimits, classify, drop_privileges, hidden_ancestor, kill_uid, program_env, read_capped,
                      write_job_files)
    del sys.path[0]  # a program run in this interpreter (mode "fork") must not see the sandbox's own modules
else:
    from rlvr.sandboxes._job import (apply_rlimits, classify, drop_privileges, hidden_ancestor, kill_uid, program_env, read_capped,
                                     write_job_files)

IO_DIR = "/tmp/.rlvr-io"  # root-only (0700): stdio files live here so the program cannot open them by path
WORK_DIR = "/tmp/w"
SCRUB_MOUNTS = ("/tmp", "/dev/shm", "/var/tmp", "/run/lock")
SETUP_FAILED = 125  # exit code of a child whose sandbox set-up failed before the program started

# Linux mount(2) flags (not exposed by the os module).
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC = 1, 2, 4, 32, 4096, 8192, 16384


def _mount(src, target, fstype, flags, data=None):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    if libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _setup_mounts(cfg: dict) -> None:
    # unshare(1) already made every mount private, so none of this propagates to the host.
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    opts = f"size={int(cfg['tmpfs_mb'])}m,nr_inodes=16384,mode=1777"
    for target in SCRUB_MOUNTS:
        if os.path.isdir(target):
            _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, opts)
    # The interpreter may live where the slot uid cannot go (pyenv under /root, mode 0700). Cover that
    # directory with an empty read-only tmpfs (hiding its other contents too) and bind only the interpreter
    # prefix back in, read-only, at the same path.
    prefix = os.path.realpath(sys.base_prefix)
    hidden = hidden_ancestor(prefix)
    if hidden is not None:
        stage = "/tmp/.rlvr-stage"
        os.mkdir(stage)
        _mount(prefix, stage, None, MS_BIND | MS_REC)
        _mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
        os.makedirs(prefix, 0o755)
        _mount(stage, prefix, None, MS_MOVE)
        _mount(None, prefix, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        _mount(None, hidden, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.rmdir(stage)
    os.mkdir(IO_DIR, 0o700)


def _wipe() -> None:
    """Empty every writable mount; runs as root after all slot processes are dead."""
    for top in SCRUB_MOUNTS:
        try:
            names = os.listdir(top)
        except OSError:
            continue
        for name in names:
            path = os.path.join(top, name)
            if path == IO_DIR:
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass


def _reap_all(uid: int, deadline_s: float = 5.0) -> bool:
    """Kill the slot uid and reap until the namespace holds only us. False if something refused to die."""
    # Every process in this pid namespace descends from us (PID 1; orphans reparent here), so when we have
    # no child left, alive or zombie, the namespace is empty — the common case, and no helper fork needed.
    try:
        if os.waitpid(-1, os.WNOHANG) == (0, 0):
            pass
    except ChildProcessError:
        return True
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        kill_uid(uid)
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                break
        time.sleep(0.001)
    return False


_KEEP: list = []


def _run_in_process(program_path: str) -> None:
    """Behave like ``python -I -S main.py`` inside this already-warm interpreter, then exit."""
    import builtins
    import traceback
    import types

    mod = types.ModuleType("__main__")
    mod.__file__ = program_path
    mod.__builtins__ = builtins
    sys.modules["__main__"] = mod
    sys.argv = ["main.py"]
    # The worker's own stream objects own fds 0-2 (closefd=True): keep them alive, or replacing them would
    # close the program's freshly dup2'ed stdio.
    _KEEP.extend((sys.stdin, sys.stdout, sys.stderr))
    sys.stdin = sys.__stdin__ = open(0, "r", encoding="utf-8", closefd=False)
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace",
                                       closefd=False)
    rc = 0
    try:
        with open(program_path, "rb") as f:
            code = compile(f.read(), program_path, "exec")
        exec(code, mod.__dict__)
    except SystemExit as e:
        if e.code is None:
            rc = 0
        elif isinstance(e.code, int):
            rc = e.code & 0xFF
        else:
            print(e.code, file=sys.stderr)
            rc = 1
    except BaseException:
        etype, value, tb = sys.exc_info()
        try:  # report like the interpreter does, without this runner's own frame
            tb = tb.tb_next if tb is not None else None
            sys.excepthook(etype, value.with_traceback(tb), tb)
        except BaseException:
            traceback.print_exc()
        rc = 1
    try:  # interpreter shutdown as CPython does it: join non-daemon threads, run atexit, flush
        threading = sys.modules.get("threading")
        if threading is not None:
            threading._shutdown()
        import atexit
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
        rc = rc or 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            rc = rc or 120  # what CPython returns when flushing stdout fails at exit
    os._exit(rc)


def _child(cfg: dict, uid: int, ready_w: int, stdin_path: str, out_path: str, err_path: str) -> None:
    try:
        os.setsid()  # own session and process group: the deadline kill takes the whole group
        fds = [os.open(stdin_path, os.O_RDONLY), os.open(out_path, os.O_WRONLY), os.open(err_path, os.O_WRONLY)]
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
        os.dup2(ready_w, 3)
        os.closerange(4, 1 << 16)  # the host pipes, pidfds and everything else the worker holds
        os.chdir(WORK_DIR)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as CPython sets them at start-up
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        if cfg.get("cgroup_procs"):
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")  # at the slot's memory limit the OOM killer takes a program, not the worker
        apply_rlimits(cfg)
        drop_privileges(uid)
        env = program_env(WORK_DIR)
        os.environ.clear()
        os.environ.update(env)
        os.write(3, b"1")
        if cfg["mode"] == "exec":
            os.set_inheritable(3, False)  # closes on a successful exec; still open to report a failed one
            os.execve(cfg["python"], [cfg["python"], "-I", "-S", "main.py"], env)
        os.close(3)
    except BaseException as e:
        try:
            os.write(3, b"E")
            os.write(2, f"sandbox set-up failed: {e!r}\n".encode())
        finally:
            os._exit(SETUP_FAILED)
    try:
        _run_in_process(os.path.join(WORK_DIR, "main.py"))
    except BaseException as e:
        try:
            os.write(2, f"sandbox: in-process runner failed: {e!r}\n".encode())
        except BaseException:
            pass
    finally:
        os._exit(1)  # the child must never return into the worker's loop, whatever happened


def _run_one(cfg: dict, req: dict, host_fd: int) -> dict:
    uid = int(cfg["uid"])
    timeout = float(req.get("timeout_s") or cfg["timeout_s"])
    cfg = dict(cfg, timeout_s=timeout)  # a job's own wall limit also sets its default CPU limit
    os.mkdir(WORK_DIR, 0o700)
    write_job_files(WORK_DIR, req["program"], req.get("files"), uid)
    paths = [os.path.join(IO_DIR, n) for n in ("stdin", "stdout", "stderr")]
    with open(paths[0], "w", encoding="utf-8") as f:
        f.write(req.get("stdin") or "")
    for p in paths[1:]:
        open(p, "wb").close()
    ready_r, ready_w = os.pipe()
    oom_before = _oom_kills(cfg)
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(cfg, uid, ready_w, *paths)
    os.close(ready_w)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(host_fd, select.POLLHUP | select.POLLERR)
    timed_out = False
    while True:
        left = t0 + timeout - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        events = poller.poll(left * 1000)
        if any(fd == host_fd for fd, _ in events):
            os._exit(3)  # the host is gone: dying as PID 1 tears the whole namespace down
        if any(fd == pidfd for fd, _ in events):
            break
    if timed_out:
        for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
            try:
                target()
            except OSError:
                pass
    _, status, ru = os.wait4(pid, 0)
    wall = time.monotonic() - t0
    os.close(pidfd)
    started = os.read(ready_r, 2) == b"1" if select.select([ready_r], [], [], 0)[0] else False
    os.close(ready_r)
    clean = _reap_all(uid)
    cap = int(cfg["max_output_kb"]) << 10
    stdout, out_size = read_capped(paths[1], cap)
    stderr, err_size = read_capped(paths[2], cap)
    _wipe()
    cpu = ru.ru_utime + ru.ru_stime
    if not started:
        return {"status": "sandbox_error", "exit_code": None, "stdout": stdout,
                "stderr": stderr or "sandbox set-up failed", "wall_s": wall, "cpu_s": cpu}
    oom = _oom_kills(cfg) > oom_before
    st, code = classify(cfg, timed_out, status, cpu, out_size, err_size, stderr, oom)
    res = {"status": st, "exit_code": code, "stdout": stdout, "stderr": stderr, "wall_s": wall, "cpu_s": cpu}
    if not clean:
        res["fatal"] = f"processes of uid {uid} survived SIGKILL"
    return res


def _oom_kills(cfg: dict) -> int:
    path = cfg.get("cgroup_events")
    if not path:
        return 0
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _recv(fd: int) -> dict | None:
    head = _read_exact(fd, 4)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def send(fd: int, msg: dict) -> None:
    data = json.dumps(msg).encode()
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def main() -> None:
    cfg = json.loads(sys.argv[1])
    host_in, host_out = 0, 1
    try:
        if os.getpid() != 1:
            raise RuntimeError("the fork server must run as PID 1 of a new pid namespace")
        _setup_mounts(cfg)
        if cfg.get("cgroup_procs"):
            with open(cfg["cgroup_procs"], "w") as f:
                f.write("0")  # this process, so every program of the slot is charged to the slot's cgroup
            try:  # lowering needs CAP_SYS_RESOURCE, which some hosts drop; programs raise theirs anyway
                with open("/proc/self/oom_score_adj", "w") as f:
                    f.write("-1000")
            except OSError:
                pass
        for name in cfg.get("preload") or ():
            try:
                __import__(name)
            except ImportError:
                pass
        import gc

        gc.collect()
        gc.freeze()  # keep the collector's writes off the inherited heap: fewer copy-on-write faults per fork
    except BaseException as e:
        send(host_out, {"fatal": f"worker start-up failed: {e!r}"})
        return
    send(host_out, {"ready": True})
    while True:
        req = _recv(host_in)
        if req is None:
            return  # host closed the pipe: exit, which kills everything left in the namespace
        try:
            res = _run_one(cfg, req, host_in)
        except BaseException as e:
            _reap_all(int(cfg["uid"]))
            _wipe()
            res = {"status": "sandbox_error", "exit_code": None, "stdout": "", "stderr": f"worker: {e!r}",
                   "wall_s": 0.0, "cpu_s": None}
        send(host_out, res)
        if res.get("fatal"):
            return


if __name__ == "__main__":
    main()
