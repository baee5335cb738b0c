"""``rlvr grpo`` on the untrained tiny model with tiny sizes: config, metrics contract, samples, checkpoints."""

from __future__ import annotations

import json

import pytest

from rlvr.cli import main
from rlvr.runs.tracking import read_metrics

TINY = ["model=tiny", "task=arith", "logger=none", "grpo.prompts_per_step=2", "grpo.group_size=4",
        "grpo.max_new_tokens=16", "grpo.max_train_prompts=64", "grpo.eval_num_problems=2",
        "grpo.eval_max_new_tokens=8", "grpo.micro_batch_size=3", "grpo.threads=1", "rewards.num_workers=1",
        "grpo.budget_eval_every=0"]  # the budget sweep has its own tests (test_grpo_budget.py)


# ------------------------------------------------------------------------------------------------ config
def test_every_preset_composes_to_its_resolved_knobs():
    """``algo=<name>`` (what Hydra composes for the CLI) gives the knob set ``resolve_algo(name)`` gives in code."""
    from rlvr.algo.presets import PRESETS, AlgoConfig, resolve_algo
    from rlvr.config.loading import compose_config

    assert {"grpo", "dr_grpo", "dapo", "gspo", "cispo"} <= set(PRESETS)
    resolved = {}
    for name in PRESETS:
        cfg = compose_config("grpo", [f"algo={name}"])
        resolved[name] = AlgoConfig(**cfg.algo)
        assert resolved[name] == resolve_algo(name), name
    assert len({repr(a) for a in resolved.values()}) == len(PRESETS)  # each preset is a different knob set


def test_grpo_defaults_compose():
    from rlvr.config.loading import compose_config

    cfg = compose_config("grpo", [])
    assert (cfg.model.name, cfg.task.name, cfg.algo.name, cfg.rollout) == ("tiny", "arith", "dapo", "auto")
    cfg = compose_config("grpo", ["algo=gspo", "algo.clip_high=0.001", "rollout=hf", "grpo.group_size=4"])
    assert (cfg.algo.loss, cfg.algo.clip_high, cfg.rollout, cfg.grpo.group_size) == ("gspo", 0.001, "hf", 4)


def test_grpo_validation_reports_every_problem_at_once(capsys):
    code = main(["grpo", "grpo.group_size=1", "grpo.max_steps=0", "grpo.learning_rate=-1", "algo.loss=ppo",
                 "algo.max_sampling_rounds=0", "grpo.top_p=1.5", "grpo.lr_scheduler=nope"])
    text = capsys.readouterr().err
    assert code == 2 and "Traceback" not in text
    for needle in ("grpo.group_size", "grpo.max_steps", "grpo.learning_rate", "algo.loss", "algo.max_sampling_rounds",
                   "grpo.top_p", "grpo.lr_scheduler"):
        assert needle in text, needle


def test_unknown_rollout_engine_lists_the_valid_ones(capsys):
    assert main(["grpo", "rollout=sglang"]) == 2
    text = capsys.readouterr().err
    assert "hf" in text and "vllm" in text and "auto" in text


def test_auto_engine_is_hf_without_cuda():
    import torch

    from rlvr.train.grpo_validation import choose_engine

    if torch.cuda.is_available():
        pytest.skip("CPU-only check")
    assert choose_engine("auto")[0] == "hf"
    assert choose_engine("hf") == ("hf", "asked for")


def test_grpo_help_lists_grpo_algo_and_rewards_keys(capsys):
    assert main(["grpo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "grpo.group_size" in out and "algo.clip_high" in out and "rewards.timeout_s" in out and "rollout" in out


# ------------------------------------------------------------------------------------------------ helpers
def test_prompt_stream_resumes_at_its_position_and_reshuffles_per_epoch():
    from rlvr.train.loop_parts import PromptStream

    items = list(range(10))
    full = PromptStream(items, seed=3).take(25)
    first = PromptStream(items, seed=3)
    head = first.take(7)
    tail = PromptStream(items, seed=3, position=first.position).take(18)
    assert head + tail == full
    assert sorted(full[:10]) == items and full[:10] != full[10:20]  # a permutation per epoch, a new one each


def test_checkpoint_listing_ignores_half_written_folders_and_truncate_keeps_earlier_rows(tmp_path):
    from rlvr.runs.layout import RunDir
    from rlvr.train.checkpoint import STATE_FILE, truncate_jsonl

    ck = tmp_path / "checkpoints"
    for name, complete in (("step_2", True), ("step_10", True), ("step_12.tmp", True), ("step_11", False)):
        (ck / name).mkdir(parents=True)
        (ck / name / "config.json").write_text("{}")
        if complete:
            (ck / name / STATE_FILE).write_bytes(b"x")
    assert RunDir(tmp_path).newest_checkpoint("grpo") == ck / "step_10"
    rows = tmp_path / "samples.jsonl"
    rows.write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3)) + '{"step": 4, "torn')
    truncate_jsonl(rows, 2)
    assert [json.loads(x)["step"] for x in rows.read_text().splitlines()] == [1, 2]


# ------------------------------------------------------------------------------------------------ the loop
def test_two_grpo_steps_write_the_metrics_contract_samples_and_checkpoints(tmp_path, capsys):
    from rlvr.train.loop_parts import PHASES

    run = tmp_path / "grpo"
    # algo=grpo: KL to a reference (exercises the logprob phase); the overlong ramp over the whole budget makes
    # rewards differ by length, so the untrained model's groups carry a gradient.
    args = ["grpo", f"output_dir={run}", "grpo.max_steps=2", "grpo.save_every=1", "grpo.eval_every=2",
            "grpo.num_samples_to_log=3", "algo=grpo", "algo.overlong=penalty", "algo.overlong_buffer=16", *TINY]
    assert main(args) == 0
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        for key in ("reward/mean", "reward/std", "accuracy", "verifier/math/error_rate", "verifier/math/std",
                    "groups/zero_std_frac", "completion/length_mean", "completion/length_max",
                    "completion/truncated_frac", "clip/frac", "clip/low_frac", "clip/high_frac", "kl/ref", "entropy",
                    "grad_norm", "lr", "perf/tokens_per_s", "loss", "batch/groups", "data/position",
                    *(f"time/{p}" for p in PHASES)):
            assert key in r, key
        assert r["time/rollout"] > 0 and r["time/reward"] > 0 and r["time/update"] > 0
        assert r["time/logprob"] > 0  # kl_beta > 0: the reference pass ran (the phase is 0 when none runs)
        assert r["batch/groups"] == 2 and r["completion/length_max"] <= 16
    # the reference is the starting policy: no KL at step 1 (test_grpo_steps.py checks it grows once it moved)
    assert rows[0]["kl/ref"] == pytest.approx(0.0, abs=1e-7)
    assert rows[0]["data/position"] == 2 and rows[1]["data/position"] == 4
    assert "eval/test_ops1/accuracy" in rows[1] and rows[1]["time/eval"] > 0 and rows[0]["time/eval"] == 0
    samples = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [1, 1, 1, 2, 2, 2]
    assert {"prompt", "completion", "answer", "reward", "accuracy", "scores"} <= set(samples[0])
    for step in (1, 2):
        folder = run / "checkpoints" / f"step_{step}"
        for name in ("model.safetensors", "config.json", "tokenizer.json", "trainer_state.pt"):
            assert (folder / name).exists(), folder / name
    for name in ("model.safetensors", "tokenizer.json", "rlvr_grpo_done.json"):
        assert (run / "final" / name).exists()
    assert (run / "eval" / "grpo_step0.json").exists() and (run / "eval" / "grpo_step2.json").exists()
    assert "eval @ step 0" in capsys.readouterr().out
    # A finished run is not redone; asking for more steps continues from the newest checkpoint.
    assert main(args) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main([*args, "grpo.max_steps=3", "grpo.eval_every=0"]) == 0
    assert "resuming from" in capsys.readouterr().out
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3]
    # resume=false starts over: old rows and checkpoints go, so a later resume cannot pick up stale state
    assert main([*args, "grpo.max_steps=1", "grpo.save_every=0", "grpo.eval_every=0", "grpo.resume=false"]) == 0
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1]
    assert not (run / "checkpoints").exists() and (run / "final" / "rlvr_grpo_done.json").exists()


def test_dynamic_sampling_without_signal_skips_the_update(tmp_path):
    run = tmp_path / "dapo"
    # untrained model: every answer wrong, every group uninformative -> all rounds used, nothing to train on
    assert main(["grpo", f"output_dir={run}", "grpo.max_steps=1", "grpo.save_every=0", "grpo.eval_every=0",
                 "algo=dapo", "algo.max_sampling_rounds=2", *TINY]) == 0
    (row,) = read_metrics(run / "metrics.jsonl")
    assert row["batch/rounds"] == 2 and row["batch/groups"] == 0 and row["data/position"] == 4
    assert row["time/update"] == 0 and row["time/logprob"] == 0 and row["accuracy"] == 0 and row["groups/all_wrong_frac"] == 1
    assert not (run / "checkpoints").exists()


@pytest.mark.parametrize("preset", ["grpo", "dr_grpo"])  # sequence+KL, constant normaliser
def test_micro_batching_does_not_change_the_update(tmp_path, preset):
    """Micro-batch losses share the full batch's denominator: same loss, gradient and metrics at any size."""
    rows = {}
    for size in (1, 8):
        run = tmp_path / f"mb{size}"
        overrides = [o for o in TINY if not o.startswith("grpo.micro_batch_size")]
        assert main(["grpo", f"output_dir={run}", "grpo.max_steps=1", "grpo.save_every=0", "grpo.eval_every=0",
                     f"algo={preset}", "algo.overlong=penalty", "algo.overlong_buffer=16",
                     # seed 1: the random tiny model then ends some rollouts early (eos), so rewards vary
                     f"grpo.micro_batch_size={size}", "seed=1", *overrides]) == 0
        (rows[size],) = read_metrics(run / "metrics.jsonl")
    assert rows[8]["grad_norm"] > 0
    for key in ("loss", "loss/pg", "grad_norm", "entropy", "clip/frac", "tokens"):
        assert rows[1][key] == pytest.approx(rows[8][key], rel=1e-4, abs=1e-7), key


def test_process_supervision_runs_inside_the_loop(tmp_path):
    """``algo.process_verifier``: the step scores reach the update as [N, T] advantages and are logged."""
    run = tmp_path / "process"
    assert main(["grpo", f"output_dir={run}", "grpo.max_steps=1", "grpo.save_every=0", "grpo.eval_every=0",
                 "algo=grpo", "algo.overlong=penalty", "algo.overlong_buffer=16", "seed=1",
                 "task.verifiers=[math,{name:arith_steps,weight:0}]", "algo.process_verifier=arith_steps",
                 "algo.process_discount=0", *TINY]) == 0
    (row,) = read_metrics(run / "metrics.jsonl")
    assert row["process/scored_frac"] == 1.0  # every arith completion is scored, even with no line in it
    assert "process/steps_per_completion" in row and row["grad_norm"] > 0
