"""``rlvr sft`` with LoRA (``model.lora.r=8``) end to end: tiny model (save, merged final, resume) and SmolLM2.

    python -m pytest -q -m slow tests/integration/test_sft_lora.py

Tiny shapes (4 steps of 8 sequences; SmolLM2: 2 steps of 2): these tests prove the LoRA path trains only the
adapters, checkpoints and resumes through TRL, and hands on a final/ that plain transformers loads, not that it
learns.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from rlvr.cli import main
from rlvr.runs.tracking import read_metrics

pytestmark = pytest.mark.slow

TINY = ["task=arith", "model=tiny", "logger=none", "model.lora.r=8", "sft.batch_size=8", "sft.max_train_samples=64",
        "sft.logging_steps=1", "sft.eval_num_problems=4", "sft.eval_max_new_tokens=24", "sft.eval_splits=[test_ops1]",
        "sft.num_examples_to_print=0", "rewards.num_workers=1"]


def losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["train/loss"] for r in read_metrics(run_dir / "metrics.jsonl") if "train/loss" in r}


def adapter_tensors(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def check_merged_final(final) -> torch.nn.Module:
    """final/ holds adapter/ and a plain merged model, and the two give the same logits."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert (final / "adapter" / "adapter_config.json").exists()
    assert "peft" not in (final / "config.json").read_text()
    merged = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32).eval()
    marker = json.loads((final / "rlvr_lora.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(marker["base_model"], dtype=torch.float32)
    if base.get_input_embeddings().weight.shape[0] != marker["vocab_rows"]:
        base.resize_token_embeddings(marker["vocab_rows"], mean_resizing=False)
    lora = PeftModel.from_pretrained(base, final / "adapter").eval()
    ids = torch.tensor([[1, 5, 9, 20, 33, 7]])
    with torch.no_grad():
        a, b = merged(input_ids=ids).logits, lora(input_ids=ids).logits
    # fp32 rounding of (W + BA) x against W x + B A x, summed over the layers: ~2e-5 of the logits' scale on SmolLM2
    assert (a - b).abs().max() < 1e-4 * max(1.0, b.abs().max().item())
    return merged


def test_tiny_lora_sft_saves_adapter_and_merged_model_and_resumes(tmp_path, capsys):
    run = tmp_path / "sft"
    args = ["sft", f"output_dir={run}", "sft.max_steps=4", "sft.save_steps=2", *TINY]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "LoRA r=8 alpha=16 on 28 modules: trainable 90,112" in out and "read back exactly" in out
    done = json.loads((run / "final" / "rlvr_sft_done.json").read_text())
    assert done["sft/trainable_params"] == 90_112
    ckpt = run / "checkpoints" / "checkpoint-2"
    assert (ckpt / "adapter_model.safetensors").exists() and not (ckpt / "model.safetensors").exists()
    check_merged_final(run / "final")
    rows = json.loads((run / "eval" / "sft_heldout.json").read_text())["rows"]
    assert [(r["split"], r["n"]) for r in rows] == [("test_ops1", 4)]  # the held-out eval ran on the LoRA model
    full, first_adapter = losses(run), adapter_tensors(run / "final" / "adapter")

    # A crash after step 2's checkpoint: the later checkpoint and final/ never got written.
    shutil.rmtree(run / "checkpoints" / "checkpoint-4")
    shutil.rmtree(run / "final")
    assert main(args) == 0
    assert "resuming from" in capsys.readouterr().out
    resumed = losses(run)
    assert sorted(resumed) == [1, 2, 3, 4] and resumed[2] == full[2]
    assert resumed[4] == pytest.approx(full[4], rel=1e-4)  # adapter, optimizer and data order restored
    again = adapter_tensors(run / "final" / "adapter")
    assert again.keys() == first_adapter.keys()
    assert all(torch.allclose(again[k], first_adapter[k], atol=1e-6) for k in again)


def test_tiny_lora_sft_without_merge_keeps_the_adapter_only(tmp_path):
    from rlvr.model_lora import load_lora_final

    run = tmp_path / "sft"
    assert main(["sft", f"output_dir={run}", "sft.max_steps=2", "sft.save_steps=0", "sft.eval_num_problems=0",
                 "model.lora.merge_final=false", *TINY]) == 0
    final = run / "final"
    assert not (final / "config.json").exists() and (final / "adapter" / "adapter_model.safetensors").exists()
    model, tokenizer = load_lora_final(final)
    assert len(tokenizer) == model.get_input_embeddings().weight.shape[0]


def test_smollm2_lora_sft_trains_under_two_percent_and_final_loads(smollm2_dir, tmp_path):
    run = tmp_path / "smollm2"
    assert main(["sft", f"output_dir={run}", "model=smollm2-135m", "task=arith", "model.add_think_tokens=true",
                 "model.lora.r=8", "sft.max_steps=2", "sft.batch_size=2", "sft.save_steps=0", "sft.logging_steps=1",
                 "sft.max_train_samples=8", "sft.learning_rate=1e-4", "sft.max_length=128",
                 "sft.eval_num_problems=2", "sft.eval_max_new_tokens=16", "sft.eval_splits=[test_ops1]",
                 "sft.num_examples_to_print=0", "logger=none", "rewards.num_workers=1"]) == 0
    trainable = json.loads((run / "final" / "rlvr_sft_done.json").read_text())["sft/trainable_params"]
    # r x (in + out) on 30 layers x (q, o: 576->576; k, v: 576->192; gate, up: 576->1536; down: 1536->576), plus the
    # rows of the two thinking tags added as tokens (2 x 576; the tied head follows them)
    assert trainable == 8 * 30 * ((576 * 2) * 2 + (576 + 192) * 2 + (576 + 1536) * 3) + 2 * 576 == 2_443_392
    merged = check_merged_final(run / "final")
    total = sum(p.numel() for p in merged.parameters())
    assert merged.get_input_embeddings().weight.shape[0] == 49_154
    assert trainable / (total + trainable) < 0.02, (trainable, total)
    print(f"\n[sft lora] SmolLM2 r=8 all-linear: {trainable:,} trainable of {total + trainable:,} "
          f"({100 * trainable / (total + trainable):.2f}%)")
