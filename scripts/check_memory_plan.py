"""Estimated vs measured peak memory of GRPO-like training steps on CPU: the check behind ``rlvr plan``
(rlvr.train.memory_plan) and the table in docs/plan.md.

    taskset -c 1 nice python scripts/check_memory_plan.py                   # tiny + SmolLM2-135M, ~5 min on 1 core
    python scripts/check_memory_plan.py --models tiny --markdown            # tiny only (~1 min), a markdown table

Each case runs in a fresh child process (one torch thread), so that one case's freed memory cannot hide
another's peak. The child imports torch, transformers, peft and rlvr and reads its resident set (the baseline:
the Python/torch runtime, ~300-500 MB, which the estimate does not count and every number below has subtracted),
loads the model through the project's loader (``rlvr.models.load_model``: model=tiny, the packaged SmolLM2),
wraps it in LoRA (peft, all-linear) or turns on activation checkpointing if the case asks, and reads the resident
set again (weights). Then it resets the kernel's high-water mark (``/proc/self/clear_refs``: the loader's
transient peaks do not count) and runs ``--steps`` GRPO-like steps: one micro-batch of random token ids with
left-padded prompts and right-padded completions (a padding mask, as in every GRPO batch), ``rlvr.algo.logprobs.
token_logprobs_and_entropy`` under bf16 autocast if asked, a policy-gradient loss over the completion tokens,
backward, gradient clipping and an AdamW step; gradients are zeroed in place (not freed), as they stay allocated
from a GRPO step's second micro-batch on. The peak is the high-water mark (``VmHWM``) minus the baseline.
glibc's malloc is told to serve every block over 64 KiB by mmap (``MALLOC_MMAP_THRESHOLD_``), so freed tensors
go back to the kernel and the resident set follows what is alive. The first step also records what autograd
saves for the backward (``saved_tensors_hooks``, parameters excluded): the stored-activation count checked on
its own (not with checkpointing, which keeps its own hooks).

The estimate is ``rlvr.train.memory_plan.estimate`` for the model's own config.json (the loaded model's, so the
tiny model's real vocabulary), one device, no rollout engine, no reference. CPU differs from a GPU in two ways
the table shows: AdamW is not foreach on CPU (its temporaries are one parameter at a time, smaller than the
estimate's state-sized copy, which never is the peak here), and the runtime baseline is measured, not estimated.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MIB = 2 ** 20
CASES = {
    "tiny": [dict(micro_batch=32, prompt=64, completion=192),
             dict(micro_batch=32, prompt=64, completion=192, checkpointing=True),
             dict(micro_batch=32, prompt=64, completion=192, mixed="bf16"),
             dict(micro_batch=32, prompt=64, completion=192, lora=8)],
    "smollm2-135m": [dict(micro_batch=4, prompt=128, completion=128),
                     dict(micro_batch=4, prompt=128, completion=128, checkpointing=True),
                     dict(micro_batch=4, prompt=128, completion=128, lora=8),
                     dict(micro_batch=2, prompt=64, completion=64, mixed="bf16")],
}


# ------------------------------------------------------------------------------------------------ child side
def _status(field: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _settle() -> int:
    """Resident bytes after garbage collection and returning free heap pages to the kernel."""
    import ctypes
    import gc

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return _status("VmRSS")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: VmHWM := VmRSS


def _batch(vocab: int, case: dict, generator):
    """(input ids [N, L], attention mask [N, L], completion mask [N, T]) with GRPO's padding: prompts left-padded
    by up to a quarter, completions right-padded by up to a half (row 0 stays full length)."""
    import torch

    n, p, t = case["micro_batch"], case["prompt"], case["completion"]
    ids = torch.randint(0, vocab, (n, p + t), generator=generator)
    mask = torch.ones(n, p + t, dtype=torch.long)
    for row in range(1, n):
        mask[row, :int(torch.randint(0, p // 4 + 1, (1,), generator=generator))] = 0
        cut = int(torch.randint(0, t // 2 + 1, (1,), generator=generator))
        if cut:
            mask[row, p + t - cut:] = 0
    return ids, mask, mask[:, p:].float()


def _load(case: dict):
    """The model as the project loads it, wrapped as the case asks; (model, its config.json dict)."""
    import torch
    from omegaconf import OmegaConf

    from rlvr.config.sections import ModelConfig
    from rlvr.models import load_model

    model = load_model(OmegaConf.structured(ModelConfig(name=case["model"])))
    with torch.no_grad():  # the loader may leave weights mmapped from the file, resident only once touched;
        for p in model.parameters():  # on a GPU they are copied to the device: here to anonymous memory
            p.data = p.data.clone()
    config = model.config.to_dict()
    model.config.use_cache = False
    if case.get("checkpointing"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if case.get("lora"):
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=case["lora"], lora_alpha=16, lora_dropout=0.0,
                                                 target_modules="all-linear"))
    model.train()
    return model, config


def _step(model, optimizer, case: dict, vocab: int, generator, saved: dict | None) -> None:
    import torch

    from rlvr.algo.logprobs import token_logprobs_and_entropy

    ids, mask, completion_mask = _batch(vocab, case, generator)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):  # storages autograd keeps for the backward, parameters excluded
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t) if saved is not None else None
    with hooks if hooks is not None else torch.enable_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case.get("mixed") == "bf16"):
            logprobs, _ = token_logprobs_and_entropy(model, ids, mask, case["prompt"], 1.0)
    advantages = torch.randn(ids.shape[0], 1, generator=generator)
    loss = -(advantages * logprobs * completion_mask).sum() / completion_mask.sum()
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=False)  # kept allocated, as from a GRPO step's second micro-batch on


def child(case: dict, steps: int) -> dict:
    import torch

    torch.set_num_threads(1)
    import peft  # noqa: F401 - part of the baseline, as in a LoRA run
    import transformers  # noqa: F401

    import rlvr.algo.logprobs  # noqa: F401
    import rlvr.models  # noqa: F401

    baseline = _settle()
    model, config = _load(case)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-6, betas=(0.9, 0.99))
    loaded = _settle()
    _reset_peak()
    generator = torch.Generator().manual_seed(0)
    saved: dict = {}
    start = time.perf_counter()
    for step in range(steps):
        track = saved if step == 0 and not case.get("checkpointing") else None
        _step(model, optimizer, case, config["vocab_size"], generator, track)
    return {"case": case, "config": config, "baseline": baseline, "weights": loaded - baseline,
            "peak": _status("VmHWM") - baseline, "saved": sum(saved.values()) or None,
            "trainable": sum(p.numel() for p in trainable), "seconds_per_step": (time.perf_counter() - start) / steps}


# ----------------------------------------------------------------------------------------------- parent side
def run_case(case: dict, steps: int) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(case), "--steps", str(steps)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def prepare(models: list[str]) -> None:
    """Build or convert each model once (the tiny model's tokenizer and weights, SmolLM2's GGUF -> HF folder),
    so that no case pays for it."""
    for name in models:
        code = ("from omegaconf import OmegaConf; from rlvr.config.sections import ModelConfig; "
                "from rlvr.models import resolve_model_source; "
                f"print(resolve_model_source(OmegaConf.structured(ModelConfig(name={name!r}))))")
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def estimate_for(result: dict):
    from rlvr.train.memory_plan import Setup, estimate, shape_from_config

    case = result["case"]
    setup = Setup(micro_batch=case["micro_batch"], prompt_tokens=case["prompt"], completion_tokens=case["completion"],
                  mixed_precision=case.get("mixed", "no"), activation_checkpointing=bool(case.get("checkpointing")),
                  lora_rank=case.get("lora", 0), engine="none")
    return estimate(shape_from_config(result["config"], case["model"], "the loaded model's config"), setup)


def label(case: dict) -> str:
    parts = [f"{case['micro_batch']} x ({case['prompt']}+{case['completion']})", case.get("mixed", "fp32")]
    if case.get("checkpointing"):
        parts.append("checkpointing")
    if case.get("lora"):
        parts.append(f"LoRA r={case['lora']}")
    return ", ".join(parts)


def table_rows(results: list[dict]) -> list[list[str]]:
    """One row per case: weights, peak and stored activations, estimated vs measured (MiB) and their ratio."""
    from rlvr.train.memory_plan import LOGITS_BYTES, logits_bytes, stored_activation_bytes

    rows = []
    for r in results:
        plan = estimate_for(r)
        est_peak = plan.total_bytes
        # what autograd keeps: the stored activations, the fp32 logits (4 of LOGITS_BYTES) and autocast's weight casts
        stored = (stored_activation_bytes(plan.shape, plan.setup) + plan.get("params (compute)")
                  + logits_bytes(plan.shape, plan.setup) * 4 / LOGITS_BYTES)
        saved = f"{stored / MIB:.0f} / {r['saved'] / MIB:.0f} ({r['saved'] / stored:.2f})" if r["saved"] else "-"
        rows.append([r["case"]["model"], label(r["case"]), f"{r['trainable']:,}",
                     f"{plan.get('weights') / MIB:.0f} / {r['weights'] / MIB:.0f}",
                     f"{est_peak / MIB:.0f}", f"{r['peak'] / MIB:.0f}", f"{r['peak'] / est_peak:.2f}", saved,
                     f"{r['baseline'] / MIB:.0f}", f"{r['seconds_per_step']:.1f}"])
    return rows


COLUMNS = ["model", "micro-batch x (prompt+completion), precision", "trainable", "weights MiB est / meas",
           "peak MiB est", "peak MiB meas", "meas / est", "saved for backward MiB est / meas (ratio)",
           "baseline MiB", "s/step"]


def print_table(rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(COLUMNS) + " |\n|" + "|".join("---" for _ in COLUMNS) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*COLUMNS, title="rlvr plan: estimated vs measured peak per process (CPU, baseline subtracted)")
    for row in rows:
        table.add_row(*row)
    Console(width=220).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--steps", type=int, default=2, help="training steps per case (>= 2: AdamW's states "
                                                             "exist from the first step's end)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table (docs/plan.md)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child), args.steps)))
        return 0
    prepare(args.models)
    results = []
    for name in args.models:
        for case in CASES[name]:
            results.append(run_case({"model": name, **case}, args.steps))
            print(f"measured {name}: {label(case)}", file=sys.stderr)
    print_table(table_rows(results), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
