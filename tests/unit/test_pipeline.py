"""``rlvr pipeline`` without training: config composition, per-stage configs and overrides, validation of every
stage at once, the ready experiment configs, and the skip/resume logic on fake done markers."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rlvr.cli import main as cli_main
from rlvr.config.loading import ConfigError, compose_config, load_config
from rlvr.eval.summary import collect_summary
from rlvr.pipeline import (
    SFT_DONE,
    active_stages,
    eval_checkpoints,
    stage_config,
    stage_done,
    validate,
)

EXPERIMENTS = ("gsm8k_qwen2.5_1.5b", "math_qwen2.5_math_7b", "code_mbpp_qwen2.5_coder_1.5b")


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = cli_main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def pipeline_cfg(tmp_path: Path, *overrides: str):
    return load_config("pipeline", [f"output_dir={tmp_path / 'run'}", "logger=none", *overrides], validate)


# ------------------------------------------------------------------------------------------------ composition
def test_defaults_are_the_demo_on_the_tiny_model():
    cfg = compose_config("pipeline", [])
    assert (cfg.model.name, cfg.task.name, cfg.algo.name) == ("tiny", "arith", "dapo")
    assert list(cfg.pipeline.stages) == ["sft", "grpo", "eval", "plot"]
    assert list(cfg.pipeline.stage_overrides.sft) == []
    assert (cfg.sft.max_steps, cfg.sft.stop_fraction) == (1200, 0.667)  # SFT stops mid-schedule (step 800)
    assert cfg.grpo.budget_eval_every == 0  # the eval stage sweeps instead


def test_the_demos_grpo_stage_gets_process_supervision_and_the_eval_stage_math_alone(tmp_path):
    cfg = pipeline_cfg(tmp_path)
    run = Path(cfg.output_dir)
    grpo, ev = stage_config(cfg, "grpo", run), stage_config(cfg, "eval", run)
    assert (grpo.grpo.prompts_per_step, grpo.grpo.group_size) == (32, 16)
    assert grpo.algo.process_verifier == "arith_steps" and grpo.algo.process_discount == 0
    assert OmegaConf.to_container(grpo.task.verifiers) == ["math", {"name": "arith_steps", "weight": 0}]
    assert list(ev.task.verifiers) == []  # the task's own: math


def test_stage_configs_share_fields_take_their_section_and_only_their_overrides(tmp_path):
    cfg = pipeline_cfg(tmp_path, "seed=7", "sft.max_steps=11", "grpo.max_steps=5", "eval.n=6",
                       'pipeline.stage_overrides.sft=["task.arith.max_ops=2"]')
    run = Path(cfg.output_dir)
    sft = stage_config(cfg, "sft", run)
    grpo = stage_config(cfg, "grpo", run)
    ev = stage_config(cfg, "eval", run)
    assert set(sft) >= {"sft", "model", "task", "logger", "seed"} and "grpo" not in sft
    assert {"grpo", "algo", "rewards", "rollout"} <= set(grpo) and "sft" not in grpo
    assert (sft.seed, grpo.seed, ev.seed) == (7, 7, 7)
    assert (sft.sft.max_steps, grpo.grpo.max_steps, ev.eval.n) == (11, 5, 6)
    assert sft.task.arith.max_ops == 2 and grpo.task.arith.max_ops == 3 and ev.task.arith.max_ops == 3
    assert sft.output_dir == str(run / "sft") and grpo.output_dir == str(run / "grpo") and ev.output_dir == str(run)
    assert ev.eval.plot is False  # plotting is its own stage
    assert OmegaConf.is_missing(grpo, "output_dir") is False and grpo.model.name_or_path is None  # no SFT yet


def test_grpo_starts_from_the_finished_sft_model_unless_a_stage_override_says_otherwise(tmp_path):
    cfg = pipeline_cfg(tmp_path)
    run = Path(cfg.output_dir)
    (run / "sft" / "final").mkdir(parents=True)
    (run / "sft" / SFT_DONE).write_text("{}")
    assert stage_config(cfg, "grpo", run).model.name_or_path == str(run / "sft" / "final")
    assert stage_config(cfg, "grpo", run, plan=True).model.name_or_path is None  # validation: not wired
    other = tmp_path / "elsewhere"
    other.mkdir()
    cfg = pipeline_cfg(tmp_path, f'pipeline.stage_overrides.grpo=["model.name_or_path={other}"]')
    assert stage_config(cfg, "grpo", run).model.name_or_path == str(other)
    cfg = pipeline_cfg(tmp_path, "pipeline.stages=[grpo,eval,plot]")  # no sft stage: the configured model
    assert stage_config(cfg, "grpo", run).model.name_or_path is None


def test_sft_trains_on_distilled_data_when_distill_is_a_stage(tmp_path):
    cfg = pipeline_cfg(tmp_path, "pipeline.stages=[distill,sft]")
    run = Path(cfg.output_dir)
    assert stage_config(cfg, "sft", run).sft.train_file is None  # nothing distilled yet
    (run / "distill").mkdir(parents=True)
    (run / "distill" / "data.jsonl").write_text("")
    assert stage_config(cfg, "sft", run).sft.train_file == str(run / "distill" / "data.jsonl")


def test_skip_and_stage_list(tmp_path):
    cfg = pipeline_cfg(tmp_path, "pipeline.stages=[plot,eval,sft,distill]", "pipeline.skip=[eval]")
    assert active_stages(cfg) == ["distill", "sft", "plot"]  # pipeline order, whatever the list's order


# ------------------------------------------------------------------------------------------------ validation
def test_every_stage_is_validated_and_all_problems_are_reported_at_once(capsys):
    code, text = run_cli(
        capsys, "pipeline", "pipeline.stages=[sft,grpo,eval,bogus]", "sft.max_steps=0", "grpo.group_size=1",
        "eval.budgets=[]", "model=gpt5",
        'pipeline.stage_overrides.sft=["task.arith.max_ops=0"]',
        'pipeline.stage_overrides.grpo=["grpo.nope=1","model.dtype=fp8","task=mbpp"]')
    assert code == 2 and "Traceback" not in text
    for needle in ("bogus", "sft.max_steps", "grpo.group_size", "eval.budgets", "gpt5",
                   "task.arith (in pipeline.stage_overrides.sft)", "'grpo.nope=1'",
                   "model.dtype (in pipeline.stage_overrides.grpo)", "'task=mbpp' picks a config group"):
        assert needle in text, needle
    assert text.count("- sft.max_steps:") == 1  # a shared problem is reported once, not once per stage


def test_a_clean_config_validates_and_the_inactive_stages_are_not_checked(tmp_path):
    pipeline_cfg(tmp_path, "pipeline.stages=[sft]", "grpo.group_size=1")  # grpo is not run: no error


def test_overrides_of_a_stage_that_does_not_run_are_unused_not_checked(tmp_path):
    pipeline_cfg(tmp_path, "pipeline.stages=[grpo,eval,plot]")  # the demo's sft override stays, harmless
    pipeline_cfg(tmp_path, "pipeline.stages=[sft]", 'pipeline.stage_overrides.grpo=["grpo.max_steps=0"]')


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_configs_compose_and_validate_without_touching_the_hub(name, monkeypatch):
    import datasets
    import transformers

    def forbidden(*args, **kwargs):
        raise AssertionError("validation must not load models or data")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", forbidden)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", forbidden)
    monkeypatch.setattr(datasets, "load_dataset", forbidden)
    import importlib.util

    try:
        cfg = load_config("pipeline", [f"experiment={name}", "output_dir=runs/x"], validate)
    except ConfigError as err:  # only acceptable reason: vLLM is not installed on this machine
        assert importlib.util.find_spec("vllm") is None, err
        assert all(p.key == "rollout" for p in err.problems), err
        return
    assert cfg.rollout == "vllm" and cfg.grpo.mixed_precision == "bf16"
    assert cfg.model.name_or_path.startswith("Qwen/")
    assert 1e-7 <= cfg.grpo.learning_rate <= 3e-6 and 8 <= cfg.grpo.group_size <= 16
    assert cfg.grpo.max_new_tokens >= 1024
    assert cfg.grpo.max_train_prompts is None  # nothing of the demo's sizing leaks in
    assert cfg.algo.name == "dapo"


def test_the_cpu_recipe_trains_sft_on_easy_and_grpo_on_hard_problems(tmp_path):
    cfg = pipeline_cfg(tmp_path, "experiment=smollm2_arith_cpu")
    run = Path(cfg.output_dir)
    sft, grpo, ev = stage_config(cfg, "sft", run), stage_config(cfg, "grpo", run), stage_config(cfg, "eval", run)
    assert cfg.model.name == "smollm2-135m" and cfg.model.add_think_tokens is False
    assert (sft.task.arith.min_ops, sft.task.arith.max_ops) == (1, 3) and sft.sft.max_train_samples == 256
    assert (grpo.task.arith.min_ops, grpo.task.arith.max_ops) == (3, 4)
    assert round(sft.sft.max_steps * sft.sft.stop_fraction) == 50
    assert (grpo.grpo.prompts_per_step, grpo.grpo.group_size, grpo.grpo.max_steps) == (4, 16, 16)
    assert grpo.rollout == "vllm" and (grpo.algo.clip_low, grpo.algo.clip_high) == (0.2, 0.2)
    assert grpo.algo.dynamic_sampling and grpo.algo.process_verifier is None and grpo.grpo.learning_rate == 1e-5
    assert list(ev.eval.splits) == ["test_ops2", "test_ops3", "test_ops4"] and ev.eval.temperature == 0.0


def test_experiment_files_state_their_gpu_memory():
    conf = Path(__file__).resolve().parents[2] / "conf" / "experiment"
    for name in EXPERIMENTS:
        text = (conf / f"{name}.yaml").read_text()
        assert text.startswith("# @package _global_") and "GPU memory" in text and " GB" in text, name


# ------------------------------------------------------------------------------------------------ skip logic
def _fake_model(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_text("")


def _fake_sweep(run: Path, ckpt, stage_cfg, splits: list[str], accuracy: float) -> None:
    from rlvr.eval.budget_sweep import with_checkpoint, write_sweep

    rows = [{"task": "arith", "split": s, "budget": b, "n_problems": 4, "n": 2, "pass@1": accuracy,
             "mean_thinking_tokens": 5.0, "tokens_per_answer": 9.0, "truncation_rate": 0.0,
             "budget_forced_rate": 0.0, "verifier_error_rate": 0.0, "test_tokens": 36.0}
            for s in splits for b in stage_cfg.eval.budgets]
    meta = {"checkpoint": ckpt.label, "model_path": ckpt.path, "step": ckpt.step, "train_tokens": ckpt.train_tokens,
            "task": "arith", "splits": splits, "eval": OmegaConf.to_container(stage_cfg.eval, resolve=True),
            "seed": stage_cfg.seed}
    write_sweep(run, with_checkpoint(rows, ckpt), ckpt.tag, meta)


def _fake_finished_run(tmp_path: Path):
    """Every stage's outputs, as files only (no model weights): what a finished demo leaves behind."""
    cfg = pipeline_cfg(tmp_path, "grpo.max_steps=4", "eval.budgets=[8,32]", "eval.splits=[test_ops1,test_ops2]")
    run = Path(cfg.output_dir)
    _fake_model(run / "sft" / "final")
    (run / "sft" / "config.yaml").write_text(OmegaConf.to_yaml(stage_config(cfg, "sft", run)))
    (run / "sft" / SFT_DONE).write_text("{}")
    (run / "sft" / "eval").mkdir()
    (run / "sft" / "eval" / "sft_heldout.json").write_text(json.dumps(
        {"rows": [{"split": "test_ops1", "n": 8, "accuracy": 0.5}, {"split": "test_ops2", "n": 8, "accuracy": 0.25}]}))
    grpo_cfg = stage_config(cfg, "grpo", run)
    _fake_model(run / "grpo" / "final")
    (run / "grpo" / "config.yaml").write_text(OmegaConf.to_yaml(grpo_cfg))
    (run / "grpo" / "final" / "rlvr_grpo_done.json").write_text(json.dumps({"step": 4}))
    (run / "grpo" / "eval").mkdir()
    for step, accs in ((0, (0.5, 0.25)), (4, (0.75, 0.25))):
        rows = [{"split": s, "n": 8, "accuracy": a} for s, a in zip(("test_ops1", "test_ops2"), accs)]
        (run / "grpo" / "eval" / f"grpo_step{step}.json").write_text(json.dumps({"rows": rows}))
    eval_cfg = stage_config(cfg, "eval", run)
    checkpoints = eval_checkpoints(run, eval_cfg)
    time.sleep(0.01)  # sweeps newer than the models
    for ckpt, acc in zip(checkpoints, (0.25, 0.5)):
        _fake_sweep(run, ckpt, eval_cfg, ["test_ops1", "test_ops2"], acc)
    (run / "plots").mkdir()
    time.sleep(0.01)
    for name in ("accuracy_vs_budget", "accuracy_vs_step", "accuracy_vs_compute"):
        (run / "plots" / f"{name}.png").write_bytes(b"")
    return cfg, run


def test_eval_checkpoints_are_the_sft_model_then_grpo(tmp_path):
    cfg, run = _fake_finished_run(tmp_path)
    labels = [(c.label, c.step) for c in eval_checkpoints(run, stage_config(cfg, "eval", run))]
    assert labels == [("sft", 0), ("grpo step 4", 4)]


def test_done_markers_decide_what_is_skipped(tmp_path):
    cfg, run = _fake_finished_run(tmp_path)
    stage_cfgs = {s: stage_config(cfg, s, run) for s in ("sft", "grpo", "eval")}
    for stage in ("sft", "grpo", "eval"):
        assert stage_done(stage, cfg, stage_cfgs[stage], run), stage
    assert stage_done("plot", cfg, None, run)
    # GRPO asked for more steps than the marker's: not done (it resumes from its checkpoints)
    assert not stage_done("grpo", cfg, stage_config(pipeline_cfg(tmp_path, "grpo.max_steps=8"), "grpo", run), run)
    # eval settings changed: the old sweeps are stale
    other = stage_config(pipeline_cfg(tmp_path, "grpo.max_steps=4", "eval.budgets=[8,16]",
                                      "eval.splits=[test_ops1,test_ops2]"), "eval", run)
    assert not stage_done("eval", cfg, other, run)
    # a newer model than its sweep: stale too
    weights = run / "grpo" / "final" / "model.safetensors"
    later = time.time() + 5
    os.utime(weights, (later, later))
    assert not stage_done("eval", cfg, stage_cfgs["eval"], run)
    # a missing plot, or a sweep newer than the plots: plot again
    (run / "plots" / "accuracy_vs_step.png").unlink()
    assert not stage_done("plot", cfg, None, run)


def test_a_finished_run_is_not_redone_and_the_summary_is_rebuilt_from_files(tmp_path, capsys, monkeypatch):
    import rlvr.pipeline as pipeline

    cfg, run = _fake_finished_run(tmp_path)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(pipeline, "RUNNERS", {s: must_not_run for s in ("distill", "sft", "grpo", "eval")})
    monkeypatch.setattr(pipeline, "run_plot", must_not_run)
    assert pipeline.run(cfg) == 0
    out = capsys.readouterr().out
    assert out.count("already complete") >= 4
    summary = json.loads((run / "summary.json").read_text())
    assert all(s["status"] == "already complete" for s in summary["stages"].values())
    # after SFT = GRPO's step-0 eval (same problems as after GRPO), after GRPO = its last eval
    assert summary["accuracy"]["test_ops1"] == {"after_sft": 0.5, "after_grpo": 0.75, "delta": 0.25}
    assert summary["mean_accuracy"]["after_grpo"] == pytest.approx(0.5)
    assert summary["pass@1_by_budget"] == {"sft": {"8": 0.25, "32": 0.25}, "grpo step 4": {"8": 0.5, "32": 0.5}}
    assert len(summary["plots"]) == 3
    assert "after GRPO" in out and "pass@1 (%) by thinking budget" in out


def test_summary_without_grpo_uses_the_sft_eval(tmp_path):
    run = tmp_path / "run"
    (run / "sft" / "eval").mkdir(parents=True)
    rows = [{"split": "a", "n": 4, "accuracy": 1.0}]
    (run / "sft" / "eval" / "sft_heldout.json").write_text(json.dumps({"rows": rows}))
    summary = collect_summary(run, {"sft": {"status": "ran"}})
    assert summary["accuracy"]["a"] == {"after_sft": 1.0, "after_grpo": None, "delta": None}


def test_eval_stage_override_of_n_alone_moves_the_derived_k_list(tmp_path):
    from rlvr.config.loading import compose_config
    from rlvr.pipeline import stage_config

    cfg = compose_config("pipeline", ["output_dir=" + str(tmp_path), 'pipeline.stage_overrides.eval=["eval.n=2"]'])
    node = stage_config(cfg, "eval", tmp_path)
    assert node.eval.n == 2 and list(node.eval.k_list) == [1, 2]


def test_the_eval_stage_runs_the_same_sweep_as_rlvr_eval(tiny_model_dir, tmp_path):
    """The pipeline's eval stage and `rlvr eval` share one loop (rlvr.eval.budget_sweep.evaluate_checkpoints):
    the same model and settings give the same rows."""
    from rich.console import Console

    from rlvr.eval import cli as eval_cli
    from rlvr.eval.budget_sweep import read_sweeps
    from rlvr.pipeline import run_eval

    common = [f"model.name_or_path={tiny_model_dir}", "logger=none", "eval.budgets=[0,null]", "eval.num_problems=2",
              "eval.n=2", "eval.k_list=[1,2]", "eval.splits=[test_ops2]", "eval.max_new_tokens=12",
              "rewards.num_workers=0"]
    cfg = pipeline_cfg(tmp_path, *common)
    run = Path(cfg.output_dir)
    assert run_eval(stage_config(cfg, "eval", run), run, Console(quiet=True)) == 0
    alone = tmp_path / "alone"
    eval_cfg = load_config("eval", [*common, f"output_dir={alone}", "eval.plot=false"], eval_cli.validate)
    assert eval_cli.run(eval_cfg) == 0
    timing = {"seconds"}
    stage_rows = [{k: v for k, v in r.items() if k not in timing} for r in read_sweeps(run)]
    eval_rows = [{k: v for k, v in r.items() if k not in timing} for r in read_sweeps(alone)]
    assert len(stage_rows) == 2 and stage_rows == eval_rows
