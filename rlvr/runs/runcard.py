"""Render a run's ``provenance.json`` as ``RUNCARD.md``, and ``rlvr card RUN``: print it.

    rlvr card runs/demo                 # RUNCARD.md of the run (or rendered from provenance.json)
    rlvr card runs/grpo/final           # the card that travels with the weights
    rlvr card runs/demo --json          # the machine-readable record
    rlvr card runs/demo --render        # re-render from provenance.json (e.g. after a renderer update)

RUN may be a run directory, a model folder (``final/``), an eval folder, or a provenance.json file. The card has
one section per recorded item (see rlvr.runs.provenance) and, first, the lineage: every stage from the oldest ancestor
to this one, each with its output folder and model hash.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

# The file names live here, with the reader and renderer, so that rlvr.runs.provenance (the writer) imports this
# module and not the other way round.
PROVENANCE_FILE = "provenance.json"
CARD_FILE = "RUNCARD.md"

USAGE = "usage: rlvr card RUN [--json | --render]   (RUN: run dir, final/ model folder, or provenance.json)"


class NoProvenance(FileNotFoundError):
    pass


def find_provenance(run: str | Path) -> Path:
    """The provenance.json of RUN: the file itself, or in RUN, RUN/final or RUN/eval."""
    path = Path(run).expanduser()
    if path.is_file() and path.name.endswith(".json"):
        return path
    for candidate in (path, path / "final", path / "eval"):
        if (candidate / PROVENANCE_FILE).is_file():
            return candidate / PROVENANCE_FILE
    if not path.exists():
        raise NoProvenance(f"{run}: no such file or folder")
    below = sorted(str(p.parent) for p in path.glob(f"*/{PROVENANCE_FILE}"))
    hint = f"; stages inside it that have one: {', '.join(below)}" if below else (
        "; it was made before run cards existed, or its stage has not finished (the card is written at the end)")
    raise NoProvenance(f"{run} has no {PROVENANCE_FILE} (looked in ., final/, eval/){hint}")


def chain(prov: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Oldest ancestor first, ``prov`` last."""
    out, node = [], prov
    while node:
        out.append(node)
        node = node.get("parent")
    return out[::-1]


# ------------------------------------------------------------------------------------------------ markdown
def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, default=str)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> list[str]:
    if not rows:
        return ["(none)"]
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows)]


def _kv(d: Mapping[str, Any] | None) -> list[str]:
    return _table([{"key": k, "value": v} for k, v in (d or {}).items()])


def _short(sha: str | None) -> str:
    return sha[:16] if sha else "–"


def _eval_summary(rows: Sequence[Mapping[str, Any]] | None) -> str:
    if not rows:
        return "–"
    metric = next((m for m in ("pass@1", "accuracy") if m in rows[0]), None)
    if metric is None:
        return f"{len(rows)} rows"
    parts = [f"{r.get('split', '?')}" + (f"@{r['budget']}" if "budget" in r else "") + f" {_cell(r.get(metric))}"
             for r in rows[:8]]
    return f"{metric}: " + ", ".join(parts) + (" …" if len(rows) > 8 else "")


def render_card(prov: Mapping[str, Any]) -> str:
    base = prov["model"]["base"]
    final = prov["model"].get("final") or {}
    code = prov.get("rlvr") or {}
    commit = code.get("git_commit")
    lines = [f"# Run card — {prov['stage']}", "",
             f"Output: `{prov['output_dir']}`  ", f"Finished: {prov.get('finished_at')}  ",
             f"Wall time: {_cell(prov.get('wall_seconds'))} s", ""]
    if prov.get("notes"):
        lines += [prov["notes"], ""]

    lines += ["## Lineage", "", "Oldest stage first; each stage started from the previous one's model.", ""]
    rows = []
    for i, node in enumerate(chain(prov), 1):
        m = node.get("model") or {}
        rows.append({"#": i, "stage": node.get("stage"), "output": node.get("output_dir"),
                     "base model": (m.get("base") or {}).get("id"),
                     "base sha256": _short((m.get("base") or {}).get("sha256")),
                     "final sha256": _short((m.get("final") or {}).get("sha256")),
                     "eval": _eval_summary(node.get("eval_table"))})
    lines += _table(rows) + [""]

    lines += ["## Code", "", *_kv({"rlvr version": code.get("version"),
                                   "git commit": commit or "not a git checkout",
                                   "git dirty": code.get("git_dirty"), "changed files": code.get("git_changed_files"),
                                   "source sha256": code.get("code_sha256")}), ""]
    lines += ["## Models", "", *_table([
        {"role": "base", "id / path": base.get("id"), "resolved": base.get("resolved"),
         "sha256": base.get("sha256"), "method": base.get("method"), "bytes": base.get("bytes"),
         "tokenizer sha256": _short(base.get("tokenizer_sha256"))},
        {"role": "final", "id / path": final.get("path"), "resolved": final.get("path"), "sha256": final.get("sha256"),
         "method": final.get("method"), "bytes": final.get("bytes"),
         "tokenizer sha256": _short(final.get("tokenizer_sha256"))}]), ""]
    lines += ["## Final evaluation", "", *_table(prov.get("eval_table") or []), ""]
    lines += ["## Datasets", "", "sha256 is over the canonical JSON of every row used, in order.", "",
              *_table(prov.get("datasets") or [], ["role", "source", "split", "count", "sha256"]), ""]
    lines += ["## Verifiers and reward weights", "", *_table(prov.get("verifiers") or [],
              ["key", "name", "weight", "distribution", "version", "target", "source_sha256", "config"]), ""]
    algo = prov.get("algorithm") or {}
    lines += ["## Algorithm", "", f"Preset: **{algo.get('preset')}**", "", *_kv(algo.get("knobs")), ""]
    if algo.get("loop"):
        lines += ["Loop:", "", *_kv(algo["loop"]), ""]
    lines += ["## Thinking budgets and generation limits", "", *_kv(prov.get("thinking_budgets")), ""]
    lines += ["## Seeds", "", *_kv(prov.get("seeds")), ""]
    contamination = prov.get("contamination")
    lines += ["## Contamination check", ""]
    if contamination:
        lines += [f"Word {contamination.get('n')}-gram overlap of the training prompts with each eval set.", "",
                  *_table(contamination.get("eval_sets") or [], ["name", "count", "ngram_hits", "ngram_hit_frac",
                                                                 "exact_matches", "short_items"]), ""]
    else:
        lines += ["Not run for this stage (`rlvr check-contamination`; the pipeline runs it before GRPO).", ""]
    lines += ["## Reward-hacking monitors", ""]
    lines += (_kv(prov["monitors"]) if prov.get("monitors") else ["Not recorded for this stage (GRPO only)."]) + [""]
    lines += ["## Hardware and software", "", *_kv(prov.get("hardware")), "", *_kv(prov.get("software")), ""]
    lines += ["## Known limitations", ""]
    lines += [f"- {x}" for x in prov.get("limitations") or []] or [
        "None written (add them with `run_card.limitations=['...']`)."]
    import yaml  # omegaconf's dependency

    lines += ["", "## Full resolved config", "", "```yaml",
              yaml.safe_dump(prov.get("config"), sort_keys=False, default_flow_style=None, width=110).rstrip(), "```", ""]
    if prov.get("parent_path"):
        lines += [f"Parent card: `{prov['parent_path']}`", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ command
def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE + "\n\n" + __doc__)
        return 0 if argv else 2
    flags = {a for a in argv if a.startswith("--")}
    paths = [a for a in argv if not a.startswith("--")]
    if len(paths) != 1 or flags - {"--json", "--render"}:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        path = find_provenance(paths[0])
    except NoProvenance as err:
        print(f"rlvr card: {err}", file=sys.stderr)
        return 2
    if "--json" in flags:
        print(path.read_text())
    elif (path.parent / CARD_FILE).is_file() and "--render" not in flags:
        print((path.parent / CARD_FILE).read_text())
    else:
        print(render_card(json.loads(path.read_text())))
    return 0
