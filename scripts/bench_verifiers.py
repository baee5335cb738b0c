"""Benchmark the ``math`` verifier against labelled real data, side by side with math-verify.

    python scripts/bench_verifiers.py [--limit N] [--out DIR] [--no-math-verify]

Data: ``$RLVR_DATA_DIR`` or ``../shared/data`` relative to the repository root (see PROVENANCE.md there):
- ``math/gsm8k_model_solutions.jsonl``: 1,319 GSM8K problems x 4 OpenAI model solutions, each labelled
  ``is_correct``; the reference is a worked solution ending ``A: <n>``.
- ``math/qwen25math_cot100_labelled.jsonl``: 100 MATH problems x 8 Qwen2.5-Math answers labelled ``score``.

For each set: agreement with the labels (ours and math-verify's on the same rows), throughput in cases/s (single
process, same run, median of ``--repeats``), and every row where we disagree with the label, with math-verify's
verdict next to it (written to ``<out>/disagreements_<set>.jsonl`` and printed).

math-verify is optional (it is not a dependency of rlvr): install it in a separate virtual environment, e.g.
``python3 -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install math-verify sympy &&
/tmp/benchvenv/bin/pip install --no-deps -e .`` and run this script with that interpreter.
How math-verify is called: ``verify(parse(gold), parse(completion))`` with its default extraction configs; the
gold is given to it pre-extracted (the ``A: n`` value for GSM8K, ``$gt$`` for MATH) — an easier task than ours,
since our verifier reads the raw reference.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path | None:
    env = os.environ.get("RLVR_DATA_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if (path / "math").is_dir() else None


def load_sets(root: Path, limit: int | None) -> dict[str, list[dict]]:
    """name -> rows of {completion, reference (raw), gold (pre-extracted, for math-verify), label, id}."""
    sets: dict[str, list[dict]] = {}
    gsm = root / "math" / "gsm8k_model_solutions.jsonl"
    if gsm.is_file():
        rows = []
        for i, line in enumerate(gsm.read_text(encoding="utf-8").splitlines()):
            problem = json.loads(line)
            gold = re.findall(r"^A:\s*(.+)$", problem["ground_truth"], re.MULTILINE)[-1].strip()
            for model in ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification"):
                sol = problem[model]
                rows.append({"id": f"{i}/{model}", "completion": sol["solution"], "reference": problem["ground_truth"],
                             "gold": gold, "label": bool(sol["is_correct"])})
        sets["gsm8k_model_solutions"] = rows[:limit]
    qwen = root / "math" / "qwen25math_cot100_labelled.jsonl"
    if qwen.is_file():
        rows = []
        for line in qwen.read_text(encoding="utf-8").splitlines():
            problem = json.loads(line)
            for j, (text, score) in enumerate(zip(problem["code"], problem["score"])):
                rows.append({"id": f"{problem['idx']}/{j}", "completion": text, "reference": problem["gt"],
                             "gold": problem["gt"], "label": bool(score), "source_pred": problem["pred"][j]})
        sets["qwen25math_cot100_labelled"] = rows[:limit]
    return sets


def ours_fn():
    from rlvr.verifiers import load

    verifier = load("math")
    return lambda row: (verifier(row["completion"], row["reference"]).score or 0.0) > 0.5, verifier


def math_verify_fn():
    try:
        from math_verify import parse, verify
    except ImportError as exc:
        return None, f"math-verify not importable here ({exc}); install it in a benchmark venv (see docstring)"

    def judge(row):
        try:
            gold = parse(f"${row['gold']}$") or parse(row["gold"])
            return bool(verify(gold, parse(row["completion"])))
        except Exception:  # noqa: BLE001 - math-verify raising counts as "not verified"
            return False

    return judge, None


def timed(judge, rows, repeats: int) -> tuple[list[bool], float]:
    """Verdicts and median cases/s over ``repeats`` passes (first pass included: caches are part of the design)."""
    rates, verdicts = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        verdicts = [judge(r) for r in rows]
        rates.append(len(rows) / (time.perf_counter() - t0))
    return verdicts, statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="rows per set (default: all)")
    ap.add_argument("--repeats", type=int, default=3, help="timing passes; the median is reported")
    ap.add_argument("--out", default="runs/bench_verifiers", help="folder for disagreement listings")
    ap.add_argument("--no-math-verify", action="store_true", help="skip the math-verify comparison")
    args = ap.parse_args(argv)

    root = data_dir()
    if root is None:
        print("SKIP: labelled data not found (set RLVR_DATA_DIR or place it at ../shared/data relative to the repo)")
        return 0
    sets = load_sets(root, args.limit)
    if not sets:
        print(f"SKIP: no labelled math sets under {root}/math")
        return 0
    ours, verifier = ours_fn()
    mv, why = (None, "disabled by --no-math-verify") if args.no_math_verify else math_verify_fn()
    if mv is None:
        print(f"NOTE: {why}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    for name, rows in sets.items():
        labels = [r["label"] for r in rows]
        our_v, our_rate = timed(ours, rows, args.repeats)
        print(f"\n== {name}: {len(rows)} labelled rows")
        our_agree = sum(a == b for a, b in zip(our_v, labels))
        print(f"ours        agreement {our_agree}/{len(rows)} = {our_agree / len(rows):.4f}   {our_rate:9.0f} cases/s")
        mv_v = None
        if mv is not None:
            mv_v, mv_rate = timed(mv, rows, args.repeats)
            mv_agree = sum(a == b for a, b in zip(mv_v, labels))
            print(f"math-verify agreement {mv_agree}/{len(rows)} = {mv_agree / len(rows):.4f}   {mv_rate:9.0f} cases/s")
            print(f"throughput ratio ours/math-verify: {our_rate / mv_rate:.1f}x")
        disagreements = []
        for i, (row, ok) in enumerate(zip(rows, our_v)):
            if ok != row["label"] or (mv_v is not None and mv_v[i] != row["label"]):
                result = verifier(row["completion"], row["reference"])
                disagreements.append({
                    "id": row["id"], "label": row["label"], "ours": ok,
                    "math_verify": None if mv_v is None else mv_v[i], "ours_extracted": result.extracted,
                    "gold": row["gold"], "source_pred": row.get("source_pred"), "metrics": result.metrics,
                    "completion_tail": row["completion"][-300:],
                })
        path = out_dir / f"disagreements_{name}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for d in disagreements:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
        print(f"rows where ours or math-verify differ from the label: {len(disagreements)} (listed in {path})")
        for d in disagreements:
            print(f"  {d['id']:>24}  label={d['label']!s:5} ours={d['ours']!s:5} mv={d['math_verify']!s:5} "
                  f"gold={d['gold']!r:.40} ours_extracted={d['ours_extracted']!r:.40} "
                  f"src_pred={d['source_pred']!r:.30}")
    strictness_probes(verifier, mv)
    hostile_latency(verifier)
    return 0


# (completion, reference, correct?) — wrong answers a lenient reward would pay for, plus right ones in odd forms
PROBES = [
    ("so \\boxed{1} or \\boxed{2}", "2", False),                       # hedging over two boxed values
    ("<think>it is \\boxed{5}</think> The answer is \\boxed{6}", "5", False),  # answer changed after thinking
    ("\\boxed{0.333}", "\\frac{1}{3}", False),                            # rounded, not equal
    ("\\boxed{22/7}", "\\pi", False),                                     # approximation
    ("\\boxed{(2, 1)}", "(1, 2)", False),                                 # ordered pair reversed
    ("\\boxed{[1, 2]}", "(1, 2)", False),                                 # closed vs open interval
    ("\\boxed{x \\geq 3}", "x > 3", False),                               # strictness of inequality
    ("\\boxed{2}", "2, -3", False),                                       # one of two roots
    ("\\boxed{10{,}000}", "10000", True),                                 # LaTeX thousands separator
    ("\\boxed{12\\frac{3}{5}}", "12.6", True),                            # mixed number
    ("\\boxed{x = 5}", "5", True),                                        # equation for a value
    ("\\boxed{\\{3, 1\\}}", "\\{1, 3\\}", True),                          # set order
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}", True),                           # radical forms
    ("roots \\boxed{2} and \\boxed{-3}", "-3, 2", True),                  # two-part answer boxed separately
]


def strictness_probes(verifier, mv) -> None:
    print("\n== strictness probes (expected verdict / ours / math-verify)")
    ours_ok = mv_ok = 0
    for completion, reference, correct in PROBES:
        ours = (verifier(completion, reference).score or 0.0) > 0.5
        theirs = None if mv is None else mv({"completion": completion, "gold": reference})
        ours_ok += ours == correct
        mv_ok += theirs == correct
        print(f"  {completion[:48]!r:52} vs {reference!r:16} expected {correct!s:5} ours {ours!s:5} "
              f"math-verify {theirs!s:5}")
    tail = "" if mv is None else f", math-verify {mv_ok}/{len(PROBES)}"
    print(f"  probes right: ours {ours_ok}/{len(PROBES)}{tail}")


def hostile_latency(verifier) -> None:
    """Worst single-call latency of our verifier on the hostile inputs the test suite uses (no pool, no timeout)."""
    from rlvr.verifiers.testing import HOSTILE_ANSWERS, HOSTILE_COMPLETIONS, HOSTILE_MATH

    references = [*HOSTILE_ANSWERS, "x", "(1,2)", "10^{10^{10}}", "x^{10^{10}}", "\\infty"]

    times = []
    for completion in [*HOSTILE_MATH, *HOSTILE_COMPLETIONS]:
        for ref in references:
            t0 = time.perf_counter()
            result = verifier(completion, ref)
            times.append((time.perf_counter() - t0, completion[:40], ref, result.error))
    times.sort(key=lambda t: t[0], reverse=True)
    errors = [t for t in times if t[3]]
    print(f"\n== hostile inputs: {len(times)} calls, errors {len(errors)}, median "
          f"{statistics.median(t[0] for t in times) * 1e3:.2f} ms, worst {times[0][0] * 1e3:.1f} ms "
          f"({times[0][1]!r} vs {times[0][2]!r})")


if __name__ == "__main__":
    sys.exit(main())
