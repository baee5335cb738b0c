"""The in-sandbox test harness of the ``code`` verifier (shipped as the job's main.py; stdlib only).

It reads ``spec.json`` (then deletes it), makes itself non-dumpable, and runs the candidate only in forked
children, never in its own process:

* assert tests (HumanEval/MBPP): one child executes the program, then the test setup code, once, then each
  test in order; after a test returns normally the child writes ``P <i> <token>`` to a private pipe
  (``F <i> <token> <reason>`` when it raises — SystemExit included). The harness enforces a per-test
  deadline on that pipe and kills the child at it. A child that exits early (``os._exit(0)``, a signal,
  killing the harness) leaves the remaining tests without a pass record: they fail.
* stdin/stdout tests: one child per case runs the program with the case's input; the harness compares
  outputs itself (trailing whitespace per line and trailing blank lines ignored).

Only the harness writes the job's stdout, one ``RLVR-RESULT <json>`` line at the end; children get their
own stdio, all inherited fds closed, and — because the harness is non-dumpable — cannot reopen its fds via
/proc. What remains possible for a deliberate adversary inside the child: searching its own memory for the
per-run token (assert tests) — documented in rlvr.verifiers.code.
"""

import json
import os
import select
import signal
import sys
import time

MARK = "RLVR-RESULT "


def _nondumpable():
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except Exception:
        pass


def _fresh_main():
    import builtins
    import types

    mod = types.ModuleType("__main__")
    mod.__builtins__ = builtins
    mod.__file__ = os.path.abspath("solution.py")
    sys.modules["__main__"] = mod
    return mod.__dict__


def _child_stdio(stdin_path, stdout_path, keep):
    fds = [os.open(stdin_path, os.O_RDONLY), os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
           os.open(os.devnull, os.O_WRONLY)]
    for i, fd in enumerate(fds):
        os.dup2(fd, i)
    for fd in range(3, 1024):
        if fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass
    sys.stdin = open(0, "r", encoding="utf-8", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False)


def _kill(pid):
    for f in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            f()
        except OSError:
            pass


def run_asserts(spec):
    tests = spec["tests"]
    token = os.urandom(16).hex()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)
            os.close(r)
            open("in.txt", "w").close()
            _child_stdio("in.txt", os.devnull, w)
            g = _fresh_main()
            compiled = [compile(t, f"<test {i}>", "exec") for i, t in enumerate(tests)]
            try:
                exec(compile(spec["program"], "solution.py", "exec"), g)
                # Test fixtures may use what the program defines (MBPP 367/927 build trees of its Node class).
                exec(compile(spec.get("setup") or "", "<setup>", "exec"), g)
            except BaseException as e:  # SystemExit too: a program that exits has not passed anything
                os.write(w, f"F 0 {token} program: {type(e).__name__}: {e}"[:300].encode() + b"\n")
                os._exit(0)
            for i, code in enumerate(compiled):
                try:
                    exec(code, g)
                except BaseException as e:
                    os.write(w, f"F {i} {token} {type(e).__name__}: {e}"[:300].encode() + b"\n")
                    if spec["stop_on_fail"]:
                        break
                    continue
                os.write(w, f"P {i} {token}\n".encode())
        finally:
            os._exit(0)
    os.close(w)
    results = [[False, "not run"] for _ in tests]
    buf = b""
    seen = 0
    deadline = time.monotonic() + spec["per_test_timeout_s"]
    timed_out = eof = False
    while seen < len(tests):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([r], [], [], left)[0]:
            timed_out = True
            results[seen] = [False, "timeout"]
            break
        chunk = os.read(r, 4096)
        if not chunk:
            eof = True
            break
        buf += chunk
        while b"\n" in buf and seen < len(tests):
            line, buf = buf.split(b"\n", 1)
            parts = line.decode("utf-8", "replace").split(" ", 3)
            if len(parts) < 3 or parts[2] != token or not parts[1].isdigit():
                continue  # not from the harness code in the child: ignored
            i = int(parts[1])
            if i < seen or i >= len(tests):
                continue
            seen = i + 1
            results[i] = [parts[0] == "P", "" if parts[0] == "P" else (parts[3] if len(parts) > 3 else "")]
            deadline = time.monotonic() + spec["per_test_timeout_s"]
            if parts[0] == "F" and spec["stop_on_fail"]:
                seen = len(tests)
    _kill(pid)
    os.waitpid(pid, 0)
    os.close(r)
    # Suspicious: the child ended without reporting every test it should have, or exited on purpose.
    early_exit = (eof and seen < len(tests)) or any("SystemExit" in why[:40] for _, why in results)
    return results, early_exit, timed_out


def _normalize(text):
    lines = [ln.rstrip() for ln in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def run_stdio(spec):
    results = [[False, "not run"] for _ in spec["inputs"]]
    timed_out = False
    for i, (inp, expected) in enumerate(zip(spec["inputs"], spec["outputs"])):
        with open("in.txt", "w", encoding="utf-8") as f:
            f.write(inp)
        pid = os.fork()
        if pid == 0:
            try:
                os.setpgid(0, 0)
                _child_stdio("in.txt", "out.txt", -1)
                g = _fresh_main()
                code = 0
                try:
                    exec(compile(spec["program"], "solution.py", "exec"), g)
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                except BaseException:
                    code = 1
                try:
                    sys.stdout.flush()
                except BaseException:
                    code = code or 120
                os._exit(code & 0xFF)
            finally:
                os._exit(1)
        pidfd = os.pidfd_open(pid)
        done = select.select([pidfd], [], [], spec["per_test_timeout_s"])[0]
        os.close(pidfd)
        if not done:
            _kill(pid)
        _, status = os.waitpid(pid, 0)
        if not done:
            results[i] = [False, "timeout"]
            timed_out = True
        elif not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            results[i] = [False, f"exit status {status}"]
        else:
            with open("out.txt", "r", encoding="utf-8", errors="replace") as f:
                got = f.read()
            ok = _normalize(got) == _normalize(expected)
            results[i] = [ok, "" if ok else "wrong answer"]
        if not results[i][0] and spec["stop_on_fail"]:
            break
    return results, False, timed_out


def main():
    try:
        with open("spec.json", encoding="utf-8") as f:
            spec = json.load(f)
        os.unlink("spec.json")
        _nondumpable()
        out = os.fdopen(os.dup(1), "w")
        run = run_asserts if spec["kind"] == "assert" else run_stdio
    except BaseException as e:
        print("RLVR-HARNESS-ERROR", repr(e))
        sys.exit(2)
    results, early_exit, timed_out = run(spec)
    out.write(MARK + json.dumps({"results": results, "early_exit": early_exit, "timeout": timed_out}) + "\n")
    out.flush()


main()
