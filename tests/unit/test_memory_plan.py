"""rlvr plan's estimator (rlvr.train.memory_plan) and command (rlvr.train.plan_cli): parameter counts against
rlvr.config.model_size, sharding and LoRA arithmetic, the 1.5B/7B matrix, bad input, and the activation count
against what autograd really saves for a small Qwen2."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rlvr.config.model_size import SMOLLM2_135M, architecture_params, tiny_params
from rlvr.config.sections import TinyModelConfig
from rlvr.train import plan_cli
from rlvr.train.memory_plan import (LOGITS_BYTES, SHARDINGS, PlanError, Setup, check_setup, estimate,
                                    load_shape, logits_bytes, lora_params, matrix, shape_for_model,
                                    shape_from_config, stored_activation_bytes, tiny_config)

# a small Qwen2 whose LoRA count is done by hand below
SMALL = {"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 256,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300, "tie_word_embeddings": True}
# how the matrix runs: fp32 master weights, bf16 matmuls, one 256 + 1024-token row per micro-batch
GPU = Setup(mixed_precision="bf16", micro_batch=1, prompt_tokens=256, completion_tokens=1024, device_gb=80)


def test_parameter_counts_are_model_sizes():
    smollm2 = load_shape("smollm2-135m")
    assert smollm2.params == architecture_params(SMOLLM2_135M) == 134_515_008
    tiny = shape_from_config(tiny_config(TinyModelConfig()), "tiny")
    assert tiny.params == tiny_params(TinyModelConfig())
    assert tiny.outer_params + tiny.layers * tiny.layer_params == tiny.params
    qwen = load_shape("qwen2.5-1.5b")  # 1,543,714,304 in the checkpoint: 57,344 of q/k/v biases are not counted
    assert qwen.params == 1_543_656_960 and qwen.tied
    assert load_shape("qwen2.5-7b").params == 7_615_487_488 and not load_shape("qwen2.5-7b").tied


def test_fsdp_divides_the_training_state_by_the_world():
    shape = load_shape("qwen2.5-7b")
    one = estimate(shape, replace(GPU, sharding="none"))
    eight = estimate(shape, replace(GPU, sharding="fsdp", devices=8, reference=True))
    for name in ("weights", "grads", "optimizer"):
        assert eight.get(name) == pytest.approx(one.get(name) / 8)
    assert eight.get("reference") == pytest.approx(one.get("weights") / 8)
    assert eight.get("rollout copy") == pytest.approx(one.get("weights"))  # sampling reads whole weights
    ddp = estimate(shape, replace(GPU, sharding="ddp", devices=8))
    assert ddp.get("weights") == one.get("weights") and ddp.get("comm buffers") == one.get("grads")


def test_lora_trainable_params_by_hand():
    shape = shape_from_config(SMALL, "small")
    # r x (in + out) per linear: q 64+64, k 64+32, v 64+32, o 64+64, gate/up/down 64+256 each
    per_layer = 8 * ((64 + 64) + 2 * (64 + 32) + (64 + 64) + 3 * (64 + 256))
    assert per_layer == 11_264
    assert lora_params(shape, 8) == 2 * per_layer == 22_528
    assert lora_params(shape, 8, ("q_proj", "v_proj")) == 2 * 8 * ((64 + 64) + (64 + 32))
    plan = estimate(shape, Setup(lora_rank=8, engine="none", reference=True))
    assert plan.trainable_params == 22_528 and plan.get("grads") == 22_528 * 4 and plan.get("reference") == 0


def test_lora_count_matches_peft():
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(Qwen2Config(**SMALL))
    model = peft.get_peft_model(model, peft.LoraConfig(r=8, target_modules="all-linear"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == lora_params(shape_from_config(SMALL, "small"), 8)


@pytest.mark.parametrize("name", ["qwen2.5-1.5b", "qwen2.5-7b"])
def test_matrix_rows_are_monotone(name):
    rows = {(s, n, label): plan for s, n, label, plan in matrix(load_shape(name), GPU, (1, 8), 8)}
    total = {key: plan.total_bytes for key, plan in rows.items() if plan is not None}
    assert rows[("none", 8, "full")] is None and rows[("none", 8, "LoRA r=8")] is None  # one process only
    for label in ("full", "LoRA r=8"):
        assert total[("fsdp", 8, label)] < total[("ddp", 8, label)]
        assert total[("fsdp", 8, label)] < total[("fsdp", 1, label)]
        assert total[("ddp", 1, label)] == total[("none", 1, label)]  # DDP on one device is no DDP
        assert total[("ddp", 8, label)] >= total[("ddp", 1, label)]  # replicas: buckets on top, never less
    for sharding, n in (("none", 1), ("ddp", 8), ("fsdp", 8)):
        assert total[(sharding, n, "LoRA r=8")] < total[(sharding, n, "full")]


def test_7b_fits_only_when_sharded():
    shape = load_shape("qwen2.5-7b")
    assert estimate(shape, GPU).verdict == "DOES NOT FIT"  # 122 GB of fp32 weights, grads and AdamW alone
    assert estimate(shape, replace(GPU, sharding="ddp", devices=8)).verdict == "DOES NOT FIT"
    fsdp = replace(GPU, sharding="fsdp", devices=8)
    assert estimate(shape, replace(fsdp, engine="hf")).verdict == "FITS"
    assert estimate(shape, replace(fsdp, weight_dtype="bfloat16")).verdict == "FITS"
    # fp32 weights + colocated vLLM: its fp32 copy does not fit its 30% share, and the planner says so
    assert any("vLLM" in w for w in estimate(shape, fsdp).warnings)


def test_bad_input_says_what_and_how_to_fix():
    fields = dict(check_setup(Setup(sharding="zero", lora_rank=-1, mixed_precision="fp8", micro_batch=0)))
    assert set(fields) == {"sharding", "lora_rank", "mixed_precision", "micro_batch"}
    assert all("Fix:" in text for text in fields.values())
    assert "ddp" in dict(check_setup(Setup(sharding="none", devices=8)))["devices"]
    with pytest.raises(PlanError, match="qwen2.5-1.5b, qwen2.5-7b"):  # a missing shape lists what exists
        load_shape("qwen3-235b")
    with pytest.raises(PlanError, match="negative"):
        estimate(load_shape("qwen2.5-7b"), Setup(lora_rank=-4))


def test_hub_ids_match_packaged_shapes():
    assert shape_for_model("Qwen/Qwen2.5-Math-7B").params == load_shape("qwen2.5-7b").params
    assert shape_for_model("Qwen/Qwen2.5-Coder-1.5B-Instruct").name == "qwen2.5-1.5b"
    assert shape_for_model("meta-llama/Llama-3.1-8B") is None


def test_shardings_match_the_trainer():
    sharding = pytest.importorskip("rlvr.train.sharding")
    assert set(SHARDINGS) == set(sharding.SHARDINGS) - {"auto"}


def test_activations_match_what_autograd_saves():
    """The stored-activation count against saved_tensors_hooks on a small Qwen2 (a GRPO-padded batch; fp32 and
    bf16 autocast): within 15% (scripts/check_memory_plan.py: 1-8% on the tiny model and SmolLM2)."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, Qwen2Config

    from rlvr.algo.logprobs import token_logprobs_and_entropy

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(Qwen2Config(**{**SMALL, "hidden_size": 128, "intermediate_size": 512}))
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    shape = shape_from_config(model.config.to_dict(), "small")
    n, p, t = 8, 32, 96
    ids = torch.randint(0, 300, (n, p + t))
    mask = torch.ones_like(ids)
    mask[1:, :4], mask[2:, -20:] = 0, 0  # left-padded prompts, right-padded completions
    for mixed in ("no", "bf16"):
        saved: dict[int, int] = {}

        def pack(x):
            if x.untyped_storage().data_ptr() not in params:
                saved[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
            return x

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed == "bf16"):
                token_logprobs_and_entropy(model, ids, mask, p, 1.0)
        setup = Setup(micro_batch=n, prompt_tokens=p, completion_tokens=t, mixed_precision=mixed, engine="none")
        plan = estimate(shape, setup)
        expected = (stored_activation_bytes(shape, setup) + plan.get("params (compute)")
                    + logits_bytes(shape, setup) * 4 / LOGITS_BYTES)
        assert sum(saved.values()) == pytest.approx(expected, rel=0.15), mixed


def test_plan_command_prints_the_matrix(capsys):
    argv = ["plan.shape=qwen2.5-7b", "plan.matrix=true", "plan.format=markdown", "grpo.mixed_precision=bf16",
            "grpo.micro_batch_size=1", "grpo.max_new_tokens=1024", "rollout=hf"]
    assert plan_cli.main(argv) == 0
    out = capsys.readouterr().out
    for sharding, n in (("none", 1), ("ddp", 1), ("ddp", 8), ("fsdp", 1), ("fsdp", 8)):
        for label in ("full", "LoRA r=8"):
            assert f"| {sharding} | {n} | {label} |" in out
    assert "| none | 8 | full | n/a |" in out
    fsdp8 = next(line for line in out.splitlines() if line.startswith("| fsdp | 8 | full |"))
    assert fsdp8.endswith("| FITS |")


def test_plan_command_reads_an_experiment(capsys):
    from rlvr.config.loading import load_config

    cfg = load_config("plan", ["experiment=gsm8k_qwen2.5_1.5b"], plan_cli.validate)
    setup = plan_cli.setup_from_config(cfg)
    read = (setup.micro_batch, setup.completion_tokens, setup.mixed_precision, setup.engine, setup.reference)
    assert read == (4, 1024, "bf16", "vllm", False)  # the experiment's grpo section; dapo has no KL
    assert plan_cli.resolve_shape(cfg).name == "qwen2.5-1.5b"
    assert plan_cli.main(["experiment=gsm8k_qwen2.5_1.5b", "plan.format=markdown"]) == 0
    out = capsys.readouterr().out
    assert "| peak per device |" in out and "| activations | update |" in out


def test_plan_command_reports_every_bad_option(capsys):
    assert plan_cli.main(["plan.shape=nope", "model.lora.r=-1", "grpo.sharding=zero"]) == 2
    err = capsys.readouterr().err
    assert "3 configuration errors" in err
    assert "plan.shape" in err and "model.lora.r" in err and "grpo.sharding" in err and "qwen2.5-7b" in err
