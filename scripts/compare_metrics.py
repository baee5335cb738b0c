"""Compare two runs' metrics.jsonl row by row: every key, floats to a tolerance; timings are skipped.

    python scripts/compare_metrics.py RUN_A/metrics.jsonl RUN_B/metrics.jsonl [--rtol 1e-5] [--atol 1e-6]

Used to show that a refactor leaves behaviour unchanged: a fixed-seed run before and after the change must agree
on every key but wall-clock ones (``time/*``, ``perf/*``, ``*seconds*``). Exit 1 lists every difference.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

SKIP = ("time/", "perf/", "train_runtime", "train_samples_per_second", "train_steps_per_second")


def skipped(key: str) -> bool:
    return key.startswith(SKIP) or "seconds" in key or key in SKIP


def close(a, b, rtol: float, atol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if math.isnan(a) and math.isnan(b):
            return True
        return abs(a - b) <= atol + rtol * abs(b)
    return a == b


def compare(path_a: str, path_b: str, rtol: float, atol: float) -> list[str]:
    rows_a = [json.loads(line) for line in open(path_a) if line.strip()]
    rows_b = [json.loads(line) for line in open(path_b) if line.strip()]
    problems = [] if len(rows_a) == len(rows_b) else [f"{len(rows_a)} rows vs {len(rows_b)}"]
    for i, (a, b) in enumerate(zip(rows_a, rows_b)):
        keys_a = {k for k in a if not skipped(k)}
        keys_b = {k for k in b if not skipped(k)}
        for k in sorted(keys_a ^ keys_b):
            problems.append(f"row {i}: key {k!r} only in {'A' if k in keys_a else 'B'}")
        for k in sorted(keys_a & keys_b):
            if not close(a[k], b[k], rtol, atol):
                problems.append(f"row {i} (step {a.get('step')}): {k}: {a[k]!r} vs {b[k]!r}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--atol", type=float, default=1e-6)
    args = parser.parse_args()
    problems = compare(args.a, args.b, args.rtol, args.atol)
    n = sum(1 for line in open(args.a) if line.strip())
    print(f"{args.a} vs {args.b}: {n} rows, {len(problems)} difference(s)")
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
