"""The greedy held-out eval (``rlvr.eval.heldout``) on the one scoring path: hard timeouts, the sample's own primary
verifier, and the same generation as the budget sweep's cell at n=1, temperature 0, no cap."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
from omegaconf import OmegaConf

from rlvr.eval.heldout import evaluate_heldout, run_eval, split_result
from rlvr.rewards.runtime import RewardRuntime, RewardsConfig
from rlvr.rewards.scoring import score
from rlvr.rollout.types import Rollout
from rlvr.tasks.base import Sample

HANG = {"name": "rlvr.verifiers.testing:Hang"}  # sleeps an hour on every call


class HangingTask:
    """The arith task, every problem judged by a verifier that never returns."""

    def __init__(self, task):
        self.task, self.name, self.splits = task, task.name, task.splits

    def samples(self, split, limit=None):
        return [replace(s, verifiers=(HANG,)) for s in self.task.samples(split, limit=limit)]


def test_a_hanging_verifier_is_cut_at_the_timeout_and_counted_as_an_error(tiny, task, tmp_path):
    from rich.console import Console

    model, tok = tiny
    cfg = OmegaConf.create({"grpo": {"eval_num_problems": 2, "eval_max_new_tokens": 8, "eval_batch_size": 8},
                            "rewards": {"num_workers": 1, "timeout_s": 1.0}})
    started = time.perf_counter()
    metrics = run_eval(model, tok, HangingTask(task), cfg, ["test_ops1"], tmp_path, 3, Console(quiet=True))
    assert time.perf_counter() - started < 60  # two 1 s timeouts and a worker restart each, not two hours
    assert metrics == {"eval/test_ops1/accuracy": 0.0}
    (row,) = json.loads((tmp_path / "eval" / "grpo_step3.json").read_text())["rows"]
    assert (row["n"], row["errors"]) == (2, 2)


def test_each_row_is_judged_by_its_own_primary_verifier():
    def rollout(sample_id, text):
        return Rollout(sample_id, (1,), (1, 2), (0.0, 0.0), text, "stop", 0)

    arith = Sample("a", [{"role": "user", "content": "1+2"}], "3", ("math", {"name": "format", "weight": 0.1}))
    code = Sample("c", [{"role": "user", "content": "f"}], {"test_list": ["assert f() == 1"]},
                  ("code", {"name": "format", "weight": 0.1}))
    program = "```python\ndef f():\n    return 1\n```"
    with RewardRuntime(RewardsConfig(num_workers=1)) as runtime:
        result = split_result("mix", score(runtime, [arith, code], [rollout("a", r"\boxed{3}"),
                                                                   rollout("c", program)], 1))
    assert (result.correct, result.errors, result.n) == (2, 0, 2)  # the math verifier would fail the program
    assert [ex["correct"] for ex in result.examples] == [True, True]


def test_the_heldout_eval_is_the_sweep_cell_at_n1_greedy_no_cap(tiny, task):
    from rlvr.eval.budget_sweep import budget_sweep
    from rlvr.rollout.hf import HFEngine

    model, tok = tiny
    with RewardRuntime(RewardsConfig(num_workers=0)) as runtime:
        (heldout,) = evaluate_heldout(model, tok, task, ["test_ops2"], 3, 12, 8, runtime)
        (row,) = budget_sweep(HFEngine(model, tok, batch_size=8), task, ["test_ops2"], [None], runtime, n=1,
                              num_problems=3, temperature=0.0, max_new_tokens=12)
    assert heldout.n == row["n_problems"] == 3
    assert heldout.mean_completion_tokens == pytest.approx(row["tokens_per_answer"])
    assert heldout.accuracy == pytest.approx(row["pass@1"])
