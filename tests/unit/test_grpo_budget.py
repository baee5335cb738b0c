"""Thinking budgets inside ``rlvr grpo`` (rlvr.train.budgets): the periodic accuracy-vs-budget sweep (files, plots,
metrics), fixed and sampled training budgets (the cap holds; per-prompt budgets are deterministic and stated in the
prompt; a resume draws the same ones), the eval stating budgets as training did, and validation.

The runs use the untrained tiny model with tiny sizes, so accuracy is ~0: these tests check the plumbing, not
learning. ``OMP_NUM_THREADS=1 python -m pytest tests/unit/test_grpo_budget.py -q``
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rlvr.cli import main
from rlvr.runs.tracking import read_metrics

B, G = 2, 4
TINY = ["model=tiny", "task=arith", "logger=none", "algo=grpo", f"grpo.prompts_per_step={B}",
        f"grpo.group_size={G}", "grpo.max_new_tokens=16", "grpo.max_train_prompts=64", "grpo.micro_batch_size=8",
        "grpo.threads=1", "rewards.num_workers=0", "grpo.eval_every=0", f"grpo.num_samples_to_log={B * G}",
        "grpo.learning_rate=3e-3"]
SWEEP = ["budget_eval.budgets=[0,4,null]", "budget_eval.splits=[test_ops1]", "budget_eval.num_problems=2",
         "budget_eval.n=2", "budget_eval.k_list=[1,2]", "budget_eval.max_new_tokens=12", "budget_eval.answer_tokens=4",]
SAMPLED = ["grpo.train_budget.mode=sample", "grpo.train_budget.choices=[0,3,null]", "grpo.train_budget.answer_tokens=4"]


def samples_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------------ end to end
def test_sampled_budgets_are_stated_deterministic_swept_plotted_and_resumed(tmp_path, capsys):
    """(a) sweep files, plots and metrics; (c) per-prompt budgets by (seed, step, position), stated in the prompt;
    (d) a resume from step 1 redraws step 2's budgets (and, being exact, its completions)."""
    from rlvr.train.budgets import TrainBudgets
    from rlvr.eval.plots import PLOTS

    run = tmp_path / "run"
    args = ["grpo", f"output_dir={run}", "grpo.max_steps=2", "grpo.save_every=1", "grpo.budget_eval_every=2",
            *TINY, *SAMPLED, *SWEEP]
    assert main(args) == 0
    assert "budget sweep @ step 0" in capsys.readouterr().out

    # (a) a sweep at the start and at step 2 (every 2), the plots, and the headline numbers in step 2's row
    for step in (0, 2):
        data = json.loads((run / "eval" / f"budget_sweep_step{step}.json").read_text())
        assert (run / "eval" / f"budget_sweep_step{step}.csv").exists()
        assert [(r["split"], r["budget"]) for r in data["rows"]] == [("test_ops1", 0), ("test_ops1", 4),
                                                                   ("test_ops1", None)]
        assert {r["checkpoint"] for r in data["rows"]} == {f"step {step}"}
        # training states its budgets, so the sweep asks the same way
        assert data["meta"]["eval"]["state_budget_in_prompt"] is True
        assert data["meta"]["eval"]["budget_prompt_template"] == "Think for {budget} tokens."
    assert not (run / "eval" / "budget_sweep_step1.json").exists()
    for name in PLOTS:
        assert (run / "plots" / f"{name}.png").stat().st_size > 1000
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert not any(k.startswith("budget_eval/") for k in rows[0])
    for key in ("budget_eval/test_ops1/B0/pass@1", "budget_eval/test_ops1/B4/pass@1",
                "budget_eval/test_ops1/Bnone/pass@1", "budget_eval/mean/B4/pass@1",
                "budget_eval/mean/B4/thinking_tokens"):
        assert key in rows[1], key
    assert rows[1]["budget_eval/mean/B0/thinking_tokens"] == 0 and rows[1]["time/eval"] > 0
    # train tokens on the compute axis: the tiny model starts from 0, then the loss tokens of steps 1-2
    swept = json.loads((run / "eval" / "budget_sweep_step2.json").read_text())["rows"][0]
    assert swept["train_tokens"] == pytest.approx(sum(r.get("tokens") or 0 for r in rows))

    # (c) every prompt's budget is the draw for (seed, step, stream position) and the prompt states it
    draws = TrainBudgets(OmegaConf.create({"mode": "sample", "thinking": 0, "choices": [0, 3, None], "weights": [],
                                           "answer_tokens": 4, "state_in_prompt": True,
                                           "prompt_template": "Think for {budget} tokens."}), seed=0)
    first = samples_of(run)
    assert [s["step"] for s in first] == [1] * (B * G) + [2] * (B * G)
    for k, s in enumerate(first):
        budget = draws.draw(s["step"], (s["step"] - 1) * B + (k % (B * G)) // G)  # one round per step (algo=grpo)
        assert s["budget"] == budget
        stated = s["prompt"].endswith(f"\nThink for {budget} tokens.")
        assert stated if budget is not None else "Think for" not in s["prompt"]
        assert budget is None or s["thinking_tokens"] <= budget
    assert "budget/thinking_mean" in rows[0] and 0 <= rows[0]["budget/forced_frac"] <= 1

    # (d) lose step 2 (as a crash would) and resume from step 1: the same budgets, prompts and completions
    import shutil

    shutil.rmtree(run / "checkpoints" / "step_2")
    (run / "final" / "rlvr_grpo_done.json").unlink()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "resuming from" in out and "removed 2 budget sweep file(s) past step 1" in out
    again = samples_of(run)
    key = ("step", "prompt", "budget", "completion")
    assert [tuple(s[k] for k in key) for s in again] == [tuple(s[k] for k in key) for s in first]
    assert (run / "eval" / "budget_sweep_step2.json").exists()

    # `rlvr plot <run>` redraws the same plots from the same files
    from rlvr.eval.plots import main as plot_main

    assert plot_main([str(run), "--wandb", "off"]) == 0


def test_fixed_budget_caps_every_rollout(tmp_path):
    """(b) fixed mode: every completion thinks at most B tokens; cut ones have exactly B and an answer phase."""
    run = tmp_path / "fixed"
    assert main(["grpo", f"output_dir={run}", "grpo.max_steps=1", "grpo.save_every=0", "grpo.budget_eval_every=0",
                 "grpo.train_budget.mode=fixed", "grpo.train_budget.thinking=3", "grpo.train_budget.answer_tokens=4",
                 "grpo.train_budget.state_in_prompt=false", *TINY]) == 0
    (row,) = read_metrics(run / "metrics.jsonl")
    assert row["budget/thinking_mean"] == 3 and row["budget/forced_frac"] > 0
    assert row["completion/thinking_tokens_mean"] <= 3
    samples = samples_of(run)
    assert len(samples) == B * G and all(s["budget"] == 3 for s in samples)
    assert all("Think for" not in s["prompt"] for s in samples)  # state_in_prompt=false
    assert all(s["thinking_tokens"] <= 3 for s in samples)
    assert all(s["thinking_tokens"] == 3 and "</think>" in s["completion"] for s in samples if s["budget_forced"])
    assert all(s["tokens"] <= 16 for s in samples)  # grpo.max_new_tokens caps thinking + forced tags + answer


# ------------------------------------------------------------------------------------------------ pieces
class RecordingEngine:
    """Returns one fake rollout per request and remembers each call's prompts and params."""

    def __init__(self):
        self.calls = []

    def generate(self, samples, n=1, params=None):
        from rlvr.rollout.types import Rollout

        self.calls.append(([s.prompt[-1]["content"] for s in samples], params))
        return [Rollout(sample_id=s.id, prompt_ids=(1,), completion_ids=(2,), logprobs=(0.0,), text="x",
                        finish_reason="stop", thinking_tokens=0, index=j) for s in samples for j in range(n)]


def test_generate_groups_prompts_by_budget_and_keeps_prompt_major_order():
    from rlvr.train.budgets import TrainBudgets
    from rlvr.rollout.base import SamplingParams
    from rlvr.tasks.base import Sample

    cfg = OmegaConf.create({"mode": "sample", "thinking": 0, "choices": [4, 8], "weights": [], "answer_tokens": 5,
                            "state_in_prompt": True, "prompt_template": "Budget {budget}."})
    tb = TrainBudgets(cfg, seed=1)
    samples = [Sample(f"s{i}", [{"role": "system", "content": "sys"}, {"role": "user", "content": f"q{i}"}], "1",
                      ("math",)) for i in range(4)]
    stated, budgets = tb.assign(samples, step=3, first_index=10)
    assert budgets == [tb.draw(3, 10 + i) for i in range(4)] and budgets == tb.assign(samples, 3, 10)[1]
    assert [s.prompt[-1]["content"] for s in stated] == [f"q{i}\nBudget {b}." for i, b in enumerate(budgets)]
    assert stated[0].prompt[0] == {"role": "system", "content": "sys"} and samples[0].prompt[-1]["content"] == "q0"
    # draws differ by position and by seed
    many = [tb.draw(3, i) for i in range(40)]
    assert set(many) == {4, 8} and many != [TrainBudgets(cfg, seed=2).draw(3, i) for i in range(40)]

    engine = RecordingEngine()
    rollouts = tb.generate(engine, stated, budgets, 2, SamplingParams(seed=100, max_new_tokens=32))
    assert [r.sample_id for r in rollouts] == ["s0", "s0", "s1", "s1", "s2", "s2", "s3", "s3"]
    assert len(engine.calls) == len(set(budgets))
    for k, (prompts, params) in enumerate(engine.calls):
        assert params.seed == 100 + k * 104_729 and params.budget.answer == 5
        assert all(p.endswith(f"Budget {params.budget.thinking}.") for p in prompts)
    # mode none: one plain call, params untouched
    plain = TrainBudgets(OmegaConf.merge(cfg, {"mode": "none"}), seed=1)
    assert plain.assign(samples, 3, 10) == (samples, [None] * 4)
    engine = RecordingEngine()
    params = SamplingParams(seed=100)
    plain.generate(engine, samples, [None] * 4, 2, params)
    assert engine.calls == [(["q0", "q1", "q2", "q3"], params)]


def test_eval_states_each_swept_budget_like_training():
    """budget_sweep with a statement template writes B into every prompt of its cell (none for null)."""
    from rlvr.eval.budget_statement import statement_template
    from rlvr.eval.budget_sweep import budget_sweep
    from rlvr.rewards.runtime import RewardRuntime, RewardsConfig
    from rlvr.tasks.base import Sample

    class Task:
        name, splits = "toy", ["test"]

        def samples(self, split, limit=None):
            return [Sample(f"t{i}", [{"role": "user", "content": f"p{i}"}], "1", ("math",)) for i in range(2)]

    engine = RecordingEngine()
    with RewardRuntime(RewardsConfig(num_workers=0, abort_error_rate=1.0)) as runtime:
        rows = budget_sweep(engine, Task(), ["test"], [0, 8, None], runtime, n=2, k_list=[1], num_problems=2,
                            budget_statement="Think for {budget} tokens.")
    assert [c[0] for c in engine.calls] == [["p0\nThink for 0 tokens.", "p1\nThink for 0 tokens."],
                                            ["p0\nThink for 8 tokens.", "p1\nThink for 8 tokens."], ["p0", "p1"]]
    assert len(rows) == 3
    off = OmegaConf.create({"budget_prompt_template": "x {budget}"})  # an ad-hoc config without the switch
    assert statement_template(off) is None
    assert statement_template(OmegaConf.merge(off, {"state_budget_in_prompt": True})) == "x {budget}"


def test_rlvr_eval_warns_when_the_run_trained_with_another_statement(tmp_path):
    from rlvr.train.budgets import statement_mismatch, trained_statement

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("grpo:\n  train_budget:\n    mode: sample\n    state_in_prompt: true\n"
                                     "    prompt_template: 'Think for {budget} tokens.'\n")
    assert trained_statement(run) == "Think for {budget} tokens."
    assert "eval.state_budget_in_prompt=true" in statement_mismatch(run, None)
    assert "eval.budget_prompt_template" in statement_mismatch(run, "B={budget}")
    assert statement_mismatch(run, "Think for {budget} tokens.") is None
    (run / "config.yaml").write_text("grpo:\n  train_budget:\n    mode: none\n    state_in_prompt: true\n")
    assert trained_statement(run) is None and statement_mismatch(run, "B={budget}") is None
    assert statement_mismatch(None, None) is None


def test_bad_budget_settings_are_reported_at_once(capsys):
    code = main(["grpo", "grpo.train_budget.mode=sample", "grpo.train_budget.choices=[8,-2,60]",
                 "grpo.train_budget.weights=[1]", "grpo.max_new_tokens=64", "grpo.budget_eval_every=-1"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "negative budget" in err and "grpo.train_budget.weights" in err and "grpo.budget_eval_every" in err
    assert "[60] + answer_tokens=16 exceed grpo.max_new_tokens=64" in err
    code = main(["grpo", "grpo.train_budget.mode=fixed", "grpo.train_budget.thinking=-1",
                 "grpo.train_budget.answer_tokens=0", "grpo.budget_eval_every=5", "budget_eval.n=2",
                 "budget_eval.k_list=[1,4]", "budget_eval.budgets=[]",
                 "grpo.train_budget.prompt_template=no_placeholder"])
    err = capsys.readouterr().err
    assert code == 2
    for needle in ("grpo.train_budget.thinking", "grpo.train_budget.answer_tokens", "budget_eval.k_list",
                   "budget_eval.budgets", "grpo.train_budget.prompt_template"):
        assert needle in err, needle
    assert main(["grpo", "grpo.train_budget.mode=always"]) == 2
    assert "grpo.train_budget.mode" in capsys.readouterr().err


def test_sweep_charts_land_on_the_sweeps_step_and_headline_numbers():
    """wandb drops rows below its current step: the charts of the sweep at step N are logged at step N."""
    from rlvr.eval.in_training import _AtStep, headline

    class Run:
        logged = []

        def log(self, data, step=None):
            self.logged.append((step, sorted(data)))

    run = Run()
    _AtStep(run, 7).wandb_run.log({"plots/x": 1})
    assert run.logged == [(7, ["plots/x"])] and _AtStep(None, 7).wandb_run is None
    rows = [{"split": s, "budget": b, "pass@1": p, "mean_thinking_tokens": t}
            for s, b, p, t in [("a", 4, 0.5, 3.0), ("b", 4, 0.0, 4.0), ("a", None, 1.0, 9.0), ("b", None, None, 7.0)]]
    h = headline(rows)
    assert h["budget_eval/a/B4/pass@1"] == 0.5 and h["budget_eval/mean/B4/pass@1"] == 0.25
    assert h["budget_eval/mean/Bnone/pass@1"] == 1.0 and h["budget_eval/mean/Bnone/thinking_tokens"] == 8.0
