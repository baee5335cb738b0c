"""HFEngine rollout time: ``decoder="generate"`` (transformers ``generate``) vs ``decoder="loop"`` (our decode loop).

    OMP_NUM_THREADS=1 python scripts/bench_rollout.py [--models tiny,/tmp/sft1000/final] [--prompts 8] [--group 8]
        [--max-new-tokens 64] [--repeats 5] [--threads N] [--device cpu|cuda] [--dtype float32] [--out FILE.json]

What is timed: one ``HFEngine.generate(samples, n=G, SamplingParams(max_new_tokens, temperature 1, top_p 1,
seed))`` call = B prompts x G completions (what one ``rlvr grpo`` step's rollout phase does with
``rollout=hf``), ``perf_counter`` around it (CUDA synchronised). Both decoders run in this one process on the
same model object, alternating (generate, loop, loop-model, loop-model, loop, generate, ...: the order flips every
repeat so a drifting machine load does not favour one), after one untimed warm-up call each. ``loop`` is the
default (the fused Llama-family step where supported), ``loop-model`` the same loop with the model's own forward
per step (what other architectures get). Repeat k uses seed k for both decoders,
so they sample the same distribution (their random streams differ, so completion lengths are equal only in
distribution: the table reports the mean length per decoder). Figures are medians over ``--repeats``; the
ratio is each decoder's median over generate's, with the per-repeat paired ratios beside it.

Models: ``tiny`` = the embedded random tiny model (``rlvr.models``, ``model=tiny``): its completions nearly always
run to the token cap; a folder such as an SFT checkpoint (``/tmp/sft1000/final``, skipped when missing): its
completions stop early (~25 tokens on arith), which is where dropping finished rows pays.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# name -> HFEngine arguments. loop-model: the loop with the model's own forward per step (the generic path every
# causal LM with a row-selectable cache gets); loop: the default, with the fused Llama-family step where supported
DECODERS = {"generate": {"decoder": "generate"}, "loop": {"decoder": "loop"},
            "loop-model": {"decoder": "loop", "loop_step": "model"}}


def load(name: str, device: str, dtype: str):
    import torch

    from rlvr.config import ModelConfig
    from rlvr.models import load_model_and_tokenizer

    cfg = ModelConfig() if name == "tiny" else ModelConfig(name_or_path=name)
    model, tok = load_model_and_tokenizer(cfg)
    model = model.to(device=device, dtype=getattr(torch, dtype))
    model.eval()
    return model, tok


def bench_model(name: str, args: argparse.Namespace) -> dict:
    import torch
    from omegaconf import OmegaConf

    from rlvr.config import TaskConfig
    from rlvr.rollout.base import SamplingParams
    from rlvr.rollout.hf import HFEngine
    from rlvr.tasks import build_task

    model, tok = load(name, args.device, args.dtype)
    samples = build_task(OmegaConf.structured(TaskConfig)).samples("train", limit=args.prompts)
    rows = args.prompts * args.group
    names = args.decoders
    engines = {d: HFEngine(model, tok, batch_size=rows, **DECODERS[d]) for d in names}

    def timed(decoder: str, seed: int) -> tuple[float, float]:
        params = SamplingParams(max_new_tokens=args.max_new_tokens, seed=seed)
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        rollouts = engines[decoder].generate(samples, n=args.group, params=params)
        if args.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, statistics.mean(r.num_tokens for r in rollouts)

    for d in names:  # warm-up: first-call costs (allocator, kernel selection, tokenizer caches)
        timed(d, 10_000)
    times = {d: [] for d in names}
    lengths = {d: [] for d in names}
    for k in range(args.repeats):
        order = names if k % 2 == 0 else names[::-1]
        for d in order:
            seconds, length = timed(d, k)
            times[d].append(seconds)
            lengths[d].append(length)
    med = {d: statistics.median(times[d]) for d in names}
    return {
        "model": name, "rows": rows, "max_new_tokens": args.max_new_tokens,
        "median_s": med,
        "mean_completion_tokens": {d: statistics.mean(lengths[d]) for d in names},
        "times_s": times,
        "ratio_over_generate": {d: med[d] / med["generate"] for d in names},
        "paired_ratios": {d: [x / g for x, g in zip(times[d], times["generate"])] for d in names},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,/tmp/sft1000/final",
                    help="comma-separated: 'tiny' and/or model folders (missing folders are skipped)")
    ap.add_argument("--prompts", type=int, default=8, help="B")
    ap.add_argument("--group", type=int, default=8, help="G")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: $OMP_NUM_THREADS or torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--decoders", default="generate,loop,loop-model",
                    help=f"comma-separated, from {', '.join(DECODERS)}; generate must be one (the ratios' base)")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    args.decoders = [d for d in args.decoders.split(",") if d]
    if "generate" not in args.decoders or any(d not in DECODERS for d in args.decoders):
        ap.error(f"--decoders must include generate and name only {', '.join(DECODERS)}")

    import torch

    threads = args.threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or torch.get_num_threads()
    torch.set_num_threads(threads)
    results = []
    for name in [m for m in args.models.split(",") if m]:
        if name != "tiny" and not Path(name).exists():
            print(f"skipping {name}: not found")
            continue
        results.append(bench_model(name, args))

    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nHFEngine.generate, B={args.prompts} x G={args.group}, max_new_tokens={args.max_new_tokens}, "
          f"{args.dtype} on {args.device}, {threads} thread(s), median of {args.repeats} alternating repeats "
          f"(1-min load average now {load_avg:.1f})\n")
    print("| model | decoder | median s | / generate | paired ratios | tokens/completion |")
    print("|---|---|---:|---:|---|---:|")
    for r in results:
        for d in args.decoders:
            paired = ", ".join(f"{x:.2f}" for x in r["paired_ratios"][d])
            print(f"| {r['model']} | {d} | {r['median_s'][d]:.3f} | {r['ratio_over_generate'][d]:.2f} | {paired} | "
                  f"{r['mean_completion_tokens'][d]:.1f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "threads": threads, "load_avg": load_avg,
                                              "results": results}, indent=2))


if __name__ == "__main__":
    main()
