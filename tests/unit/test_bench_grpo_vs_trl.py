"""Pure helpers of scripts/bench_grpo_vs_trl.py: statistics, tables, and the two sides' matching settings.

No model is loaded and TRL is not imported (its import alone takes seconds); the benchmark itself is run by hand.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_grpo_vs_trl.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(SCRIPT.parent))  # its sibling modules (bench_spec, bench_report, ...), as when run
    spec = importlib.util.spec_from_file_location("bench_grpo_vs_trl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)
    for sibling in ("bench_accuracy", "bench_report", "bench_spec", "bench_throughput"):
        sys.modules.pop(sibling, None)
    sys.path.remove(str(SCRIPT.parent))


def run(system, round_, times, error=None, phases=None):
    row = {"system": system, "round": round_, "step_times": times}
    if error:
        row["error"] = error
    if phases:
        row["phases"] = phases
    return row


def test_measured_drops_warmup_but_never_everything(bench):
    assert bench.measured([9.0, 2.0, 3.0], 1) == [2.0, 3.0]
    assert bench.measured([9.0, 2.0, 3.0], 2) == [3.0]
    assert bench.measured([9.0], 1) == [9.0]  # a run shorter than the warm-up keeps what it has


def test_summarize_speed_medians_ratio_and_paired_rounds(bench):
    runs = [
        run("ours", 0, [10.0, 2.0, 2.0, 4.0], phases={"rollout": [5.0, 1.0, 1.0, 1.0]}),
        run("trl", 0, [10.0, 4.0, 4.0, 4.0]),
        run("trl", 1, [9.0, 8.0, 6.0, 6.0]),
        run("ours", 1, [9.0, 3.0, 3.0, 3.0], phases={"rollout": [5.0, 2.0, 2.0, 2.0]}),
        run("trl", 2, [], error="exit code 1"),
    ]
    sm = bench.summarize_speed(runs, warmup=1)
    assert sm["ours"]["run_medians"] == [2.0, 3.0]
    assert sm["ours"]["median"] == 2.5 and sm["trl"]["median"] == 5.0
    assert sm["ratio"] == pytest.approx(0.5)
    assert sm["paired_ratios"] == [pytest.approx(0.5), pytest.approx(0.5)]
    assert sm["meets_target"] is True
    assert (sm["trl"]["runs_ok"], sm["trl"]["runs_failed"]) == (2, 1)
    assert sm["ours"]["measured_steps"] == 6 and sm["ours"]["pooled_median"] == 3.0
    assert sm["ours"]["phase_medians"]["rollout"] == pytest.approx(1.5)  # warm-up step dropped here too


def test_summarize_speed_when_one_side_failed(bench):
    sm = bench.summarize_speed([run("ours", 0, [3.0, 1.0]), run("trl", 0, [], error="vLLM: boom")], warmup=1)
    assert math.isnan(sm["ratio"]) and sm["meets_target"] is None and sm["paired_ratios"] == []
    assert bench.fmt(sm["ratio"]) == "—"


def test_speed_markdown_shows_ratio_failures_and_trl_engine_facts(bench):
    runs = [run("ours", 0, [5.0, 1.0]), run("trl", 0, [5.0, 4.0]), run("ours", 1, [5.0, 1.0]),
            run("trl", 1, [], error="RuntimeError: no vLLM")]
    runs[1].update(prompt_ids_match=True, vllm_patch="auto", vllm_engine={"dtype": "torch.float32"},
                   sampler_logprob_max_abs_diff=4.8e-7, completion_length=[60.0, 62.0])
    result = {"settings": {"model": "m", "prompts": 8, "group": 8, "max_new_tokens": 64, "threads": 2, "rounds": 2,
                           "steps": 2, "warmup": 1},
              "engines": {"vllm": {"runs": runs, "summary": bench.summarize_speed(runs, 1)}}}
    md = bench.speed_markdown(result)
    assert "| vllm | 1.000 | 4.000 | 0.25 | 0.25 | yes |" in md
    assert "trl round 1: **failed**: RuntimeError: no vLLM" in md
    assert "torch.float32" in md and "0.0000005" in md and "61.0" in md


def test_accuracy_markdown_table(bench):
    rows = lambda a: [{"split": "test_ops1", "accuracy": a}, {"split": "test_ops2", "accuracy": a / 2}]  # noqa: E731
    result = {"settings": {"model": "m", "steps": 3, "prompts": 8, "group": 8, "lr": 3e-5, "trl_lr": 1e-4,
                           "eval_problems": 10},
              "engines": {"hf": {"eval": {"start": rows(0.5), "ours": rows(0.6)},
                                 "train": {"ours": {"step_times": [1.0, 2.0, 3.0], "zero_std_frac": [0.5, 1.0],
                                                    "reward": [0.1, 0.3]},
                                           "trl": {"error": "exit code 1"}}}}}
    md = bench.accuracy_markdown(result)
    assert "| start | 50.0% | 25.0% |" in md and "| ours | 60.0% | 30.0% |" in md and "| trl | — | — |" in md
    assert "| ours | 2.500 | 0.750 | 0.200 → 0.200 |" in md  # first step = warm-up, dropped
    assert "**trl failed**: exit code 1" in md


def test_ours_overrides_compose_validate_and_match_trl_defaults(bench, tmp_path):
    from rlvr.config.loading import compose_config
    from rlvr.algo.presets import validate_algo

    spec = bench.RunSpec(system="ours", engine="hf", model=str(tmp_path), out_dir=str(tmp_path / "out"), steps=6,
                         prompts=4, group=8, max_new_tokens=32, lr=1e-4, threads=2, train_prompts=24)
    cfg = compose_config("grpo", bench.ours_overrides(spec))  # unknown keys / wrong types would raise here
    assert validate_algo(cfg.algo) == []  # (the full validate imports transformers: seconds; the smoke run checks it)
    a, g = cfg.algo, cfg.grpo
    # TRL 1.16 default loss_type="dapo": token-mean, symmetric 0.2 clip, group std, no KL, nothing filtered
    assert (a.aggregation, a.clip_low, a.clip_high, a.kl_beta, a.std_scaling) == ("token", 0.2, 0.2, 0.0, "group")
    assert (a.dynamic_sampling, a.overlong, a.tis) == (False, "none", False)
    assert (g.prompts_per_step, g.group_size, g.max_new_tokens, g.learning_rate) == (4, 8, 32, 1e-4)
    assert (g.micro_batch_size, g.updates_per_batch, g.eval_every, g.threads) == (32, 1, 0, 2)
    assert cfg.rollout == "hf" and cfg.model.name_or_path == str(tmp_path)

    trl = bench.trl_config_kwargs(spec)
    assert trl["per_device_train_batch_size"] == g.prompts_per_step * g.group_size
    assert (trl["num_generations"], trl["gradient_accumulation_steps"], trl["num_iterations"]) == (8, 1, 1)
    assert (trl["max_completion_length"], trl["learning_rate"], trl["temperature"]) == (32, 1e-4, g.temperature)
    assert (trl["beta"], trl["loss_type"], trl["epsilon"], trl["epsilon_high"]) == (0.0, "dapo", 0.2, 0.2)
    assert (trl["adam_beta2"], trl["weight_decay"], trl["max_grad_norm"]) == (g.adam_beta2, 0.0, g.max_grad_norm)
    assert trl["gradient_checkpointing"] is False and trl["bf16"] is False and trl["use_vllm"] is False
    assert trl["shuffle_dataset"] is False and trl["lr_scheduler_type"] == "constant"
    assert bench.trl_config_kwargs(bench.RunSpec(**{**spec.__dict__, "engine": "vllm"}))["use_vllm"] is True


def test_parse_args_defaults_per_mode(bench):
    speed = bench.parse_args(["--threads", "2"])
    assert (speed.engines, speed.steps, speed.rounds, speed.warmup) == (["hf", "vllm"], 6, 3, 1)
    acc = bench.parse_args(["--mode", "accuracy", "--threads", "1"])
    assert (acc.engines, acc.steps, acc.eval_problems, acc.trl_lr) == (["hf"], 100, 200, None)
    with pytest.raises(SystemExit):
        bench.parse_args(["--engines", "hf,sglang"])
    with pytest.raises(SystemExit):  # step times are only compared at identical settings
        bench.parse_args(["--ours-override", "algo.dynamic_sampling=true"])


def test_ours_override_replaces_the_mirrored_value_for_ours_only(bench, tmp_path):
    from rlvr.config.loading import compose_config

    args = bench.parse_args(["--mode", "accuracy", "--threads", "1", "--ours-override", "algo.dynamic_sampling=true",
                             "--ours-override", "algo.negative_weight=0.5"])
    spec = bench.base_spec(args, "hf", str(tmp_path))
    overrides = bench.ours_overrides(spec)
    assert overrides.count("algo.dynamic_sampling=true") == 1 and "algo.dynamic_sampling=false" not in overrides
    cfg = compose_config("grpo", overrides)
    assert cfg.algo.dynamic_sampling is True and cfg.algo.negative_weight == 0.5 and cfg.algo.clip_high == 0.2
    assert bench.trl_config_kwargs(spec) == bench.trl_config_kwargs(bench.RunSpec(**{**spec.__dict__,
                                                                                     "ours_extra": ()}))


def test_shared_schedule_and_reward_reach_both_sides(bench, tmp_path):
    from rlvr.config.loading import compose_config

    args = bench.parse_args(["--mode", "accuracy", "--threads", "1", "--lr-scheduler", "cosine", "--warmup-steps", "10",
                             "--verifiers", "math, arith_steps", "--temperature", "0.5"])
    spec = bench.base_spec(args, "hf", str(tmp_path))
    cfg = compose_config("grpo", bench.ours_overrides(spec))
    assert (cfg.grpo.lr_scheduler, cfg.grpo.warmup_steps, cfg.grpo.temperature) == ("cosine", 10, 0.5)
    assert list(cfg.task.verifiers) == ["math", "arith_steps"]
    trl = bench.trl_config_kwargs(spec)
    assert (trl["lr_scheduler_type"], trl["warmup_steps"], trl["temperature"]) == ("cosine", 10, 0.5)
    assert spec.verifiers == ("math", "arith_steps")  # the TRL worker builds its task (and reward) from these


def test_child_env_gives_both_sides_the_same_threads(bench):
    env = bench.child_env(1)
    assert env["OMP_NUM_THREADS"] == "1" and env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert len(env["VLLM_CPU_OMP_THREADS_BIND"].split(",")) == 1


def test_model_names_resolve_through_rlvr_models_and_folders_still_work(bench, tmp_path, monkeypatch):
    import rlvr.models

    calls = []

    def fake_resolve(cfg):
        calls.append(cfg.name)
        return str(tmp_path / f"cached-{cfg.name}"), None

    monkeypatch.setattr(rlvr.models, "resolve_model_source", fake_resolve)
    assert bench.resolve_model("smollm2-135m") == str((tmp_path / "cached-smollm2-135m").resolve())
    assert bench.resolve_model("tiny") == str((tmp_path / "cached-tiny").resolve())
    assert calls == ["smollm2-135m", "tiny"]
    folder = tmp_path / "sft" / "final"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert bench.resolve_model(str(folder)) == str(folder.resolve()) and len(calls) == 2  # a folder: as before
    with pytest.raises(SystemExit, match="smollm2-135m"):
        bench.resolve_model(str(tmp_path / "nowhere"))


def test_update_flops_and_rollout_throughput_arithmetic(bench):
    assert bench.update_flops(135e6, 1000) == pytest.approx(6 * 135e6 * 1000)
    # step 0: 2000 completion tokens in 4 s of rollout; 500 prompt tokens; update 3 s with 1e8 params
    series = bench.throughput_series([2000.0, 1000.0, None], [500, 300, 300], [4.0, 0.0, 1.0], [3.0, 2.0, 1.0], 1e8)
    assert series["rollout_tokens_per_s"][0] == pytest.approx(500.0)
    assert series["update_gflops"][0] == pytest.approx(6 * 1e8 * 2500 / 3.0 / 1e9)  # = 500 GFLOP/s
    assert math.isnan(series["rollout_tokens_per_s"][1])  # no rollout time: no rate, not a division error
    assert series["update_gflops"][1] == pytest.approx(6 * 1e8 * 1300 / 2.0 / 1e9)
    assert math.isnan(series["rollout_tokens_per_s"][2]) and math.isnan(series["update_gflops"][2])
    assert all(math.isnan(g) for g in bench.throughput_series([10.0], None, [1.0], [1.0], 1e8)["update_gflops"])


def test_add_throughput_counts_tokens_for_both_sides(bench, tmp_path):
    spec = bench.RunSpec(system="trl", engine="hf", model=str(tmp_path), out_dir=str(tmp_path), steps=2, prompts=2,
                         group=4, max_new_tokens=16)
    # TRL logs a cumulative num_tokens: step 1 = 100 prompt + 8 x 10 completion, step 2 = 100 + 8 x 12
    row = {"completion_length": [10.0, 12.0], "phases": {"rollout": [2.0, 4.0]}, "update_time": [1.0, 2.0],
           "logs": [{"step": 1, "num_tokens": 180.0}, {"step": 2, "num_tokens": 376.0}, {"train_runtime": 9.0}]}
    bench.add_throughput(row, spec, [100, 100], 1000)
    assert row["completion_tokens"] == [80.0, 96.0] and row["prompt_tokens_trl"] == [100.0, 100.0]
    assert row["step_tokens"] == [180.0, 196.0]
    assert row["rollout_tokens_per_s"] == [pytest.approx(40.0), pytest.approx(24.0)]
    assert row["update_gflops"] == [pytest.approx(6 * 1000 * 180 / 1e9), pytest.approx(6 * 1000 * 196 / 2 / 1e9)]
    ours = bench.ours_result([{"step": 1, "time/step": 5.0, "time/rollout": 2.0, "time/update": 1.5,
                               "completion/length_mean": 10.0}])
    assert ours["update_time"] == [1.5] and ours["completion_length"] == [10.0]


def test_speed_report_has_throughput_and_peak_columns(bench):
    def row(system, round_, rollout, update, gflops):
        r = run(system, round_, [9.0, 4.0, 4.0])
        r.update(rollout_tokens_per_s=[1.0, rollout, rollout], update_time=[9.0, update, update],
                 update_gflops=[1.0, gflops, gflops], step_tokens=[1.0, 5000.0, 5000.0])
        return r

    runs = [row("ours", 0, 300.0, 2.0, 20.0), row("trl", 0, 150.0, 4.0, 10.0)]
    sm = bench.summarize_speed(runs, 1)
    assert (sm["ours"]["rollout_tokens_per_s"], sm["trl"]["update_gflops"], sm["ours"]["update_time"]) == \
        (300.0, 10.0, 2.0)
    result = {"settings": {"model": "m", "prompts": 8, "group": 8, "max_new_tokens": 256, "threads": 2, "rounds": 1,
                           "steps": 3, "warmup": 1, "trainable_params": 134515008},
              "peak": {"size": 2048, "measurements": [{"when": "before", "gflops": 80.0, "repeats": 9},
                                                      {"when": "after", "gflops": 120.0, "repeats": 9}]},
              "engines": {"hf": {"runs": runs, "summary": sm}}}
    assert bench.peak_gflops(result) == 100.0
    md = bench.speed_markdown(result)
    assert "rollout tok/s" in md and "update GFLOP/s" in md and "% of matmul peak" in md
    assert "| hf | ours | 300.0 | 2.000 | 5000 | 20.00 | 20.0 |" in md
    assert "| hf | trl | 150.0 | 4.000 | 5000 | 10.00 | 10.0 |" in md
    assert "**100.0 GFLOP/s**" in md and "before 80.0" in md and "ignores attention" in md
    assert "134515008" in md
    no_peak = bench.speed_markdown({**result, "peak": {"error": "boom"}})
    assert "| hf | ours | 300.0 | 2.000 | 5000 | 20.00 | — |" in no_peak


def test_peak_flops_script_reports_gflops(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_peak_flops", SCRIPT.parent / "bench_peak_flops.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    r = module.matmul_gflops(threads=1, size=64, repeats=3, warmup=1)
    assert r["repeats"] == 3 and r["size"] == 64 and r["gflops"] > 0 and r["gflops_best"] >= r["gflops"]


def test_arith_knobs_reach_both_sides_and_bad_knobs_fail_at_parse(bench, tmp_path):
    import json as json_

    from rlvr.config.loading import compose_config

    args = bench.parse_args(["--mode", "accuracy", "--threads", "1", "--arith", "min_ops=3", "--arith", "max_ops=4",
                             "--eval-splits", "test_ops3, test_ops4"])
    assert args.arith == {"min_ops": 3, "max_ops": 4} and args.eval_splits == ["test_ops3", "test_ops4"]
    spec = bench.base_spec(args, "hf", str(tmp_path))
    cfg = compose_config("grpo", bench.ours_overrides(spec))
    assert (cfg.task.arith.min_ops, cfg.task.arith.max_ops) == (3, 4)
    # the TRL worker gets the spec as JSON and builds its task from the same knobs
    again = bench.RunSpec(**json_.loads(json_.dumps(bench.asdict(spec))))
    task_cfg = bench.arith_task_config(again.arith)
    assert (task_cfg.arith.min_ops, task_cfg.arith.max_ops, task_cfg.arith.operand_max) == (3, 4, 9)
    assert bench.parse_args(["--mode", "accuracy", "--systems", "ours"]).systems == ("ours",)
    for bad in (["--arith", "max_opz=3"], ["--arith", "min_ops"], ["--arith", "min_ops=three"], ["--systems", "x"]):
        with pytest.raises(SystemExit):
            bench.parse_args(["--mode", "accuracy", *bad])
