"""This machine's fp32 matmul throughput at a thread count: the ceiling the update phase's achieved FLOP/s is set beside.

    OMP_NUM_THREADS=2 python scripts/bench_peak_flops.py [--threads 2] [--size 2048] [--repeats 9] [--json]

``torch.matmul`` of two ``size`` x ``size`` fp32 matrices (2 * size^3 FLOPs each) into a preallocated output, after
``--warmup`` untimed calls; the figure is the median over ``--repeats`` timed calls (``perf_counter``), in GFLOP/s.
It is what the same BLAS reaches on one large square GEMM, not the datasheet peak (cores x FMA width x clock): a
training step's GEMMs are smaller and thinner, so its achieved FLOP/s stays below this. ``scripts/bench_grpo_vs_trl.py
--mode speed`` runs it in a fresh subprocess (same thread count and environment as the runs) before and after the
runs, so the ceiling is measured under the same machine load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Sequence


def matmul_gflops(threads: int, size: int = 2048, repeats: int = 9, warmup: int = 2) -> dict[str, Any]:
    """Median (and best) fp32 GFLOP/s of ``size`` x ``size`` matmuls at ``threads`` torch threads."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _timed_matmuls(torch, size, repeats, warmup)
    finally:
        torch.set_num_threads(previous)


def _timed_matmuls(torch, size: int, repeats: int, warmup: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen, dtype=torch.float32)
    b = torch.randn(size, size, generator=gen, dtype=torch.float32)
    c = torch.empty(size, size, dtype=torch.float32)
    for _ in range(warmup):
        torch.matmul(a, b, out=c)
    seconds = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        torch.matmul(a, b, out=c)
        seconds.append(time.perf_counter() - t0)
    flop = 2.0 * size ** 3
    return {"size": size, "threads": torch.get_num_threads(), "repeats": len(seconds), "seconds": seconds,
            "gflops": flop / statistics.median(seconds) / 1e9, "gflops_best": flop / min(seconds) / 1e9}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's current setting)")
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print one JSON line (what the benchmark parses)")
    args = p.parse_args(argv)
    if args.threads is None:
        import torch

        args.threads = torch.get_num_threads()
    r = matmul_gflops(args.threads, args.size, args.repeats, args.warmup)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"fp32 matmul {r['size']}x{r['size']}, {r['threads']} thread(s): median {r['gflops']:.1f} GFLOP/s "
              f"(best {r['gflops_best']:.1f}) over {r['repeats']} calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
