"""``rlvr grpo model.lora.r=8``: only the adapters train, the KL reference is the base with adapters off, a resume
is exact, and the merged ``final/`` generates what base + adapter generate.

    python -m pytest -q -m slow tests/integration/test_grpo_lora.py            # tiny model + SmolLM2, HF engine
    python -m pytest -q -m "slow or vllm" tests/integration/test_grpo_lora.py  # + the vLLM engine's merged sync

The tiny-model runs use test_grpo_resume.py's setting (seed 1, overlong penalty: every step has a gradient), with
a KL term so the reference pass (adapters disabled) runs, and an adapter learning rate high enough to move the
merged weights well past float noise. Peak memory, LoRA vs full fine-tuning, is measured by
scripts/bench_lora_memory.py (docs/lora.md), not asserted here.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlvr.cli import main
from rlvr.runs.tracking import read_metrics

pytestmark = pytest.mark.slow

STEPS = 3
ARGS = ["model=tiny", "task=arith", "logger=none", "algo=grpo", "algo.kl_beta=0.05", "algo.overlong=penalty",
        "algo.overlong_buffer=16", "grpo.prompts_per_step=2", "grpo.group_size=4", "grpo.max_new_tokens=16",
        "grpo.max_train_prompts=64", "grpo.micro_batch_size=4", "grpo.threads=1", "grpo.eval_every=0",
        "grpo.budget_eval_every=0", "rewards.num_workers=0", "grpo.save_every=1", "grpo.learning_rate=1e-2",
        "grpo.keep_checkpoints=5", "model.lora.r=8", "seed=1"]
COMPARED = ("reward/mean", "loss", "grad_norm", "entropy", "kl/ref", "completion/length_mean", "lr",
            "data/position")


def grpo(run: Path, *overrides: str) -> None:
    assert main(["grpo", f"output_dir={run}", *ARGS, *overrides]) == 0


def greedy(model, tokenizer, prompt: str, tokens: int = 20) -> list[int]:
    ids = tokenizer(prompt, return_tensors="pt").input_ids  # [1, P]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    return out[0, ids.shape[1]:].tolist()  # [tokens]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_dir):
    run = tmp_path_factory.mktemp("grpo_lora") / "run"
    grpo(run, f"grpo.max_steps={STEPS}")
    return run


def test_only_adapters_train_and_the_merged_final_generates_as_base_plus_adapter(lora_run, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    done = json.loads((lora_run / "final" / "rlvr_grpo_done.json").read_text())
    assert 0 < done["model/trainable_params"] < 0.1 * done["model/params"]
    rows = read_metrics(lora_run / "metrics.jsonl")
    assert len(rows) == STEPS and all(r["grad_norm"] > 0 for r in rows) and any(r["kl/ref"] > 0 for r in rows[1:])
    base, merged = load_file(str(tiny_model_dir / "model.safetensors")), load_file(
        str(lora_run / "final" / "model.safetensors"))
    assert merged.keys() <= base.keys() | {"lm_head.weight"}
    frozen = [k for k in merged if "proj" not in k]  # embeddings, norms: no adapter, so untouched
    moved = [k for k in merged if "proj" in k and not torch.equal(merged[k], base[k])]
    assert frozen and all(torch.equal(merged[k], base[k]) for k in frozen)
    assert moved, "no adapted weight changed: the adapters did not train"
    assert (lora_run / "checkpoints" / "step_2" / "adapter_model.safetensors").exists()  # checkpoints: the adapter
    assert not (lora_run / "checkpoints" / "step_2" / "model.safetensors").exists()

    tokenizer = AutoTokenizer.from_pretrained(lora_run / "final")
    plain = AutoModelForCausalLM.from_pretrained(lora_run / "final").eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                        lora_run / "final" / "adapter").eval()
    for prompt in ("3 + 4 * 2 =", "Compute 12 - 7."):
        assert greedy(plain, tokenizer, prompt) == greedy(adapted, tokenizer, prompt)


def test_a_lora_run_resumes_exactly(lora_run, tmp_path):
    run = tmp_path / "resumed"
    grpo(run, f"grpo.max_steps={STEPS - 1}")
    grpo(run, f"grpo.max_steps={STEPS}")  # resumes from step_2's adapter, optimizer and RNG states
    resumed, straight = read_metrics(run / "metrics.jsonl"), read_metrics(lora_run / "metrics.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))
    for a, b in zip(resumed, straight):
        assert {k: a[k] for k in COMPARED} == pytest.approx({k: b[k] for k in COMPARED}, rel=1e-5, abs=1e-7), a["step"]
    ours, theirs = (load_file(str(d / "final" / "adapter" / "adapter_model.safetensors")) for d in (run, lora_run))
    assert ours.keys() == theirs.keys()
    assert max((ours[k] - theirs[k]).abs().max().item() for k in ours) < 1e-6


@pytest.mark.vllm
def test_vllm_engine_gets_the_merged_weights(tmp_path, tiny_model_dir):
    """Two steps with rollout=vllm: every sync sends base + adapters under the base's names (the engine raises if
    a parameter got no value, so a run that finishes synced every one)."""
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed (extra 'cpu' or 'vllm')")
    run = tmp_path / "vllm"
    grpo(run, "rollout=vllm", "grpo.max_steps=2")
    rows = read_metrics(run / "metrics.jsonl")
    assert len(rows) == 2 and rows[-1]["time/sync"] > 0
    assert (run / "final" / "adapter" / "adapter_model.safetensors").exists()


def test_lora_grpo_on_smollm2(smollm2_dir, tmp_path):
    run = tmp_path / "smollm2"
    assert main(["grpo", f"output_dir={run}", "model=hf", f"model.name_or_path={smollm2_dir}", "task=arith",
                 "logger=none", "algo=grpo", "algo.kl_beta=0.05", "grpo.max_steps=1", "grpo.prompts_per_step=2",
                 "grpo.group_size=2", "grpo.max_new_tokens=16", "grpo.micro_batch_size=4", "grpo.eval_every=0",
                 "grpo.budget_eval_every=0", "grpo.save_every=0", "rewards.num_workers=0", "model.lora.r=8"]) == 0
    done = json.loads((run / "final" / "rlvr_grpo_done.json").read_text())
    assert 0 < done["model/trainable_params"] < 0.02 * done["model/params"]
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(run / "final")
    assert sum(p.numel() for p in loaded.parameters()) == done["model/params"] - done["model/trainable_params"]
