"""fp32 vs bf16 autocast on CPU: forward+backward and forward-only time of one micro-batch, side by side.

    OMP_NUM_THREADS=2 python scripts/bench_cpu_precision.py [--model smollm2-135m] [--batch 4] [--tokens 128]
        [--repeats 3] [--threads 2]

Why: ``grpo.mixed_precision=bf16`` halves activation memory, but on a CPU without native bf16 matmuls (no
avx512_bf16 / AMX) the kernels are emulated and slower; this measures which is faster on the machine at hand.
Each repeat runs fp32 then bf16 (alternating, so a drifting load hits both); the first repeat is a warm-up and
left out of the medians. The step is the update's shape: logits -> log_softmax -> mean -> backward.
"""

from __future__ import annotations

import argparse
import statistics
import time


def _step(model, ids, bf16: bool, backward: bool) -> float:
    import torch

    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), torch.set_grad_enabled(backward):
        loss = model(input_ids=ids).logits.float().log_softmax(-1).mean()
    if backward:
        loss.backward()
        model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    import torch

    from rlvr.config import ModelConfig
    from rlvr.models import load_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m", help="tiny | smollm2-135m | a model folder")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="alternating fp32/bf16 pairs; the first is a warm-up")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    named = args.model in ("tiny", "smollm2-135m")
    model = load_model(ModelConfig(name=args.model) if named else ModelConfig(name_or_path=args.model)).train()
    ids = torch.randint(100, model.config.vocab_size - 1, (args.batch, args.tokens))
    times: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.repeats):
        for bf16 in (False, True):
            for backward in (True, False):
                times.setdefault(("bf16" if bf16 else "fp32", backward), []).append(_step(model, ids, bf16, backward))
    print(f"{args.model}, {args.batch} x {args.tokens} tokens, {args.threads} threads, median of "
          f"{max(args.repeats - 1, 1)} after a warm-up")
    for (precision, backward), ts in times.items():
        kept = ts[1:] or ts
        print(f"  {precision:4s} {'forward+backward' if backward else 'forward':16s} {statistics.median(kept):7.2f} s"
              f"   (all: {', '.join(f'{t:.2f}' for t in ts)})")


if __name__ == "__main__":
    main()
