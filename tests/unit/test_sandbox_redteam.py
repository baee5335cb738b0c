"""Red-team suite: one hostile program per property, containment asserted from the host side.

Every test runs against the default backend (forkserver). The fallbacks run the same programs; properties a
fallback does not hold are marked ``xfail(strict=True)`` in FALLBACK_GAPS — that table *is* the documented
list of what each fallback does not isolate (a gap that closes makes the test fail until the table is fixed).
Only loopback addresses are ever used.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid

import pytest

from rlvr.sandboxes import Job, open_sandbox, probe
from rlvr.sandboxes._job import hidden_ancestor, uid_alive

LIMITS = dict(timeout_s=1.0, memory_mb=512, max_file_mb=8, max_output_kb=256, max_processes=32, workers=2)
SHORT = 0.5  # wall limit for the programs that can only end by being killed
SECRET = f"rlvr-secret-{uuid.uuid4().hex}"

# What each fallback backend does NOT hold (everything else is asserted for it too).
FALLBACK_GAPS = {
    "subprocess": {
        "write_tmp": "host /tmp, /dev/shm are shared",
        "network_tcp": "no network namespace",
        "network_udp": "no network namespace",
        "state_between_runs": "host /tmp and /dev/shm persist between runs",
        "delete_callers_files": "can delete files in directories the slot uid may write",
        "canary_world_writable_dir": "reads any file the uid can reach",
    },
    "bwrap": {},
}
if os.geteuid() != 0:  # without root the fallbacks cannot switch to a slot uid
    FALLBACK_GAPS["subprocess"].update({
        "canary_file": "runs as the calling user, who owns the canary",
        "daemon": "setsid daemons outlive the run (only the process group is killed)",
    })


def _backend_kwargs(name: str) -> dict:
    kw = dict(LIMITS)
    if name != "forkserver" and os.geteuid() == 0:
        # Under root, fallbacks run programs as a slot uid, which cannot enter pyenv's /root.
        import sys

        if hidden_ancestor(os.path.realpath(sys._base_executable)) is not None:
            if not os.path.exists("/usr/bin/python3"):
                pytest.skip("fallback under root needs a world-readable interpreter (/usr/bin/python3)")
            kw["python"] = "/usr/bin/python3"
    return kw


@pytest.fixture(scope="module", params=["forkserver", "bwrap", "subprocess"])
def sb(request):
    name = request.param
    ok, why = probe()[name]
    if not ok:
        pytest.skip(f"{name} backend unavailable here: {why}")
    os.environ["RLVR_TEST_SECRET"] = SECRET  # visible to this process; must never reach a program
    try:
        with pytest.warns(RuntimeWarning) if name == "subprocess" else _null():
            box = open_sandbox(name, **_backend_kwargs(name))
    finally:
        os.environ.pop("RLVR_TEST_SECRET", None)
    yield box
    uids = box.uids
    box.close()
    for uid in uids:
        assert not uid_alive(uid), f"uid {uid} still has processes after close"


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


@pytest.fixture
def gap(request, sb):
    """Mark the running test xfail(strict) when the current backend is known not to hold this property."""

    def check(prop: str):
        why = FALLBACK_GAPS.get(sb.backend, {}).get(prop)
        if why:
            request.applymarker(pytest.mark.xfail(strict=True, reason=f"{sb.backend}: {why}"))

    return check


def _no_leftovers(sb):
    for uid in sb.uids:
        assert not uid_alive(uid), f"processes of slot uid {uid} survived the run"


def _still_works(sb):
    r = sb.run("print(6 * 7)")
    assert r.status == "ok" and r.stdout == "42\n", r


# -- CPU and time ---------------------------------------------------------------------------------------------

def test_infinite_loop_is_killed(sb):
    r = sb.run("while True:\n    pass\n", timeout_s=SHORT)
    assert r.status == "timeout", r
    assert r.wall_s < SHORT + 2, r
    _no_leftovers(sb)


def test_sleep_hits_wall_deadline(sb):
    r = sb.run("import time\ntime.sleep(60)\n", timeout_s=SHORT)
    assert r.status == "timeout", r
    _no_leftovers(sb)


def test_sigterm_ignoring_program_is_killed(sb):
    r = sb.run("import signal, time\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
               "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.01)\n", timeout_s=SHORT)
    assert r.status == "timeout", r
    _no_leftovers(sb)


def test_busy_threads_and_child_processes_are_killed(sb):
    prog = ("import os, threading\n"
            "def spin():\n    while True: pass\n"
            "for _ in range(4): threading.Thread(target=spin, daemon=True).start()\n"
            "for _ in range(3):\n    if os.fork() == 0:\n        spin()\n"
            "spin()\n")
    r = sb.run(prog, timeout_s=SHORT)
    assert r.status == "timeout", r
    _no_leftovers(sb)
    _still_works(sb)


def test_fork_bomb_is_contained(sb):
    prog = ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n")
    r = sb.run(prog, timeout_s=SHORT)
    assert r.status in ("timeout", "runtime_error"), r
    _no_leftovers(sb)
    _still_works(sb)


def test_setsid_double_fork_daemon_dies_with_the_run(sb, gap):
    gap("daemon")
    name = f"rlvrd{uuid.uuid4().hex[:10]}"  # 15 chars: the daemon renames itself so the host can look for it
    prog = ("import ctypes, os, time\n"
            "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            f"        ctypes.CDLL(None).prctl(15, {name.encode()!r}, 0, 0, 0)\n        time.sleep(30)\n"
            "    os._exit(0)\n"
            "time.sleep(0.2)\nprint('parent done')\n")
    r = sb.run(prog)
    assert r.status == "ok" and "parent done" in r.stdout, r
    _no_leftovers(sb)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
            state = open(f"/proc/{pid}/stat", "rb").read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        assert comm != name or state == b"Z", f"daemon {pid} survived the run"


# -- memory, output, files, descriptors -------------------------------------------------------------------

def test_8gib_allocation_fails_as_memory(sb):
    r = sb.run("x = bytearray(8 << 30)\nprint('allocated')\n", timeout_s=5)
    assert r.status == "memory" and "allocated" not in r.stdout, r
    _still_works(sb)


def test_gradual_growth_fails_as_memory(sb):
    r = sb.run("chunks = []\nwhile True:\n    chunks.append(bytearray(64 << 20))\n", timeout_s=5)
    assert r.status == "memory", r
    _still_works(sb)


def test_200mb_file_is_capped(sb):
    prog = ("with open('big.bin', 'wb') as f:\n    for _ in range(200):\n        f.write(b'x' * (1 << 20))\n"
            "print('wrote 200MB')\n")
    r = sb.run(prog, timeout_s=5)
    assert r.status == "output_limit" and "wrote 200MB" not in r.stdout, r
    _still_works(sb)


def test_1gb_to_stdout_is_capped(sb):
    r = sb.run("import sys\nchunk = 'y' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n", timeout_s=5)
    assert r.status == "output_limit", r
    assert len(r.stdout) <= LIMITS["max_output_kb"] << 10
    _still_works(sb)


def test_100k_file_descriptors_are_refused(sb):
    prog = ("import os\nfds = []\ntry:\n    for _ in range(100_000):\n        fds.append(os.open('/dev/null', os.O_RDONLY))\n"
            "except OSError as e:\n    print('stopped at', len(fds), e.errno)\n")
    r = sb.run(prog)
    assert r.status == "ok" and "stopped at" in r.stdout, r
    assert int(r.stdout.split()[2]) < 100_000
    _still_works(sb)


def test_ctypes_segfault_is_a_runtime_error(sb):
    r = sb.run("import ctypes\nctypes.string_at(0)\n")
    assert r.status == "runtime_error" and r.exit_code == -11, r
    _still_works(sb)


def test_unbounded_recursion_is_contained(sb):
    # Python 3.11 keeps pure-Python frames on the heap: the program grows until the address-space or the
    # time limit stops it (or segfaults on the C stack) — contained either way, never a hang or a host error.
    r = sb.run("import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return f(n + 1) + 1\nf(0)\n", timeout_s=SHORT)
    assert r.status in ("runtime_error", "memory", "timeout"), r
    _no_leftovers(sb)
    _still_works(sb)


# -- filesystem -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["/root", "/usr", "/tmp", "/dev/shm", "parent"])
def test_writes_do_not_reach_the_host(sb, gap, where):
    if where in ("/tmp", "/dev/shm"):
        gap("write_tmp")
    name = f"rlvr-redteam-{uuid.uuid4().hex}"
    target = "os.path.dirname(os.getcwd())" if where == "parent" else repr(where)
    prog = (f"import os\np = os.path.join({target}, {name!r})\n"
            "try:\n    open(p, 'w').write('pwned')\n    print('wrote', p)\nexcept OSError as e:\n    print('denied', e)\n")
    r = sb.run(prog)
    assert r.status == "ok", r
    written = r.stdout.split()[1] if r.stdout.startswith("wrote") else None
    try:
        for base in ("/root", "/usr", "/tmp", "/dev/shm", "/var/tmp"):
            assert not os.path.exists(os.path.join(base, name)), f"program wrote {base}/{name} on the host"
        if written:
            assert not os.path.exists(written), f"program wrote {written} on the host"
    finally:
        for base in ("/root", "/usr", "/tmp", "/dev/shm", "/var/tmp"):
            p = os.path.join(base, name)
            if os.path.exists(p):
                os.unlink(p)


def test_no_state_survives_into_the_next_run(sb, gap):
    gap("state_between_runs")
    tag = uuid.uuid4().hex
    write = (f"import os\nfor d in ('/tmp', '/dev/shm', '/var/tmp', os.getcwd()):\n"
             f"    try:\n        open(os.path.join(d, 'state-{tag}'), 'w').write('x')\n    except OSError:\n        pass\n")
    check = (f"import os\nfor d in ('/tmp', '/dev/shm', '/var/tmp', os.getcwd()):\n"
             f"    if os.path.exists(os.path.join(d, 'state-{tag}')):\n        print('found', d)\n")
    try:
        # Two slots: writing and checking twice each covers every slot (slots are handed out FIFO).
        for r in sb.run_many([Job(write), Job(write)]):
            assert r.status == "ok", r
        for r in sb.run_many([Job(check), Job(check)]):
            assert r.status == "ok" and "found" not in r.stdout, r
    finally:
        for d in ("/tmp", "/dev/shm", "/var/tmp"):
            p = os.path.join(d, f"state-{tag}")
            if os.path.exists(p):
                os.unlink(p)


def test_callers_files_cannot_be_deleted(sb, gap):
    gap("delete_callers_files")
    d = tempfile.mkdtemp(prefix="rlvr-redteam-", dir="/var/tmp")
    try:
        os.chmod(d, 0o777)  # even a directory anyone may write: the program must not reach it
        precious = os.path.join(d, "precious.txt")
        with open(precious, "w") as f:
            f.write("keep me")
        prog = (f"import os, shutil\nfor f in ({precious!r},):\n    try:\n        os.remove(f)\n    except OSError as e:\n"
                f"        print('denied', e)\nshutil.rmtree({d!r}, ignore_errors=True)\n")
        sb.run(prog)
        assert os.path.exists(precious)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# -- secrets --------------------------------------------------------------------------------------------------

def test_environment_secrets_are_not_visible(sb):
    r = sb.run("import os\nprint(dict(os.environ))\n")
    assert r.status == "ok" and SECRET not in r.stdout and "RLVR_TEST_SECRET" not in r.stdout, r


def test_etc_shadow_is_unreadable(sb):
    r = sb.run("print(open('/etc/shadow').read())\n")
    assert r.status == "runtime_error" and "root:" not in r.stdout, r


def test_canary_file_is_unreadable(sb, gap, tmp_path):
    gap("canary_file")
    canary = tmp_path / "canary.txt"
    canary.write_text(SECRET)
    canary.chmod(0o600)
    r = sb.run(f"print(open({str(canary)!r}).read())\n")
    assert SECRET not in r.stdout and r.status != "ok"


def test_canary_in_world_writable_dir_is_unreadable(sb, gap):
    gap("canary_world_writable_dir")
    d = tempfile.mkdtemp(prefix="rlvr-canary-", dir="/var/tmp")
    try:
        os.chmod(d, 0o755)
        p = os.path.join(d, "canary.txt")
        with open(p, "w") as f:
            f.write(SECRET)
        os.chmod(p, 0o644)  # world-readable on the host: only a private filesystem view hides it
        r = sb.run(f"print(open({p!r}).read())\n")
        assert SECRET not in r.stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_proc_environ_of_parent_and_init_is_unreadable(sb):
    prog = ("import os\nfor pid in (os.getppid(), 1):\n    try:\n        print(open(f'/proc/{pid}/environ', 'rb').read())\n"
            "    except OSError as e:\n        print('denied', pid, e.errno)\n")
    r = sb.run(prog)
    assert SECRET not in r.stdout and "RLVR_TEST_SECRET" not in r.stdout


# -- processes and network ------------------------------------------------------------------------------------

def test_kill_parent_init_and_everyone(sb):
    if sb.backend == "subprocess" and not sb.uids:
        pytest.skip("subprocess backend as the calling user: kill(-1) would kill this test run (not isolated)")
    prog = ("import os, signal\nfor pid in (os.getppid(), 1, -1):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
            "    except OSError as e:\n        print('denied', pid, e.errno)\nprint('survived')\n")
    sb.run(prog)  # kill(-1) may kill the program itself: any status is fine, the host must be unharmed
    assert os.getpid() > 0
    _still_works(sb)
    _still_works(sb)  # both slots
    _no_leftovers(sb)


def test_tcp_to_loopback_listener_sees_nothing(sb, gap):
    gap("network_tcp")
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    port = srv.getsockname()[1]
    try:
        prog = (f"import socket\ntry:\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=0.5)\n"
                "    s.sendall(b'exfiltrated')\n    print('connected')\nexcept OSError as e:\n    print('blocked', e)\n")
        sb.run(prog)
        with pytest.raises(BlockingIOError):
            srv.accept()
    finally:
        srv.close()


def test_udp_to_loopback_listener_sees_nothing(sb, gap):
    gap("network_udp")
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.setblocking(False)
    port = srv.getsockname()[1]
    try:
        prog = (f"import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ntry:\n"
                f"    s.sendto(b'exfiltrated', ('127.0.0.1', {port}))\n    print('sent')\nexcept OSError as e:\n"
                "    print('blocked', e)\n")
        sb.run(prog)
        with pytest.raises(BlockingIOError):
            srv.recvfrom(100)
    finally:
        srv.close()


@pytest.mark.slow
def test_memory_summed_over_processes_is_capped_by_the_slot_cgroup():
    # Each child stays under RLIMIT_AS; only the slot's cgroup can stop their sum. The kernel reclaims for
    # a few seconds before its OOM killer acts, hence slow.
    if not probe()["forkserver"][0]:
        pytest.skip("forkserver unavailable")
    with open_sandbox("forkserver", workers=1, timeout_s=20, memory_mb=512, slot_memory_mb=512) as box:
        if "NO memory cgroup" in box.guarantees:
            pytest.skip("this host does not let root create a memory cgroup")
        prog = ("import os, time\npids = []\nfor _ in range(4):\n    pid = os.fork()\n    if pid == 0:\n"
                "        x = bytearray(400 << 20)\n        time.sleep(1)\n        os._exit(0)\n    pids.append(pid)\n"
                "print([os.waitpid(p, 0)[1] for p in pids])\n")
        r = box.run(prog)
        assert r.status == "memory", r
        assert "9" in r.stdout, r  # some children were SIGKILLed by the OOM killer, inside the slot only
        assert box.run("print(1)").stdout == "1\n"
        path = box._all[0].cgroup.path
    assert not os.path.exists(path), "slot cgroup left behind"
