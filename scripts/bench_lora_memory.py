"""Peak memory of ``rlvr grpo``: full fine-tuning vs LoRA on the same model and shape, side by side.

    python scripts/bench_lora_memory.py                           # SmolLM2-135M (packaged), r=8, 2 steps each
    python scripts/bench_lora_memory.py --model tiny --steps 3     # the embedded tiny model
    python scripts/bench_lora_memory.py --kl 0.05                  # + a KL reference (LoRA: the base, no copy)

Each run is a fresh ``python -m rlvr.cli grpo`` process; its peak resident set size is the kernel's high-water
mark for that process (``ru_maxrss`` of the waited-for child: the reward workers are off, so no other process
counts). RSS includes the Python/torch baseline, which the runs share, so the difference between them is what
LoRA saves: gradients and AdamW state for the frozen base (8 + 4 bytes per fp32 parameter), and with a KL term
the reference copy. Prints a table and writes it as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRPO = ["task=arith", "logger=none", "algo=grpo", "grpo.prompts_per_step=2", "grpo.group_size=4",
        "grpo.max_new_tokens=32", "grpo.micro_batch_size=4", "grpo.eval_every=0", "grpo.budget_eval_every=0",
        "grpo.save_every=0", "rewards.num_workers=0", "grpo.threads=1"]
MEASURE = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
           "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)")


def model_args(model: str) -> list[str]:
    if model == "tiny":
        return ["model=tiny"]
    if model == "smollm2":
        from rlvr.config import ModelConfig
        from rlvr.models import resolve_model_source

        folder, _ = resolve_model_source(ModelConfig(name="smollm2-135m"))  # the plain HF folder, converted once
        return ["model=hf", f"model.name_or_path={folder}"]
    return ["model=hf", f"model.name_or_path={model}"]


def peak_rss(overrides: list[str], out_dir: Path) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one ``rlvr grpo`` run in a fresh process."""
    command = [sys.executable, "-c", MEASURE, sys.executable, "-m", "rlvr.cli", "grpo", f"output_dir={out_dir}",
               *overrides]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    seconds = time.perf_counter() - start
    line = [x for x in done.stdout.splitlines() if x.startswith("PEAK_KB")]
    if not line or line[-1].split()[2] != "0":
        raise RuntimeError(f"the run failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return int(line[-1].split()[1]) / 1024, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2", help="smollm2 | tiny | a local HF folder")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--kl", type=float, default=0.0, help="algo.kl_beta (full: a reference copy; LoRA: none)")
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    args = parser.parse_args()
    common = [*model_args(args.model), *GRPO, f"grpo.max_steps={args.steps}", f"algo.kl_beta={args.kl}"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in (("full", ["model.lora.r=0"]), (f"lora r={args.rank}", [f"model.lora.r={args.rank}"])):
            mb, seconds = peak_rss(common + extra, Path(tmp) / label.replace(" ", "_").replace("=", ""))
            rows.append({"run": label, "peak_rss_mb": round(mb, 1), "wall_s": round(seconds, 1)})
            print(f"{label:>12}: peak RSS {mb:8.1f} MB   ({seconds:.0f} s)", flush=True)
    saved = rows[0]["peak_rss_mb"] - rows[1]["peak_rss_mb"]
    print(f"LoRA saves {saved:.1f} MB ({100 * saved / rows[0]['peak_rss_mb']:.1f}% of the full run's peak); "
          f"model={args.model} steps={args.steps} kl_beta={args.kl}")
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "steps": args.steps, "kl_beta": args.kl,
                                        "rows": rows, "saved_mb": saved}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
