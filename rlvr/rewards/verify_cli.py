"""``rlvr verify``: score a jsonl of completions against reference answers with any verifier(s).

    rlvr verify rows.jsonl --verifier math
    rlvr verify rows.jsonl --verifier '{"name": "math", "rules": ["boxed"]}' --verifier format \\
        --completion-field response --answer-field gt --label-field correct --output scored.jsonl

Prints accuracy (mean reward over rows where a weighted verifier applied), error rate per verifier, agreement
with a label field when given, and writes one result row per input row. Bad input (missing file, invalid JSON,
missing field, unknown verifier) is one clear line on stderr and exit code 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

_MISSING = object()


def _get(row: Any, path: str) -> Any:
    """``a.b.0.c`` into nested dicts/lists."""
    cur = row
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlvr verify", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="jsonl file, one object per line")
    p.add_argument("--verifier", "-v", action="append", dest="verifiers", metavar="SPEC",
                   help='a verifier name, or a JSON spec like \'{"name": "math", "weight": 1, ...config}\' '
                        "(repeatable; default: math)")
    p.add_argument("--completion-field", default="completion", help="field holding the model text (dotted path ok)")
    p.add_argument("--answer-field", default="answer", help="field holding the reference answer (dotted path ok)")
    p.add_argument("--label-field", default=None, help="optional boolean field to measure agreement against")
    p.add_argument("--output", "-o", default=None, help="write per-row results here (jsonl)")
    p.add_argument("--workers", type=int, default=2, help="verifier processes (0 = in-process, no timeouts)")
    p.add_argument("--timeout", type=float, default=10.0, help="hard per-call timeout in seconds")
    p.add_argument("--limit", type=int, default=None, help="score only the first N rows")
    return p


class _BadInput(Exception):
    pass


def _load_rows(args) -> tuple[list[str], list[Any], list[Any]]:
    path = Path(args.input)
    if not path.is_file():
        raise _BadInput(f"input file not found: {path}")
    completions, answers, labels = [], [], []
    with path.open(encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if args.limit is not None and len(completions) >= args.limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _BadInput(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            completion, answer = _get(row, args.completion_field), _get(row, args.answer_field)
            for name, value in ((args.completion_field, completion), (args.answer_field, answer)):
                if value is _MISSING:
                    keys = ", ".join(row) if isinstance(row, dict) else type(row).__name__
                    raise _BadInput(f"{path}:{lineno}: no field {name!r} (row has: {keys}); "
                                    "choose with --completion-field / --answer-field")
            if not isinstance(completion, str):
                raise _BadInput(f"{path}:{lineno}: {args.completion_field!r} is {type(completion).__name__}, not text")
            label = _get(row, args.label_field) if args.label_field else None
            if args.label_field and label is _MISSING:
                raise _BadInput(f"{path}:{lineno}: no label field {args.label_field!r}")
            completions.append(completion)
            answers.append(answer)
            labels.append(label)
    if not completions:
        raise _BadInput(f"{path}: no rows")
    return completions, answers, labels


def _specs(raw: list[str] | None) -> list[Any]:
    specs: list[Any] = []
    for s in raw or ["math"]:
        if s.lstrip().startswith("{"):
            try:
                specs.append(json.loads(s))
            except json.JSONDecodeError as exc:
                raise _BadInput(f"--verifier {s!r}: invalid JSON ({exc.msg})") from None
        else:
            specs.append(s)
    return specs


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from rlvr.rewards.runtime import RewardRuntime, RewardsConfig, parse_spec
    from rlvr.verifiers.registry import VerifierError, load

    try:
        specs = _specs(args.verifiers)
        parsed = [parse_spec(s) for s in specs]
        for s in parsed:  # construct each once here so a bad name or option is exit code 2, not N row errors
            load(s.name, **s.config)
        completions, answers, labels = _load_rows(args)
        if args.workers < 0 or args.timeout <= 0:
            raise _BadInput("--workers must be >= 0 and --timeout > 0")
        config = RewardsConfig(num_workers=args.workers, timeout_s=args.timeout, abort_error_rate=1.0)
        with RewardRuntime(config) as runtime:
            scores = runtime.score(completions, answers, specs)
    except (_BadInput, VerifierError, ValueError) as exc:
        print(f"rlvr verify: {exc}", file=sys.stderr)
        return 2

    valid = [r for r in scores.rewards if r is not None]
    n = len(completions)
    print(f"rows: {n}")
    print(f"accuracy: {sum(valid) / len(valid):.4f} over {len(valid)} rows with a reward" if valid
          else "accuracy: n/a (no verifier applied)")
    for s in parsed:
        err = scores.metrics[f"verifier/{s.key}/error_rate"]
        mean = scores.metrics[f"verifier/{s.key}/mean"]
        mean_txt = "n/a" if math.isnan(mean) else f"{mean:.4f}"
        print(f"verifier {s.key}: mean {mean_txt}, error rate {err:.4f}"
              + (f" (e.g. {scores.last_errors[s.key]})" if s.key in scores.last_errors else ""))
    if args.label_field:
        pairs = [(r, bool(lab)) for r, lab in zip(scores.rewards, labels) if r is not None]
        agree = sum((r > 0.5) == lab for r, lab in pairs)
        print(f"agreement with {args.label_field!r}: {agree}/{len(pairs)} = {agree / max(len(pairs), 1):.4f}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            for i in range(n):
                row = {"index": i, "reward": scores.rewards[i], "results": {
                    k: {"score": r.score, "extracted": r.extracted, "error": r.error, "metrics": r.metrics}
                    for k, r in scores.results[i].items()}}
                if args.label_field:
                    row["label"] = labels[i]
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"wrote {args.output}")
    return 0


def main(argv: list[str]) -> int:
    try:
        return _run(list(argv))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
