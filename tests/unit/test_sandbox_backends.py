"""Sandbox API behaviour: backend choice, config, interpreter parity, result statuses, recovery."""

from __future__ import annotations

import os
from dataclasses import fields

import pytest

from rlvr.sandboxes import STATUSES, ExecutionResult, Job, SandboxConfig, open_sandbox, probe
from rlvr.sandboxes._job import uid_alive


@pytest.fixture(scope="module", params=["fork", "exec"])
def fs(request):
    if not probe()["forkserver"][0]:
        pytest.skip(f"forkserver unavailable: {probe()['forkserver'][1]}")
    with open_sandbox("forkserver", mode=request.param, workers=2, timeout_s=3) as sb:
        yield sb


def test_every_config_field_explains_its_trade_off():
    for f in fields(SandboxConfig):
        assert len(f.metadata.get("help", "")) > 15, f.name


def test_config_errors_are_reported_together():
    with pytest.raises(ValueError) as e:
        SandboxConfig(backend="docker", mode="spawn", timeout_s=0).resolved()
    assert "backend" in str(e.value) and "mode" in str(e.value) and "timeout_s" in str(e.value)
    with pytest.raises(TypeError, match="unknown sandbox option"):
        open_sandbox(timeout=3)


def test_auto_picks_the_strongest_available_backend():
    caps = probe()
    expected = next(b for b in ("forkserver", "bwrap", "subprocess") if caps[b][0])
    if expected == "subprocess":
        pytest.skip("only the unisolated fallback works here")
    with open_sandbox(workers=1) as sb:
        assert sb.backend == expected
        assert "not isolated" in sb.guarantees and "isolated" in sb.guarantees


def test_statuses_and_result_shape(fs):
    cases = {
        "print('hi')": ("ok", 0),
        "raise ValueError('boom')": ("runtime_error", 1),
        "import sys\nsys.exit(3)": ("runtime_error", 3),
        "import sys\nsys.exit('bye')": ("runtime_error", 1),
        "import sys\nsys.exit(0)": ("ok", 0),
    }
    results = fs.run_many([Job(p) for p in cases])
    for (prog, (status, code)), r in zip(cases.items(), results):
        assert isinstance(r, ExecutionResult) and r.status in STATUSES
        assert (r.status, r.exit_code) == (status, code), (prog, r)
        assert r.wall_s >= 0 and r.cpu_s is not None
    assert "ValueError: boom" in results[1].stderr
    assert "_worker" not in results[1].stderr  # tracebacks look like the interpreter's own


def test_interpreter_parity(fs):
    prog = ("import sys, os\nprint(__name__, sys.argv, sys.flags.isolated, sys.flags.no_site)\n"
            "print(input().upper())\nprint(open('data/x.txt').read())\nprint(os.getcwd())\n")
    r = fs.run(prog, stdin="abc\n", files={"data/x.txt": "payload"})
    assert r.status == "ok", r
    lines = r.stdout.splitlines()
    assert lines[0] == "__main__ ['main.py'] 1 1"
    assert lines[1:3] == ["ABC", "payload"]


def test_non_daemon_threads_are_joined_and_atexit_runs(fs):
    prog = ("import threading, time, atexit\natexit.register(lambda: print('atexit'))\n"
            "def late():\n    time.sleep(0.1)\n    print('thread done')\n"
            "threading.Thread(target=late).start()\n")
    r = fs.run(prog)
    assert r.stdout == "thread done\natexit\n", r


def test_run_many_keeps_input_order(fs):
    results = fs.run_many([Job(f"import time\ntime.sleep({0.05 * (i % 3)})\nprint({i})") for i in range(12)])
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(12)]


def test_job_paths_must_stay_inside_the_work_dir(fs):
    r = fs.run("print(1)", files={"../escape.txt": "x"})
    assert r.status == "sandbox_error"
    assert fs.run("print(1)").status == "ok"


def test_dead_worker_is_replaced(fs):
    for slot in fs._all:
        slot.proc.kill()
        slot.proc.wait()
    assert [r.stdout for r in fs.run_many(["print(1)", "print(2)"])] == ["1\n", "2\n"]


def test_concurrent_sandboxes_get_distinct_uids_and_clean_up():
    if not probe()["forkserver"][0]:
        pytest.skip("forkserver unavailable")
    with open_sandbox("forkserver", workers=2) as a, open_sandbox("forkserver", workers=2) as b:
        assert len(set(a.uids) | set(b.uids)) == 4
        uids = a.uids + b.uids
        a.run("import os, time\nif os.fork() == 0:\n    time.sleep(30)\n")
    for uid in uids:
        assert not uid_alive(uid)


def test_subprocess_backend_warns_loudly():
    kw = {"workers": 1}
    if os.geteuid() == 0 and os.path.exists("/usr/bin/python3"):
        kw["python"] = "/usr/bin/python3"
    with pytest.warns(RuntimeWarning, match="WITHOUT ISOLATION"):
        sb = open_sandbox("subprocess", **kw)
    with sb:
        assert sb.run("print(5)").stdout == "5\n"
        assert "not isolated" in sb.guarantees
