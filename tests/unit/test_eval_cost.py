"""The cost of an eval, said before it runs (rlvr.eval.cost), and the size-based eval defaults (rlvr.config)."""

from __future__ import annotations

import json
import tempfile

import pytest
from omegaconf import OmegaConf

from rlvr.config.loading import compose_config
from rlvr.config.model_size import architecture_params, model_params, size_in_name
from rlvr.config.sections import ModelConfig
from rlvr.eval import cost as C

SMOLLM2 = {"model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30, "intermediate_size": 1536,
           "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True}


def test_sweep_cost_arithmetic_and_line():
    e = OmegaConf.create({"budgets": [0, 8, 16, 32], "n": 4, "num_problems": 50, "max_new_tokens": 256,
                          "batch_size": 64})
    cost = C.sweep_cost(e, ["a", "b", "c"], "budget sweep")
    assert cost.generations == 4 * 3 * 50 * 4 == 2400
    assert cost.max_tokens == 2400 * 256 == 614_400
    assert cost.generate_calls == 12 * 4  # 12 cells of 200 rows, 64 rows per generate() call
    rate = C.Throughput(3000.0, None, "x")
    expected, upper, _ = cost.seconds(rate=rate)
    assert expected is None and upper == pytest.approx(614_400 / 3000)
    line = cost.line(rate=rate)
    assert line.startswith("budget sweep: 4 budgets x 3 splits x 50 problems x n=4 = 2,400 generations, "
                           "<= 614k new tokens (256 each), <= ~3.4 min at the last measured 3,000 tok/s")
    # with the measured mean length of the same kind of eval: the expected time beside the bound
    expected, upper, _ = cost.seconds(rate=C.Throughput(3000.0, 64.0, "x"))
    assert expected == pytest.approx(2400 * 64 / 3000) and upper == pytest.approx(614_400 / 3000)


def test_flop_estimate_counts_decode_prefill_and_per_step_overhead():
    cost = C.heldout_cost(["test"], 100, 96, 200, "held-out eval", prompt_tokens=150)
    assert cost.generations == 100 and cost.generate_calls == 1
    params = 134_515_008
    _, upper, how = cost.seconds(params, "cpu")
    flops = 2 * params * (100 * 96 + 100 * 150)
    assert upper == pytest.approx(flops / C.FLOPS["cpu"] + 96 * C.STEP_OVERHEAD_S["cpu"])
    assert "135M params on cpu" in how
    assert "1 split x 100 problems = 100 generations" in cost.line(params)
    assert cost.seconds()[1] is None  # nothing to time it by: the line still gives the sizes
    assert "4.8k" not in cost.line() and "9.6k new tokens" in cost.line()


def test_measured_throughput_is_per_model_and_kind():
    a, b = object(), object()
    C.record(a, "sweep", tokens=6000, seconds=2.0, generations=100)
    assert C.measured(a, "sweep") == C.Throughput(3000.0, 60.0, "sweep")
    assert C.measured(a, "heldout").tokens_per_generation is None  # another kind's rate, not its lengths
    assert C.measured(b, "sweep") is None
    C.observe_rollout(b, {"perf/rollout_tokens_per_s": 500.0}, engine="vllm")
    assert C.measured(b, "sweep") is None  # vLLM's rate would overstate the HF-engine evals
    C.observe_rollout(b, {"perf/rollout_tokens_per_s": 500.0})
    assert C.measured(b, "sweep").tokens_per_s == 500.0


def test_parameter_counts_from_config_without_weights(tmp_path):
    assert architecture_params(SMOLLM2) == 134_515_008  # SmolLM2-135M's exact count
    m = OmegaConf.structured(ModelConfig)
    assert 0.9e6 < model_params(m) < 1.2e6  # the tiny model (1,038,080 counted on the built model)
    m.name = "smollm2-135m"
    assert model_params(m) == 134_515_008
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(SMOLLM2))
    assert model_params(OmegaConf.merge(m, {"name": "hf", "name_or_path": str(folder)})) == 134_515_008
    assert size_in_name("Qwen/Qwen2.5-1.5B-Instruct") == 1_500_000_000 and size_in_name("gpt2") is None
    assert model_params(OmegaConf.merge(m, {"name": "hf", "name_or_path": str(tmp_path / "nothing")})) is None


@pytest.mark.parametrize("command, key, tiny, large", [
    ("grpo", "grpo.budget_eval_every", 50, 0), ("grpo", "grpo.eval_num_problems", 100, 50),
    ("grpo", "grpo.eval_every", 25, 25), ("sft", "sft.eval_num_problems", 200, 100),
    ("pipeline", "grpo.budget_eval_every", 0, 0), ("pipeline", "sft.eval_num_problems", 200, 100)])
def test_size_based_defaults_keep_the_tiny_model_and_shrink_for_smollm2(command, key, tiny, large, tmp_path):
    assert OmegaConf.select(compose_config(command, []), key) == tiny
    assert OmegaConf.select(compose_config(command, ["model=smollm2-135m"]), key) == large
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(SMOLLM2))
    assert OmegaConf.select(compose_config(command, ["model=hf", f"model.name_or_path={folder}"]), key) == large


def test_size_based_defaults_follow_max_steps_and_yield_to_the_user():
    assert compose_config("grpo", ["grpo.max_steps=7"]).grpo.budget_eval_every == 7
    cfg = compose_config("grpo", ["model=smollm2-135m", "grpo.budget_eval_every=3", "grpo.eval_num_problems=9"])
    assert (cfg.grpo.budget_eval_every, cfg.grpo.eval_num_problems) == (3, 9)


def test_grpo_plan_says_what_runs_and_what_is_off():
    cfg = compose_config("grpo", ["model=smollm2-135m", "grpo.max_steps=3"])
    held, sweep = C.grpo_plan(cfg, ["test"], [])
    assert held.startswith("2 x held-out eval: 1 split x 50 problems") and held.endswith("(steps 0, 3)")
    assert "budget sweep: off by default" in sweep and "135M params" in sweep and "grpo.budget_eval_every" in sweep
    cfg = compose_config("grpo", ["grpo.max_steps=4", "grpo.budget_eval_every=2"])
    assert C.grpo_plan(cfg, ["a"], [])[1].startswith("3 x budget sweep: 6 budgets x 1 split x 25 problems x n=4")
    assert C.eval_steps(25, 100) == [0, 25, 50, 75, 100] and C.eval_steps(0, 10) == []
    assert C.eval_steps(3, 7, start_step=3) == [6, 7]


def test_the_cost_line_is_printed_before_the_eval_runs(tiny, task, monkeypatch):
    """The held-out eval and the sweep print their cost line first (a console records the order)."""
    from rich.console import Console

    from rlvr.config.sections import RewardsConfig
    from rlvr.eval import budget_sweep, heldout
    from rlvr.rewards.runtime import eval_runtime
    from rlvr.runs.layout import Checkpoint

    model, tok = tiny
    events: list[str] = []

    class Recording(Console):
        def print(self, *args, **kwargs):
            events.append(" ".join(map(str, args)))

    console = Recording(quiet=True)
    real_heldout, real_sweep = heldout.sample_and_score, budget_sweep.budget_sweep

    def heldout_cell(*args, **kwargs):
        events.append("generate")
        return real_heldout(*args, **kwargs)

    def sweep(*args, **kwargs):
        events.append("sweep")
        return real_sweep(*args, **kwargs)

    monkeypatch.setattr(heldout, "sample_and_score", heldout_cell)
    monkeypatch.setattr(budget_sweep, "budget_sweep", sweep)
    runtime = eval_runtime(RewardsConfig(num_workers=0))
    try:
        heldout.evaluate_heldout(model, tok, task, ["test_ops1"], 2, 8, 8, runtime, console=console,
                                 what="held-out eval @ step 0")
        assert events[0].startswith("held-out eval @ step 0: 1 split x 2 problems = 2 generations")
        assert events[1] == "generate"
        events.clear()
        e = OmegaConf.create({"budgets": [0], "n": 1, "k_list": [1], "num_problems": 2, "max_new_tokens": 8,
                              "answer_tokens": 4, "temperature": 1.0, "top_p": 1.0, "batch_size": 8,
                              "state_budget_in_prompt": False, "budget_prompt_template": "Think for {budget}."})
        with tempfile.TemporaryDirectory() as out:
            budget_sweep.sweep_checkpoint(model, tok, task, e, Checkpoint(None, "step 0", 0, 0.0, out), out,
                                          runtime, splits=["test_ops1"], console=console,
                                          what="budget sweep @ step 0")
        assert events[0].startswith("budget sweep @ step 0: 1 budget x 1 split x 2 problems x n=1 = 2 generations")
        assert "measured" in events[0]  # timed by the held-out eval's throughput on the same model
        assert events[1] == "sweep"
    finally:
        runtime.close()
