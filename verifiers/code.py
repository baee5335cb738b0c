"""The ``code`` verifier: run the completion's program against the sample's tests in a sandbox.

``answer`` shapes (also accepted as a JSON string):

* HumanEval: ``{"test": str, "entry_point": str}`` (+ optional ``"prompt"``: prepended when the program does
  not define ``entry_point`` itself, i.e. the model only wrote the body) — one test, ``check(entry_point)``.
* MBPP: ``{"test_list": [str, ...], "test_setup_code": str}`` — each assert is one test; the setup code runs
  after the program and before the tests (in MBPP it builds fixtures from classes the program defines).
* stdin/stdout: ``{"inputs": [str, ...], "outputs": [str, ...]}`` — each pair is one test; outputs compare
  equal after stripping trailing whitespace per line and trailing blank lines.

The program is the completion's last fenced python block (or, without one, the text after ``</think>``).
All tests of a sample run in ONE sandbox job (see code_harness.py), in order, stopping at the first failure
unless ``stop_on_first_failure=False``; each test has its own time limit and the job a total one.

Judging happens in the parent, and an exit code of 0 is never a pass by itself: a test counts as passed
only when the harness reports it, and the harness sees a pass only when the test code returned normally in
the child. ``os._exit(0)``/``sys.exit(0)`` before the asserts therefore scores 0 (``metrics["early_exit"]=1``).
Limitation, stated plainly: assert tests run in the same process as the candidate (as in HumanEval/MBPP),
so a program that deliberately searches its own memory for the harness's per-run token could forge passes;
stdin/stdout tests are compared by the harness process and cannot be forged that way.

Time limits: ``per_test_timeout_s`` (default 4 s) per test, ``timeout_s`` (default 8 s) for the whole job —
both the model's fault (score 0, ``metrics["timeout"]=1``). Keep ``timeout_s`` a couple of seconds below the
reward runtime's own per-call limit (``rewards.timeout_s``, 10 s), which would otherwise report an ``error``.

Score: fraction of tests passed (a failure stops the run, so later tests count as failed), or 1/0 with
``all_or_nothing=True``. A broken sandbox gives ``score=None`` with ``error`` set — never a silent 0.
"""

from __future__ import annotations

import json
import os
import re
import threading
from importlib import resources
from typing import Any, Mapping, Sequence

from rlvr.verifiers.base import VerifyResult

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\r?\n(.*?)```", re.DOTALL | re.IGNORECASE)
_OPEN_FENCE = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\r?\n(.*)\Z", re.DOTALL | re.IGNORECASE)
MARK = "RLVR-RESULT "


def extract_program(completion: str) -> str:
    """Last fenced python block; else a final unterminated ```python block; else the text after </think>."""
    text = completion.split("</think>")[-1] if "</think>" in completion else completion
    blocks = _FENCE.findall(text) or _FENCE.findall(completion)
    if blocks:
        return blocks[-1]
    tail = _OPEN_FENCE.search(text)
    return tail.group(1) if tail else text


def _harness_source() -> str:
    return resources.files("rlvr.verifiers").joinpath("code_harness.py").read_text(encoding="utf-8")


class CodeVerifier:
    """Verifier protocol implementation; see the module docstring. Safe to pickle and to use after fork."""

    name = "code"

    def __init__(self, *, backend: str = "auto", timeout_s: float = 8.0, per_test_timeout_s: float = 4.0,
                 all_or_nothing: bool = False, stop_on_first_failure: bool = True, memory_mb: int = 1024,
                 workers: int = 0, mode: str = "fork", sandbox: Any = None, **sandbox_options: Any):
        self.backend, self.mode, self.workers, self.memory_mb = backend, mode, workers, memory_mb
        self.timeout_s, self.per_test_timeout_s = float(timeout_s), float(per_test_timeout_s)
        self.all_or_nothing, self.stop_on_first_failure = all_or_nothing, stop_on_first_failure
        self.sandbox_options = sandbox_options
        self._sandbox, self._owner_pid, self._external = sandbox, os.getpid(), sandbox is not None
        self._lock = threading.Lock()
        self._harness = _harness_source()

    # -- sandbox lifecycle: opened lazily in the process that uses it -------------------------------------
    @property
    def sandbox(self):
        with self._lock:
            if self._sandbox is not None and self._owner_pid != os.getpid() and not self._external:
                self._sandbox = None  # inherited through fork: its worker pipes belong to the parent
            if self._sandbox is None:
                from rlvr.sandboxes import open_sandbox

                self._sandbox = open_sandbox(self.backend, timeout_s=self.timeout_s, memory_mb=self.memory_mb,
                                             workers=self.workers, mode=self.mode, **self.sandbox_options)
                self._owner_pid = os.getpid()
            return self._sandbox

    def close(self) -> None:
        sb, self._sandbox = self._sandbox, None
        if sb is not None and not self._external and self._owner_pid == os.getpid():
            sb.close()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_lock"] = None
        if not self._external:
            state["_sandbox"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- the Verifier protocol ------------------------------------------------------------------------------
    def __call__(self, completion: str, answer: Any, *, meta: Mapping[str, Any] | None = None) -> VerifyResult:
        return self.score_many([completion], [answer])[0]

    def score_many(self, completions: Sequence[str], answers: Sequence[Any]) -> list[VerifyResult]:
        """Score many samples at once; jobs run in parallel across the sandbox's workers."""
        from rlvr.sandboxes import Job

        if len(completions) != len(answers):
            raise ValueError(f"{len(completions)} completions but {len(answers)} answers")
        out: list[VerifyResult | None] = [None] * len(completions)
        jobs, where, programs = [], [], []
        for i, (completion, answer) in enumerate(zip(completions, answers)):
            program = extract_program(completion or "")
            try:
                spec = self._spec(program, answer)
            except ValueError as e:
                out[i] = VerifyResult(score=None, extracted=program, error=f"code verifier: {e}")
                continue
            if spec is None:
                out[i] = VerifyResult(score=None, extracted=program)
                continue
            jobs.append(Job(self._harness, files={"spec.json": json.dumps(spec)}, timeout_s=self.timeout_s))
            where.append(i)
            programs.append((program, len(spec["tests"] if spec["kind"] == "assert" else spec["inputs"])))
        if jobs:
            try:
                results = self.sandbox.run_many(jobs)
            except Exception as e:  # the sandbox could not even open: the verifier is broken, not the model
                results = [None] * len(jobs)
                err = f"code verifier: sandbox unavailable: {e!r}"
            for i, res, (program, total) in zip(where, results, programs):
                out[i] = (VerifyResult(score=None, extracted=program, error=err) if res is None
                          else self._judge(res, program, total))
        return out  # type: ignore[return-value]

    # -- helpers --------------------------------------------------------------------------------------------
    def _spec(self, program: str, answer: Any) -> dict | None:
        if answer is None:
            return None
        if isinstance(answer, str):
            try:
                answer = json.loads(answer)
            except json.JSONDecodeError as e:
                raise ValueError(f"answer is a string but not JSON: {e}") from None
        if not isinstance(answer, Mapping):
            raise ValueError(f"answer must be a mapping, got {type(answer).__name__}")
        common = {"per_test_timeout_s": self.per_test_timeout_s, "stop_on_fail": self.stop_on_first_failure}
        if "test" in answer and "entry_point" in answer:
            entry = answer["entry_point"]
            if answer.get("prompt") and not re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", program, re.M):
                program = answer["prompt"] + program
            return {"kind": "assert", "program": program, "setup": "",
                    "tests": [f"{answer['test']}\n\ncheck({entry})\n"], **common}
        if "test_list" in answer:
            return {"kind": "assert", "program": program, "setup": answer.get("test_setup_code") or "",
                    "tests": list(answer["test_list"]), **common}
        if "inputs" in answer and "outputs" in answer:
            if len(answer["inputs"]) != len(answer["outputs"]):
                raise ValueError("stdin/stdout answer has different numbers of inputs and outputs")
            return {"kind": "stdio", "program": program, "inputs": [str(x) for x in answer["inputs"]],
                    "outputs": [str(x) for x in answer["outputs"]], **common}
        raise ValueError("answer must have test+entry_point (HumanEval), test_list (MBPP) or inputs+outputs; "
                         f"got keys {sorted(answer)}")

    def _judge(self, res, program: str, total: int) -> VerifyResult:
        metrics = {"tests_total": float(total), "wall_s": float(res.wall_s)}
        if res.status == "sandbox_error":
            return VerifyResult(score=None, extracted=program, error=f"sandbox: {res.stderr[-500:]}", metrics=metrics)
        if "RLVR-HARNESS-ERROR" in res.stdout:
            return VerifyResult(score=None, extracted=program, error=f"harness: {res.stdout[-500:]}", metrics=metrics)
        report = None
        for line in res.stdout.splitlines():
            if line.startswith(MARK):
                report = json.loads(line[len(MARK):])
        if report is None:
            # The harness never reported: the candidate killed it, or the whole job ran out of time/memory.
            metrics.update(tests_passed=0.0, early_exit=1.0 if res.status != "timeout" else 0.0,
                           timeout=1.0 if res.status == "timeout" else 0.0)
            return VerifyResult(score=0.0, extracted=program, metrics=metrics)
        oks = [bool(ok) for ok, _ in report["results"]]
        passed = sum(oks)
        metrics.update(tests_passed=float(passed), early_exit=float(bool(report["early_exit"])),
                       timeout=float(bool(report["timeout"])))
        if passed == total:
            score = 1.0
        else:
            score = 0.0 if self.all_or_nothing else passed / max(total, 1)
        return VerifyResult(score=score, extracted=program, metrics=metrics)
