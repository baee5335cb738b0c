"""Our ``math`` verifier and math-verify 0.9.0 side by side, in one run, in one process.

    python scripts/bench_math_verifier.py [--limit N] [--repeats 3] [--out results.json] [--list-disagreements]
                                          [--disagreements-md list.md] [--sets gsm8k,qwen,generated] [--seed 0]
                                          [--no-math-verify]

Sets (data: ``$RLVR_DATA_DIR`` or ``../shared/data`` relative to the project root; see PROVENANCE.md there):
- ``gsm8k``: ``math/gsm8k_model_solutions.jsonl``, 1,319 problems x 4 OpenAI model solutions labelled
  ``is_correct`` (5,276 rows). Ours gets the raw reference (a worked solution ending ``A: <n>``), math-verify
  the ``A:`` value.
- ``qwen``: ``math/qwen25math_cot100_labelled.jsonl``, 100 MATH problems x 8 Qwen2.5-Math answers labelled
  ``score`` (800 rows); both get ``gt``.
- ``generated``: ``rlvr.verifiers.math_forms.generate(seed)``, equivalent and near-miss forms of the MATH-500 /
  AIME24 / AMC23 answers in seven closing styles, labelled by construction; reported per kind and per style.

For each set: agreement with the labels for both verifiers, split into "equivalent judged wrong" (label true,
verdict false) and "wrong judged right"; cases/s for both (median of ``--repeats`` passes, each pass with a fresh
verifier object so caches start cold; only the verifier calls are timed) and the ratio ours / math-verify.
Output: markdown tables on stdout, everything as JSON with ``--out``, and with ``--list-disagreements`` every case
where the two verifiers disagree (tail of the completion, reference, expected, both verdicts, who is right).

How math-verify is called (its README): ``verify(gold, parse(completion))`` with ``gold = parse("$" + ref + "$")``
(a bare LaTeX reference wrapped in ``$...$``; bare ``parse(ref)`` only if that finds nothing), default configs.
Within one pass its parsed gold is cached per distinct reference, as ours caches its extracted reference: this
flatters math-verify's speed, so the ratio is conservative. A math-verify exception counts as "not verified".
math-verify is optional: ``pip install -e '.[bench-math]'`` (or ``pip install math-verify==0.9.0``); without it
this script runs ours alone and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
SET_NAMES = ("gsm8k", "qwen", "generated")
MATH_VERIFY_VERSION = "0.9.0"


def data_dir() -> Path | None:
    env = os.environ.get("RLVR_DATA_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if (path / "math").is_dir() else None


def _spread(rows: list[dict], limit: int | None) -> list[dict]:
    """``limit`` rows evenly spaced over the set (so a quick run still sees every kind), or all."""
    if limit is None or limit >= len(rows):
        return rows
    if limit <= 0:
        return []
    step = len(rows) / limit
    return [rows[int(i * step)] for i in range(limit)]


def load_sets(root: Path, names: tuple[str, ...], limit: int | None, seed: int) -> dict[str, list[dict]]:
    """name -> rows of {id, completion, reference (ours), gold (math-verify), expected, kind, style}."""
    sets: dict[str, list[dict]] = {}
    gsm = root / "math" / "gsm8k_model_solutions.jsonl"
    if "gsm8k" in names and gsm.is_file():
        rows = []
        for i, line in enumerate(gsm.read_text(encoding="utf-8").splitlines()):
            problem = json.loads(line)
            gold = re.findall(r"^A:\s*(.+)$", problem["ground_truth"], re.MULTILINE)[-1].strip()
            for model in ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification"):
                sol = problem[model]
                rows.append({"id": f"{i}/{model}", "completion": sol["solution"], "reference": problem["ground_truth"],
                             "gold": gold, "expected": bool(sol["is_correct"])})
        sets["gsm8k_model_solutions"] = _spread(rows, limit)
    qwen = root / "math" / "qwen25math_cot100_labelled.jsonl"
    if "qwen" in names and qwen.is_file():
        rows = []
        for line in qwen.read_text(encoding="utf-8").splitlines():
            problem = json.loads(line)
            for j, (text, score) in enumerate(zip(problem["code"], problem["score"])):
                rows.append({"id": f"{problem['idx']}/{j}", "completion": text, "reference": problem["gt"],
                             "gold": problem["gt"], "expected": bool(score)})
        sets["qwen25math_cot100_labelled"] = _spread(rows, limit)
    if "generated" in names:
        from rlvr.verifiers.math_forms import DataNotFoundError, generate

        try:
            cases = generate(root, seed=seed)
        except DataNotFoundError as exc:
            print(f"NOTE: generated set skipped: {exc}", file=sys.stderr)
        else:
            rows = [{"id": f"{c.source}/{k}", "completion": c.completion, "reference": c.reference,
                     "gold": c.reference, "expected": c.expected_equivalent, "kind": c.kind,
                     "style": c.closing_style, "answer": c.answer} for k, c in enumerate(cases)]
            sets["generated_forms"] = _spread(rows, limit)
    return sets


# ------------------------------------------------------------------------------------------------ judges

Judge = Callable[[dict], bool]


def ours_factory() -> Callable[[], Judge]:
    from rlvr.verifiers import load

    def make() -> Judge:
        verifier = load("math")
        return lambda row: (verifier(row["completion"], row["reference"]).score or 0.0) > 0.5

    return make


def math_verify_factory() -> tuple[Callable[[], Judge] | None, str]:
    try:
        import math_verify
        from math_verify import parse, verify
    except ImportError as exc:
        return None, (f"math-verify not importable ({exc}); pip install math-verify=={MATH_VERIFY_VERSION} "
                      "(or the project's [bench-math] extra) for the side-by-side comparison")
    version = getattr(math_verify, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version("math-verify")
        except Exception:  # noqa: BLE001 - only informative
            version = "?"

    def make() -> Judge:
        golds: dict[str, object] = {}

        def judge(row: dict) -> bool:
            try:
                gold = golds.get(row["gold"])
                if gold is None:
                    gold = parse(f"${row['gold']}$") or parse(row["gold"])
                    golds[row["gold"]] = gold
                return bool(verify(gold, parse(row["completion"])))
            except Exception:  # noqa: BLE001 - math-verify raising counts as "not verified"
                return False

        return judge

    return make, f"math-verify {version}"


def run_passes(make: Callable[[], Judge], rows: list[dict], repeats: int, progress, label: str
               ) -> tuple[list[bool], float, bool]:
    """Verdicts of the first pass, median cases/s over ``repeats`` passes, and whether all passes agreed."""
    rates, first, stable = [], None, True
    task = progress.add_task(label, total=len(rows) * repeats) if progress is not None else None
    for _ in range(repeats):
        judge = make()
        verdicts: list[bool] = []
        elapsed = 0.0
        for start in range(0, len(rows), 50):
            chunk = rows[start: start + 50]
            t0 = time.perf_counter()
            verdicts.extend(judge(r) for r in chunk)
            elapsed += time.perf_counter() - t0
            if task is not None:
                progress.advance(task, len(chunk))
        rates.append(len(rows) / elapsed if elapsed > 0 else float("inf"))
        if first is None:
            first = verdicts
        elif verdicts != first:
            stable = False
    if task is not None:
        progress.remove_task(task)
    return first or [], statistics.median(rates) if rates else 0.0, stable


# ------------------------------------------------------------------------------------------------ scoring


def tally(rows: list[dict], verdicts: list[bool]) -> dict:
    n = len(rows)
    agree = sum(v == r["expected"] for r, v in zip(rows, verdicts))
    fn = sum(r["expected"] and not v for r, v in zip(rows, verdicts))
    fp = sum(v and not r["expected"] for r, v in zip(rows, verdicts))
    return {"n": n, "agree": agree, "rate": agree / n if n else 0.0, "equivalent_judged_wrong": fn,
            "wrong_judged_right": fp, "n_equivalent": sum(r["expected"] for r in rows)}


def grouped(rows: list[dict], verdicts: dict[str, list[bool]], key: str) -> dict[str, dict]:
    idx: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        idx[r[key]].append(i)
    out = {}
    for name in sorted(idx):
        sub = [rows[i] for i in idx[name]]
        out[name] = {who: tally(sub, [v[i] for i in idx[name]]) for who, v in verdicts.items()}
    return out


def _pct(t: dict) -> str:
    return f"{t['agree']}/{t['n']} ({100 * t['rate']:.1f}%)"


def md_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def group_table(title: str, groups: dict[str, dict], have_mv: bool) -> str:
    header = [title, "n", "ours", "ours eq->wrong", "ours wrong->right"]
    if have_mv:
        header += ["math-verify", "mv eq->wrong", "mv wrong->right", "ours - mv"]
    body = []
    for name, g in groups.items():
        o = g["ours"]
        row = [name, str(o["n"]), _pct(o), str(o["equivalent_judged_wrong"]), str(o["wrong_judged_right"])]
        if have_mv:
            m = g["math_verify"]
            row += [_pct(m), str(m["equivalent_judged_wrong"]), str(m["wrong_judged_right"]),
                    f"{o['agree'] - m['agree']:+d}"]
        body.append(row)
    return md_table(header, body)


def disagreements(rows: list[dict], ours: list[bool], mv: list[bool]) -> list[dict]:
    out = []
    for r, o, m in zip(rows, ours, mv):
        if o != m:
            out.append({"id": r["id"], "kind": r.get("kind"), "style": r.get("style"), "expected": r["expected"],
                        "ours": o, "math_verify": m, "right": "ours" if o == r["expected"] else "math-verify",
                        "reference": r["gold"], "answer": r.get("answer"), "completion_tail": r["completion"][-240:]})
    return out


def disagreements_markdown(result: dict) -> str:
    """Every disagreement of every set as markdown tables, grouped by set and kind (for a doc to link)."""
    lines = ["# Every disagreement between ours and math-verify", "",
             f"Written by `scripts/bench_math_verifier.py --disagreements-md` (seed {result.get('seed')}). "
             "`right` is the side that matches the label; the reasons per kind are in math_verifier.md.", ""]
    for name, entry in result["sets"].items():
        dis = entry.get("disagreements", [])
        lines += [f"## {name}: {len(dis)}", ""]
        by_kind: dict[str, list[dict]] = defaultdict(list)
        for d in dis:
            by_kind[d["kind"] or "-"].append(d)
        for kind in sorted(by_kind, key=lambda k: (-len(by_kind[k]), k)):
            lines += [f"### {kind} ({len(by_kind[kind])})", "",
                      "| id | style | expected | ours | math-verify | right | reference | answer as written |",
                      "|---|---|---|---|---|---|---|---|"]
            for d in by_kind[kind]:
                cells = [d["id"], d["style"] or "", str(d["expected"]), str(d["ours"]), str(d["math_verify"]),
                         d["right"], f"`{d['reference']}`", f"`{d.get('answer') or ''}`"]
                lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
            lines.append("")
    return "\n".join(lines)


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, tuple[str, ...]]:
    """The command line and the names of the sets it asks for (an unknown set or ``--repeats`` < 1 exits here)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="rows per set, evenly spaced (default: all)")
    ap.add_argument("--repeats", type=int, default=3, help="timing passes per verifier and set; median reported")
    ap.add_argument("--out", default=None, help="write all figures and disagreements to this JSON file")
    ap.add_argument("--list-disagreements", action="store_true",
                    help="print every case where ours and math-verify disagree")
    ap.add_argument("--disagreements-md", default=None,
                    help="write every disagreement, grouped by set and kind, to this markdown file")
    ap.add_argument("--sets", default=",".join(SET_NAMES), help=f"comma list of {', '.join(SET_NAMES)}")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated set")
    ap.add_argument("--no-math-verify", action="store_true", help="run ours alone")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars (stderr)")
    args = ap.parse_args(argv)
    names = tuple(s.strip() for s in args.sets.split(",") if s.strip())
    bad = [n for n in names if n not in SET_NAMES]
    if bad:
        ap.error(f"unknown set(s) {bad}; valid: {', '.join(SET_NAMES)}")
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    return args, names


def bench_set(name: str, rows: list[dict], repeats: int, ours_make: Callable[[], Judge],
              mv_make: Callable[[], Judge] | None, progress) -> tuple[dict, list[str]]:
    """One set through ours (and math-verify when ``mv_make`` is given): its result entry and its summary row."""
    ours_v, ours_rate, ours_stable = run_passes(ours_make, rows, repeats, progress, f"{name}: ours")
    verdicts = {"ours": ours_v}
    entry: dict = {"n": len(rows), "ours": {**tally(rows, ours_v), "cases_per_s": ours_rate,
                                           "stable_across_passes": ours_stable}}
    if mv_make is not None:
        mv_v, mv_rate, mv_stable = run_passes(mv_make, rows, repeats, progress, f"{name}: math-verify")
        verdicts["math_verify"] = mv_v
        entry["math_verify"] = {**tally(rows, mv_v), "cases_per_s": mv_rate,
                                "stable_across_passes": mv_stable}
        entry["speed_ratio"] = ours_rate / mv_rate if mv_rate else None
        entry["disagreements"] = disagreements(rows, ours_v, mv_v)
    if "kind" in rows[0]:
        entry["by_kind"] = grouped(rows, verdicts, "kind")
        entry["by_style"] = grouped(rows, verdicts, "style")
        entry["by_label"] = grouped([{**r, "label": "equivalent" if r["expected"] else "near miss"}
                                     for r in rows], verdicts, "label")
    o = entry["ours"]
    row = [name, str(len(rows)), _pct(o), str(o["equivalent_judged_wrong"]), str(o["wrong_judged_right"]),
           f"{ours_rate:,.0f}"]
    if mv_make is not None:
        m = entry["math_verify"]
        row += [_pct(m), str(m["equivalent_judged_wrong"]), str(m["wrong_judged_right"]),
                f"{mv_rate:,.0f}", f"{entry['speed_ratio']:.1f}x", str(len(entry["disagreements"]))]
    return entry, row


def print_report(result: dict, summary_rows: list[list[str]], have_mv: bool, mv_name: str) -> None:
    """The summary table and, per generated set, the tables by kind, closing style and label (markdown, stdout);
    records ``kinds_where_ours_loses`` in ``result`` when math-verify ran."""
    header = ["set", "n", "ours agree", "ours eq->wrong", "ours wrong->right", "ours cases/s"]
    if have_mv:
        header += ["math-verify agree", "mv eq->wrong", "mv wrong->right", "mv cases/s", "speed ratio",
                   "disagreements"]
    else:
        print(f"NOTE: side-by-side skipped: {mv_name}\n")
    print("## agreement with the labels and speed\n")
    print(md_table(header, summary_rows))
    for name, entry in result["sets"].items():
        if "by_kind" not in entry:
            continue
        print(f"\n## {name}: by kind (near misses start with near_)\n")
        print(group_table("kind", entry["by_kind"], have_mv))
        print(f"\n## {name}: by closing style\n")
        print(group_table("closing style", entry["by_style"], have_mv))
        print(f"\n## {name}: equivalent vs near miss\n")
        print(group_table("label", entry["by_label"], have_mv))
        if have_mv:
            lost = [k for k, g in entry["by_kind"].items() if g["ours"]["agree"] < g["math_verify"]["agree"]]
            entry["kinds_where_ours_loses"] = lost
            print(f"\nkinds where ours is below math-verify: {', '.join(lost) if lost else 'none'}")


def print_disagreements(result: dict) -> None:
    for name, entry in result["sets"].items():
        dis = entry.get("disagreements", [])
        print(f"\n## {name}: {len(dis)} disagreements between ours and math-verify\n")
        for d in dis:
            tail = d["completion_tail"][-160:].replace("\n", "\\n")
            what = f" kind={d['kind']} style={d['style']}" if d["kind"] else ""
            print(f"- {d['id']}{what}: expected {d['expected']}, ours {d['ours']}, math-verify "
                  f"{d['math_verify']} -> {d['right']} right; reference {d['reference']!r}; "
                  f"tail {tail!r}")


def main(argv: list[str] | None = None) -> int:
    args, names = parse_args(argv)
    root = data_dir()
    if root is None:
        print("SKIP: benchmark data not found (set RLVR_DATA_DIR or place it at ../shared/data beside the project)")
        return 0
    sets = load_sets(root, names, args.limit, args.seed)
    if not sets:
        print(f"SKIP: none of the sets {names} found under {root}/math")
        return 0
    ours_make = ours_factory()
    mv_make, mv_name = (None, "disabled by --no-math-verify") if args.no_math_verify else math_verify_factory()
    have_mv = mv_make is not None
    print(f"# math verifier benchmark\n\nours: rlvr.verifiers.math (defaults); "
          f"{'compared with ' + mv_name if have_mv else 'math-verify: ' + mv_name}; repeats {args.repeats}; "
          f"single process; limit {args.limit or 'none'}; seed {args.seed}\n")

    result: dict = {"command": " ".join(["python", "scripts/bench_math_verifier.py", *(argv or sys.argv[1:])]),
                    "math_verify": mv_name if have_mv else None, "repeats": args.repeats, "limit": args.limit,
                    "seed": args.seed, "sets": {}}
    summary_rows = []
    progress = _progress(not args.no_progress)
    if progress is not None:
        progress.start()
    try:
        for name, rows in sets.items():
            if not rows:
                continue
            result["sets"][name], row = bench_set(name, rows, args.repeats, ours_make, mv_make, progress)
            summary_rows.append(row)
    finally:
        if progress is not None:
            progress.stop()

    print_report(result, summary_rows, have_mv, mv_name)
    if have_mv and args.list_disagreements:
        print_disagreements(result)
    if have_mv and args.disagreements_md:
        md = Path(args.disagreements_md)
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(disagreements_markdown(result), encoding="utf-8")
        print(f"\nwrote {md}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
        print(f"\nwrote {out}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
