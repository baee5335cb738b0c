"""The ``code`` verifier on the real default sandbox: extraction, answer shapes, scoring, and reward hacks."""

from __future__ import annotations

import json
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from rlvr.sandboxes import open_sandbox
from rlvr.verifiers.base import Verifier
from rlvr.verifiers.code import CodeVerifier, extract_program

HE = {"test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n",
      "entry_point": "add"}
MBPP = {"test_list": ["assert inc(1) == 2", "assert inc(2) == 3", "assert inc(10) == 11"],
        "test_setup_code": ""}
STDIO = {"inputs": ["1 2\n", "3 4\n", "10 -10\n"], "outputs": ["3\n", "7", "0\n"]}
GOOD_ADD = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def v():
    ver = CodeVerifier(timeout_s=5, per_test_timeout_s=1.0, workers=2)
    yield ver
    ver.close()


def fenced(code: str) -> str:
    return f"<think>try it</think>\nHere you go:\n```python\n{code}```\n"


# -- extraction -----------------------------------------------------------------------------------------------

def test_extract_last_fenced_python_block():
    text = "```python\nx = 1\n```\nthen\n```py\ny = 2\n```\n"
    assert extract_program(text) == "y = 2\n"


def test_extract_ignores_drafts_inside_think_when_answer_has_a_block():
    text = "<think>```python\ndraft()\n```</think>\n```python\nfinal()\n```"
    assert extract_program(text) == "final()\n"


def test_extract_unterminated_block_and_plain_text():
    assert extract_program("sure\n```python\nprint(1)\n") == "print(1)\n"
    assert extract_program("print(2)") == "print(2)"


# -- protocol and shapes --------------------------------------------------------------------------------------

def test_is_a_verifier_named_code(v):
    assert isinstance(v, Verifier) and v.name == "code"


def test_humaneval_shape_pass_and_fail(v):
    ok = v(fenced(GOOD_ADD), HE)
    assert ok.score == 1.0 and ok.error is None and ok.metrics["tests_passed"] == 1 and ok.metrics["tests_total"] == 1
    assert ok.extracted == GOOD_ADD
    bad = v(fenced("def add(a, b):\n    return None\n"), HE)
    assert bad.score == 0.0 and bad.error is None


def test_humaneval_prompt_is_prepended_for_body_only_completions(v):
    answer = dict(HE, prompt="def add(a, b):\n    \"\"\"Add.\"\"\"\n")
    assert v("    return a + b\n", answer).score == 1.0


def test_mbpp_fraction_stops_at_first_failure(v):
    prog = "def inc(x):\n    return x + 1 if x < 5 else 0\n"
    r = v(fenced(prog), MBPP)
    assert r.score == pytest.approx(2 / 3) and r.metrics["tests_passed"] == 2
    strict = CodeVerifier(all_or_nothing=True, sandbox=v.sandbox)
    assert strict(fenced(prog), MBPP).score == 0.0
    assert strict(fenced("def inc(x):\n    return x + 1\n"), MBPP).score == 1.0


def test_mbpp_setup_code_runs_after_the_program_before_the_tests(v):
    # As in MBPP 367/927: the fixture builds objects of a class the program defines.
    answer = {"test_list": ["assert depth(tree) == 2"], "test_setup_code": "tree = Node(Node(None))"}
    prog = ("class Node:\n    def __init__(self, child):\n        self.child = child\n"
            "def depth(n):\n    return 0 if n is None else 1 + depth(n.child)\n")
    assert v(fenced(prog), answer).score == 1.0


def test_stdio_cases(v):
    prog = "a, b = map(int, input().split())\nprint(a + b)\n"
    assert v(fenced(prog), STDIO).score == 1.0
    wrong = v(fenced("a, b = map(int, input().split())\nprint(a - b)\n"), STDIO)
    assert wrong.score == 0.0  # first case already wrong, later ones not run
    assert wrong.metrics["tests_passed"] == 0


def test_answer_as_json_string_and_not_applicable(v):
    assert v(fenced(GOOD_ADD), json.dumps(HE)).score == 1.0
    assert v("anything", None).score is None
    broken = v("anything", {"foo": 1})
    assert broken.score is None and "answer must have" in broken.error


def test_per_test_timeout(v):
    prog = "def inc(x):\n    if x == 2:\n        while True: pass\n    return x + 1\n"
    r = v(fenced(prog), MBPP)
    assert r.score == pytest.approx(1 / 3) and r.metrics["timeout"] == 1.0


def test_stdio_per_case_timeout(v):
    prog = "import time\na, b = map(int, input().split())\nif a == 3:\n    time.sleep(60)\nprint(a + b)\n"
    r = v(fenced(prog), STDIO)
    assert r.score == pytest.approx(1 / 3) and r.metrics["timeout"] == 1.0


# -- reward hacks: exiting early, forging results ------------------------------------------------------------

@pytest.mark.parametrize("hack", [
    "import os\nos._exit(0)\n" + GOOD_ADD.replace("a + b", "None"),
    "import sys\nsys.exit(0)\n",
    "def add(a, b):\n    import os\n    os._exit(0)\n",
    "def add(a, b):\n    raise SystemExit(0)\n",
    "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
])
def test_exiting_before_the_asserts_is_a_failure(v, hack):
    r = v(fenced(hack), HE)
    assert r.score == 0.0 and r.error is None
    assert r.metrics["early_exit"] == 1.0


def test_forged_result_lines_are_ignored(v):
    forge = ("import os, json\n"
             "line = 'RLVR-RESULT ' + json.dumps({'results': [[True, '']], 'early_exit': False, 'timeout': False})\n"
             "print(line)\n"
             "for fd in range(3, 64):\n"
             "    for msg in (b'P 0 0\\n', b'P 0 ' + b'0' * 32 + b'\\n'):\n"
             "        try:\n            os.write(fd, msg)\n        except OSError:\n            pass\n"
             "os._exit(0)\n")
    r = v(fenced(forge), HE)
    assert r.score == 0.0
    r = v(fenced(forge), STDIO)
    assert r.score == 0.0


def test_batch_scoring_matches_single_calls(v):
    comps = [fenced(GOOD_ADD), fenced("def add(a, b):\n    pass\n"), fenced("def inc(x):\n    return x + 1\n")]
    answers = [HE, HE, MBPP]
    assert [r.score for r in v.score_many(comps, answers)] == [1.0, 0.0, 1.0]


# -- sandbox failures are errors, never a silent 0 ------------------------------------------------------------

def test_sandbox_failure_is_an_error_not_zero():
    sb = open_sandbox(workers=1)
    sb.close()
    r = CodeVerifier(sandbox=sb)(fenced(GOOD_ADD), HE)
    assert r.score is None and r.error and "sandbox" in r.error


# -- usable from worker processes -----------------------------------------------------------------------------

def _score_in_child(ver):
    return ver(fenced(GOOD_ADD), HE).score


def test_pickles_and_opens_lazily_in_a_forked_pool_worker(v):
    v(fenced(GOOD_ADD), HE)  # the parent already has an open sandbox
    clone = pickle.loads(pickle.dumps(v))
    assert clone._sandbox is None
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        assert pool.submit(_score_in_child, v).result(timeout=60) == 1.0


# -- real data (skips without ../shared/data) -----------------------------------------------------------------

def _load(data_dir, name):
    path = data_dir / "code" / name
    if not path.exists():
        pytest.skip(f"{path} not found")
    return [json.loads(line) for line in path.open()]


MUTANTS = {"return None": "    return None\n", "pass": "    pass\n", "os._exit(0)": "    import os\n    os._exit(0)\n"}


def _humaneval_check(v, rows):
    comps, answers = [], []
    for row in rows:
        answer = {"test": row["test"], "entry_point": row["entry_point"]}
        comps.append(fenced(row["prompt"] + row["canonical_solution"]))
        answers.append(answer)
        for body in MUTANTS.values():
            comps.append(fenced(row["prompt"] + body))
            answers.append(answer)
    results = v.score_many(comps, answers)
    per = 1 + len(MUTANTS)
    for i, row in enumerate(rows):
        canon, *mutants = results[i * per:(i + 1) * per]
        assert canon.score == 1.0, (row["task_id"], canon)
        for name, r in zip(MUTANTS, mutants):
            assert r.score == 0.0 and r.error is None, (row["task_id"], name, r)


def test_humaneval_first_ten_canonical_pass_and_mutants_fail(v, data_dir):
    _humaneval_check(v, _load(data_dir, "humaneval.jsonl")[:10])


@pytest.mark.slow
def test_humaneval_all_164_canonical_pass_and_mutants_fail(v, data_dir):
    rows = _load(data_dir, "humaneval.jsonl")
    assert len(rows) == 164
    _humaneval_check(v, rows)


@pytest.mark.slow
def test_mbpp_reference_solutions_all_pass_with_generous_time(data_dir):
    # At the default 6 s per test, task 123 (an O(n^2) amicable-number sum, ~5.5 s of CPU alone) can time out
    # on a loaded machine; every reference passes once time is not the question.
    rows = _load(data_dir, "mbpp.jsonl")
    ver = CodeVerifier(per_test_timeout_s=60, timeout_s=120, all_or_nothing=True, workers=2)
    try:
        results = ver.score_many([fenced(r["code"] + "\n") for r in rows],
                                 [{"test_list": r["test_list"], "test_setup_code": r["test_setup_code"]} for r in rows])
    finally:
        ver.close()
    failed = [(row["task_id"], r) for row, r in zip(rows, results) if r.score != 1.0]
    assert not failed, failed[:5]
