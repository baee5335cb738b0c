"""Contamination check: word n-gram overlap between a task's training prompts and each eval set.

    rlvr check-contamination task=gsm8k contamination.eval_sets=[gsm8k:test,math500:test] output_dir=runs/cc
    rlvr check-contamination task=arith contamination.n=6 contamination.eval_sets=[arith:test,gsm8k:test]
    rlvr check-contamination task=generic task.path=my_train.jsonl contamination.eval_sets=[my_eval.jsonl]

Texts are normalised (Unicode NFKC, lowercase, punctuation -> space, whitespace collapsed) and split into words.
An eval item is *hit* when any of its word n-grams occurs in any training prompt (the GPT-3 / Llama-2 style
check, default n=13), and an *exact match* when its whole normalised prompt equals a training prompt. Items
shorter than n words cannot be hit at that n: they are counted as ``short_items`` so that "0 hits" is never
mistaken for evidence on short prompts (arith prompts have ~8 words; use n=6..8, and read ``exact_matches``).
N-grams present in more than ``boilerplate_frac`` of the training prompts (and in at least 10 of them) are a
prompt template, not leaked data, and are ignored (their count is reported).

Prompt text = the sample's user messages (a system prompt is the same everywhere and says nothing). The report,
per eval set: items, hits, hit fraction, exact matches, short items and a few example hits with the matching
n-gram, goes to ``<output_dir>/contamination.json`` (which the run card picks up) and the console.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from rlvr.config.loading import Problem, default_output_dir, run_command

REPORT_FILE = "contamination.json"
_PUNCT = re.compile(r"[^\w\s]+|_")
_TEXT_COLUMNS = ("prompt", "question", "problem", "text")


def normalize(text: str) -> list[str]:
    """Words of ``text``: NFKC, lowercase, punctuation to spaces, split on whitespace."""
    return _PUNCT.sub(" ", unicodedata.normalize("NFKC", text).lower()).split()


def ngram_hashes(words: Sequence[str], n: int) -> set[int]:
    # hashes, not strings: memory stays ~50 bytes per distinct n-gram (process-local hashing is fine: one process)
    return {hash(tuple(words[i:i + n])) for i in range(len(words) - n + 1)}


def sample_text(sample: Any) -> str:
    """The user turns of a Sample's prompt (or the text itself)."""
    if isinstance(sample, str):
        return sample
    messages = sample.prompt if hasattr(sample, "prompt") else sample
    if isinstance(messages, str):
        return messages
    return "\n".join(m["content"] for m in messages if m.get("role", "user") == "user")


def check_contamination(train_texts: Iterable[str], eval_sets: Mapping[str, Sequence[tuple[str, str]]], n: int = 13,
                        boilerplate_frac: float = 0.05, max_examples: int = 5) -> dict[str, Any]:
    """``eval_sets``: name -> [(item id, prompt text)]. Returns the report (see the module docstring)."""
    df: Counter[int] = Counter()
    exact: set[str] = set()
    num_train = 0
    for text in train_texts:
        words = normalize(text)
        exact.add(" ".join(words))
        df.update(ngram_hashes(words, n))
        num_train += 1
    cutoff = max(10, boilerplate_frac * num_train)
    boiler = {h for h, c in df.items() if c > cutoff}
    train_grams = set(df) - boiler
    report: dict[str, Any] = {"n": n, "train": {"count": num_train, "distinct_ngrams": len(train_grams),
                                                "ignored_boilerplate_ngrams": len(boiler)}, "eval_sets": []}
    for name, items in eval_sets.items():
        hits = exact_hits = short = 0
        examples = []
        for item_id, text in items:
            words = normalize(text)
            short += len(words) < n
            is_exact = " ".join(words) in exact
            exact_hits += is_exact
            match = next((words[i:i + n] for i in range(len(words) - n + 1)
                          if hash(tuple(words[i:i + n])) in train_grams), None)
            hits += match is not None
            if (match is not None or is_exact) and len(examples) < max_examples:
                examples.append({"id": item_id, "text": text[:300], "ngram": " ".join(match) if match else None,
                                 "exact": is_exact})
        count = len(items)
        report["eval_sets"].append({
            "name": name, "count": count, "ngram_hits": hits, "ngram_hit_frac": hits / count if count else 0.0,
            "exact_matches": exact_hits, "exact_frac": exact_hits / count if count else 0.0, "short_items": short,
            "examples": examples})
    return report


# ------------------------------------------------------------------------------------------------ data
def _eval_task_cfg(task_cfg: Any, name: str) -> Any:
    """The run's task config with another task's name and no data overrides (arith knobs are kept, so the
    arith held-out splits are the ones this config would hold out)."""
    cfg = OmegaConf.create(OmegaConf.to_container(task_cfg, resolve=True)) if isinstance(task_cfg, DictConfig) \
        else OmegaConf.structured(task_cfg)
    cfg.name, cfg.path, cfg.hub_id, cfg.hub_config, cfg.verifiers = name, None, None, None, []
    return cfg


def _is_file_spec(spec: str) -> bool:
    return Path(spec).suffix.lower() in (".jsonl", ".json", ".parquet", ".csv") or Path(spec).expanduser().exists()


def load_eval_sets(specs: Sequence[str], task_cfg: Any, data_dir: str | None, text_column: str | None = None,
                   limit: int | None = None) -> tuple[dict[str, list[tuple[str, str]]], dict[str, str]]:
    """(name -> [(id, text)], name -> error) for 'task:split', 'task' (its non-train splits) or a data file."""
    from rlvr.tasks import build_task
    from rlvr.tasks.loading import load_rows

    sets: dict[str, list[tuple[str, str]]] = {}
    errors: dict[str, str] = {}
    for spec in specs:
        try:
            if _is_file_spec(spec):
                rows = load_rows(str(Path(spec).expanduser()), limit=limit)
                column = text_column or next((c for c in _TEXT_COLUMNS if rows and c in rows[0]), None)
                if column is None:
                    raise ValueError(f"no text column among {list(rows[0]) if rows else []}; set "
                                     "contamination.text_column")
                sets[spec] = [(str(r.get("id", i)), sample_text(r[column])) for i, r in enumerate(rows)]
                continue
            name, _, split = spec.partition(":")
            task = build_task(_eval_task_cfg(task_cfg, name), data_dir=data_dir)
            for s in [split] if split else [x for x in task.splits if x != "train"]:
                sets[f"{name}:{s}"] = [(x.id, sample_text(x)) for x in task.samples(s, limit=limit)]
        except Exception as exc:  # noqa: BLE001 - one unreadable eval set must not hide the others' results
            errors[spec] = f"{type(exc).__name__}: {exc}"
    return sets, errors


def check_task(task_cfg: Any, data_dir: str | None, c: Any, output_dir: str | Path | None = None) -> dict[str, Any]:
    """The library entry point (the pipeline calls this before GRPO): train prompts of ``task_cfg``'s
    ``c.train_split`` vs ``c.eval_sets``; written to ``<output_dir>/contamination.json`` when given."""
    from rlvr.runs.provenance import dataset_fingerprint, task_source
    from rlvr.tasks import build_task

    task = build_task(task_cfg, data_dir=data_dir)
    train = task.samples(c.train_split, limit=c.max_train_prompts)
    sets, errors = load_eval_sets(list(c.eval_sets), task_cfg, data_dir, c.text_column, c.max_eval_items)
    report = check_contamination((sample_text(s) for s in train), sets, n=c.n, boilerplate_frac=c.boilerplate_frac,
                                 max_examples=c.max_examples)
    report["train"] |= dataset_fingerprint(train, source=task_source(task, c.train_split), split=c.train_split,
                                           role="train")
    report["eval_sets"] += [{"name": k, "error": v} for k, v in errors.items()]
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / REPORT_FILE).write_text(json.dumps(report, indent=1))
    return report


# ------------------------------------------------------------------------------------------------ command
def validate(cfg: DictConfig) -> list[Problem]:
    c = cfg.contamination
    problems = []
    if c.n < 1:
        problems.append(Problem("contamination.n", f"must be >= 1, got {c.n}", "13 for long prompts, 6-8 for short"))
    if not c.eval_sets:
        problems.append(Problem("contamination.eval_sets", "no eval set given", "e.g. contamination.eval_sets=[gsm8k:test]"))
    if not 0 < c.boilerplate_frac <= 1:
        problems.append(Problem("contamination.boilerplate_frac", f"must be in (0, 1], got {c.boilerplate_frac}",
                                "e.g. 0.05; 1.0 keeps every n-gram"))
    return problems


def print_report(report: Mapping[str, Any], console: Any) -> None:
    from rich.table import Table

    train = report["train"]
    table = Table(title=f"{report['n']}-gram overlap with {train['count']} training prompts ({train.get('source')})")
    for col in ("eval set", "items", "n-gram hits", "hit %", "exact matches", f"< {report['n']} words"):
        table.add_column(col, justify="right")
    for s in report["eval_sets"]:
        if "error" in s:
            table.add_row(s["name"], "[red]error[/red]", s["error"][:60], "", "", "")
            continue
        table.add_row(s["name"], str(s["count"]), str(s["ngram_hits"]), f"{100 * s['ngram_hit_frac']:.2f}%",
                      str(s["exact_matches"]), str(s["short_items"]))
    console.print(table)
    for s in report["eval_sets"]:
        for ex in s.get("examples", [])[:2]:
            console.print(f"  {s['name']} {ex['id']}: [yellow]{ex['ngram'] or '(exact match)'}[/yellow]")
    if any(s.get("short_items") for s in report["eval_sets"]):
        console.print(f"[dim]items shorter than n={report['n']} words cannot be n-gram hits; lower "
                      "contamination.n for short prompts (exact matches are counted at any n)[/dim]")


def run(cfg: DictConfig) -> int:
    from rich.console import Console

    console = Console()
    default_output_dir(cfg, "check-contamination")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    report = check_task(cfg.task, cfg.data_dir, cfg.contamination, out)
    print_report(report, console)
    console.print(f"report: {out / REPORT_FILE}")
    return 1 if any("error" in s for s in report["eval_sets"]) else 0


def main(argv: list[str]) -> int:
    return run_command("check-contamination", argv, validate, run)
