"""``rlvr diff-runs A B``: what differs between two runs' recipes — "what post-training version is this?".

    rlvr diff-runs runs/pipeline_a runs/pipeline_b
    rlvr diff-runs runs/a/final runs/b/final --json      # grouped differences as JSON

Both runs' provenance.json files (rlvr.runs.provenance; found as for ``rlvr card``) are flattened into dotted keys,
including every ancestor stage under ``parent.``, and the differing keys are printed in groups:

- recipe      the resolved config (``config.*``), i.e. what a user chose;
- data        dataset fingerprints (source, split, count, sha256 of the rows);
- verifiers   verifier implementations: distribution, version, source hash, config, weight;
- models      the base model each stage started from (id, weights hash, tokenizer hash);
- environment rlvr version / git commit / source hash, packages, hardware;
- outputs     what follows from the above: final model hash, eval tables, contamination, monitors;
- timing      wall time (always differs; shown on one line);
- locations   output folders, logger settings and run-card notes (do not change the result).

Paths are compared relative to each run's own folders (``<run>/...``), so two pipelines that differ in one
override show exactly that override under "recipe", plus the outputs that follow from it. Views derived from the
config (algorithm, thinking budgets, seeds, reward weights) are not repeated. Exit code 0 whether or not the runs
differ; 2 with a clear message when a run has no provenance.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Mapping

GROUPS = {
    "recipe": "recipe (config)",
    "data": "data fingerprints",
    "verifiers": "verifiers",
    "models": "input model hashes",
    "environment": "code and environment",
    "outputs": "outputs",
    "timing": "timing",
    "locations": "locations, logging, notes (do not change the result)",
}
_DERIVED = {"schema", "finished_at", "algorithm", "thinking_budgets", "seeds", "reward_weights"}
_EVAL_ID_COLUMNS = ("tag", "checkpoint", "task", "split", "budget")
USAGE = "usage: rlvr diff-runs RUN_A RUN_B [--json]"


def _scalar(value: Any) -> Any:
    return json.dumps(value, sort_keys=True, default=str) if isinstance(value, (list, dict)) else value


def _dict(d: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            _dict(v, f"{prefix}{k}.", out)
        else:
            out[f"{prefix}{k}"] = _scalar(v)


def flatten(prov: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys -> scalars. Lists of records are keyed by their identity (dataset role:split, verifier key,
    eval row split/budget) rather than position, so an inserted row does not shift every later one."""
    out: dict[str, Any] = {}
    for key, value in prov.items():
        if key in _DERIVED:
            continue
        if key == "parent":
            if value:
                out |= flatten(value, f"{prefix}parent.")
            continue
        if key == "datasets":
            for d in value or []:
                _dict({k: v for k, v in d.items() if k not in ("role", "split")},
                      f"{prefix}datasets[{d.get('role')}:{d.get('split')}].", out)
        elif key == "verifiers":
            for v in value or []:
                _dict(v, f"{prefix}verifiers[{v.get('key')}].", out)
        elif key == "eval_table":
            for i, row in enumerate(value or []):
                ident = "/".join(f"{row[c]}" for c in _EVAL_ID_COLUMNS if c in row) or str(i)
                if "step" in row and len(value) > len({r.get("split") for r in value}):
                    ident += f"/step{row['step']}"
                _dict({k: v for k, v in row.items() if k not in _EVAL_ID_COLUMNS}, f"{prefix}eval_table[{ident}].",
                      out)
        elif isinstance(value, Mapping):
            _dict(value, f"{prefix}{key}.", out)
        else:
            out[f"{prefix}{key}"] = _scalar(value)
    return out


def classify(key: str) -> str:
    k = key
    while k.startswith("parent."):
        k = k[len("parent."):]
    if k in ("output_dir", "parent_path", "notes", "limitations") or k.startswith(
            ("config.output_dir", "config.run_dir", "config.logger.", "config.run_card.", "model.final.path",
             "model.base.resolved")):
        return "locations"
    if k == "wall_seconds":
        return "timing"
    if k.startswith("config.") or k == "stage":
        return "recipe"
    if k.startswith("datasets["):
        return "data"
    if k.startswith("verifiers["):
        return "verifiers"
    if k.startswith("model.base."):
        return "models"
    if k.startswith(("rlvr.", "hardware.", "software.")):
        return "environment"
    return "outputs"


def _roots(prov: Mapping[str, Any]) -> list[str]:
    """Each stage's output folder (absolute and as configured): paths under them are compared as <run>/..."""
    roots: set[str] = set()
    node: Mapping[str, Any] | None = prov
    while node:
        for r in (node.get("output_dir"), (node.get("config") or {}).get("output_dir")):
            if isinstance(r, str) and r.strip("/"):
                roots.add(r.rstrip("/"))
        node = node.get("parent")
    return sorted(roots, key=len, reverse=True)


def _relocate(value: Any, roots: list[str]) -> Any:
    if not isinstance(value, str):
        return value
    for root in roots:
        value = value.replace(root + "/", "<run>/") if root + "/" in value else value
        if value == root:
            return "<run>"
    return value


def _chained_bases(prov: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Key prefixes of ``model.base`` records that are just the parent stage's output model (same hash): a
    difference there follows from the parent, it is not an independent input."""
    out: set[str] = set()
    parent = prov.get("parent")
    if parent:
        base = ((prov.get("model") or {}).get("base") or {}).get("sha256")
        if base and base == ((parent.get("model") or {}).get("final") or {}).get("sha256"):
            out.add(f"{prefix}model.base.")
        out |= _chained_bases(parent, f"{prefix}parent.")
    return out


def _depth(key: str) -> int:
    return len(key) - len(key.replace("parent.", ""))


def diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, list[tuple[str, Any, Any]]]:
    """Group -> [(key, value in A, value in B)] for every key whose values differ (missing = None).

    One setting recorded by several stages of a chain (a pipeline's config and its grpo stage's config) is listed
    once, under the shallowest key."""
    fa, fb = flatten(a), flatten(b)
    ra, rb = _roots(a), _roots(b)
    chained = _chained_bases(a) & _chained_bases(b)
    groups: dict[str, list[tuple[str, Any, Any]]] = {g: [] for g in GROUPS}
    seen: set[tuple[str, str, str]] = set()
    for key in sorted(set(fa) | set(fb), key=lambda k: (_depth(k), k)):
        va, vb = _relocate(fa.get(key), ra), _relocate(fb.get(key), rb)
        if va == vb:
            continue
        same = (key.replace("parent.", ""), repr(va), repr(vb))
        if same in seen:
            continue
        seen.add(same)
        group = "outputs" if any(key.startswith(c) for c in chained) else classify(key)
        groups[group].append((key, fa.get(key), fb.get(key)))
    for items in groups.values():
        items.sort(key=lambda x: (_depth(x[0]), x[0]))
    return groups


def _fmt(value: Any, width: int = 70) -> str:
    text = "(missing)" if value is None else str(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def format_diff(a_name: str, b_name: str, a: Mapping[str, Any], b: Mapping[str, Any],
                groups: Mapping[str, list[tuple[str, Any, Any]]]) -> str:
    def ident(p: Mapping[str, Any]) -> str:
        final = ((p.get("model") or {}).get("final") or {}).get("sha256")
        base = ((p.get("model") or {}).get("base") or {}).get("sha256")
        commit = (p.get("rlvr") or {}).get("git_commit")
        return (f"stage {p.get('stage')}, model {(final or base or '?')[:16]}, rlvr {p.get('rlvr', {}).get('version')}"
                f"{' @ ' + commit[:10] if commit else ''}")

    lines = [f"A: {a_name}  ({ident(a)})", f"B: {b_name}  ({ident(b)})", ""]
    for group, title in GROUPS.items():
        items = groups.get(group, [])
        if group == "timing":
            if items:
                def secs(v: Any) -> str:
                    return f"{v:.1f} s" if isinstance(v, (int, float)) else _fmt(v)

                lines.append("timing: " + "; ".join(f"{k}: A {secs(va)}, B {secs(vb)}" for k, va, vb in items))
            continue
        lines.append(f"{title}: " + (f"{len(items)} difference{'s' if len(items) != 1 else ''}" if items else "same"))
        for key, va, vb in items:
            lines.append(f"  {key}\n      A: {_fmt(va)}\n      B: {_fmt(vb)}")
    same = not any(groups[g] for g in GROUPS if g not in ("timing", "locations"))
    lines += ["", "identical recipe, inputs and outputs" if same else ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    from rlvr.runs.runcard import NoProvenance, find_provenance

    if any(a in ("-h", "--help") for a in argv):
        print(USAGE + "\n\n" + __doc__)
        return 0
    runs = [a for a in argv if not a.startswith("--")]
    if len(runs) != 2 or set(argv) - set(runs) - {"--json"}:
        print(USAGE, file=sys.stderr)
        return 2
    provs = []
    for run in runs:
        try:
            provs.append(json.loads(find_provenance(run).read_text()))
        except NoProvenance as err:
            print(f"rlvr diff-runs: {err}", file=sys.stderr)
            return 2
    groups = diff(*provs)
    if "--json" in argv:
        print(json.dumps({g: [{"key": k, "a": va, "b": vb} for k, va, vb in items] for g, items in groups.items()},
                         indent=1, default=str))
    else:
        print(format_diff(runs[0], runs[1], provs[0], provs[1], groups), end="")
    return 0
