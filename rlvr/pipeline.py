"""``rlvr pipeline``: distill -> sft -> grpo -> eval -> plot in one run directory, each stage skippable and resumable.

    rlvr pipeline output_dir=runs/demo                       # the demo: tiny model on arith (`make demo`)
    rlvr pipeline output_dir=runs/demo 'pipeline.skip=[sft]' # GRPO again from the finished runs/demo/sft/final
    rlvr pipeline experiment=gsm8k_qwen2.5_1.5b output_dir=runs/gsm8k   # a real run (GPU; conf/experiment/)

Layout (``<run>`` = ``output_dir``):

    <run>/config.yaml            the pipeline's resolved config
    <run>/distill/               rejection-sampled SFT data (data.jsonl, summary.json)   stage distill (optional)
    <run>/sft/                   an `rlvr sft` run directory (final/ = the SFT model)    stage sft
    <run>/grpo/                  an `rlvr grpo` run directory, started from sft/final    stage grpo
    <run>/eval/                  budget_sweep_<model>.json/.csv: the SFT model and GRPO checkpoints   stage eval
    <run>/plots/                 accuracy vs budget / step / compute (PNG)                stage plot
    <run>/summary.json           accuracy after SFT and after GRPO, pass@1 per budget, plot paths, stage times

How a stage's config is built: take that stage's own schema (``DistillRunConfig``, ``SFTRunConfig``,
``GRPORunConfig``, ``EvalRunConfig``), fill the shared fields (seed, data_dir, model, task, logger) and the stage's
sections (``sft``/``rewards``; ``grpo``/``algo``/``rewards``/``rollout``; ``eval``; ``distill``/``rewards``/``rollout``) from
the pipeline's config, point ``output_dir`` at the stage's folder, wire the previous stage's output in (GRPO's
``model.name_or_path = <run>/sft/final``; SFT's ``sft.train_file = <run>/distill/data.jsonl`` when distill is in
the stages), then apply ``pipeline.stage_overrides.<stage>`` — dotlist ``key=value`` overrides in that stage's
own keys, checked against its schema like any override, and applied last, so they also win over the wiring.
Every stage's config goes through that stage's own validation before anything runs; all problems are reported
together.

Resuming: a finished stage is recognised by its done marker (``sft/final/rlvr_sft_done.json``,
``grpo/final/rlvr_grpo_done.json`` with ``step >= grpo.max_steps``, ``distill/summary.json`` with the same
settings, an up-to-date sweep file per evaluated model, plots newer than every sweep) and skipped. An unfinished
stage is simply run again with the same output directory: SFT and GRPO continue from their newest checkpoint by
themselves (``sft.resume``, ``grpo.resume``), the eval stage keeps the sweeps it already wrote. So killing the
pipeline at any point and re-running the same command finishes the run.
"""

from __future__ import annotations

import gc
import json
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from rlvr.config import PIPELINE_STAGES, DistillRunConfig, EvalRunConfig, GRPORunConfig, SFTRunConfig
from rlvr.config.loading import Problem, default_output_dir, run_command, validate_common

STAGE_SCHEMAS: dict[str, type] = {"distill": DistillRunConfig, "sft": SFTRunConfig, "grpo": GRPORunConfig,
                                  "eval": EvalRunConfig}
SFT_DONE = Path("final") / "rlvr_sft_done.json"
GRPO_DONE = Path("final") / "rlvr_grpo_done.json"


# ------------------------------------------------------------------------------------------------ stage configs
def active_stages(cfg: DictConfig) -> list[str]:
    """The stages this invocation runs, in pipeline order."""
    return [s for s in PIPELINE_STAGES if s in cfg.pipeline.stages and s not in cfg.pipeline.skip]


def stage_dir(run: Path, stage: str) -> Path:
    """Where a stage writes: its own folder, except eval and plot, which write <run>/eval and <run>/plots."""
    return run if stage in ("eval", "plot") else run / stage


def parse_overrides(overrides: Any) -> DictConfig:
    """``pipeline.stage_overrides.<stage>`` as a config to merge; ValueError says which entry is malformed."""
    entries = list(overrides or [])
    for entry in entries:
        key = str(entry).split("=", 1)[0]
        if not isinstance(entry, str) or "=" not in entry or not key.strip() or key.startswith(("+", "~")):
            raise ValueError(f"{entry!r} is not a key=value override")
        if key.strip() in ("model", "task", "logger", "algo"):
            raise ValueError(f"{entry!r} picks a config group, which a stage override cannot; set the group's "
                             f"fields instead, e.g. {key.strip()}.name=... (algo: algo.loss=..., ...)")
    return OmegaConf.from_dotlist(entries)


def apply_overrides(node: DictConfig, entries: Any) -> tuple[DictConfig, list[tuple[str, str]]]:
    """Merge each ``key=value`` into the stage config; (config with the good ones, [(entry, why)] of the bad)."""
    from omegaconf.errors import OmegaConfBaseException

    from rlvr.config.loading import _clean_hydra_message

    bad = []
    for entry in list(entries or []):
        try:
            node = OmegaConf.merge(node, parse_overrides([entry]))
        except (OmegaConfBaseException, ValueError) as exc:
            bad.append((str(entry), _clean_hydra_message(exc)))
    return node, bad


def stage_config(cfg: DictConfig, stage: str, run: Path, *, plan: bool = False,
                 overrides: bool = True) -> DictConfig:
    """The config ``stage`` runs with (module docstring). ``plan=True`` (validation, before anything ran) leaves
    out the wiring to earlier stages' outputs, which do not exist yet; ``overrides=False`` leaves out
    ``pipeline.stage_overrides``. Raises ValueError on a bad stage override."""
    schema = STAGE_SCHEMAS[stage]
    node = OmegaConf.structured(schema)
    shared = {f.name: cfg[f.name] for f in fields(schema) if f.name != "output_dir" and f.name in cfg}
    node = OmegaConf.merge(node, shared)
    node.output_dir = str(stage_dir(run, stage))
    if stage == "eval":
        node.eval.plot = False  # plotting is its own stage
    if not plan:
        wired = upstream(cfg, stage, run)
        if wired:
            node = OmegaConf.merge(node, OmegaConf.from_dotlist(wired))
    if overrides:
        node, bad = apply_overrides(node, cfg.pipeline.stage_overrides[stage])
        if bad:
            raise ValueError("; ".join(f"{entry!r}: {why}" for entry, why in bad))
        if stage == "eval":  # a stage override of eval.n alone: the derived k_list follows it
            from rlvr.config.derived import follow_n

            follow_n(cfg.eval, node.eval)
    return node


def upstream(cfg: DictConfig, stage: str, run: Path) -> list[str]:
    """Dotlist overrides that feed a stage the output of the stage before it, when that output exists."""
    if stage == "sft" and "distill" in cfg.pipeline.stages and (run / "distill" / "data.jsonl").exists():
        return [f"sft.train_file={run / 'distill' / 'data.jsonl'}"]
    if stage == "grpo" and "sft" in cfg.pipeline.stages and (run / "sft" / SFT_DONE).exists():
        return [f"model.name_or_path={run / 'sft' / 'final'}"]
    return []


def _validators() -> dict[str, Callable[[DictConfig], list[Problem]]]:
    from rlvr.train.distill import validate as distill_validate
    from rlvr.eval.cli import validate as eval_validate
    from rlvr.train.grpo_validation import validate as grpo_validate
    from rlvr.train.sft import validate as sft_validate

    return {"distill": distill_validate, "sft": sft_validate, "grpo": grpo_validate, "eval": eval_validate}


# ------------------------------------------------------------------------------------------------ validation
def validate(cfg: DictConfig) -> list[Problem]:
    """The pipeline's own keys, then every active stage's config through that stage's validation; problems
    already reported for the shared sections are not repeated, and a problem that only a stage override causes
    names the override."""
    p = cfg.pipeline
    problems: list[Problem] = []
    valid = ", ".join(PIPELINE_STAGES)
    for key, names in (("pipeline.stages", list(p.stages)), ("pipeline.skip", list(p.skip))):
        bad = [s for s in names if s not in PIPELINE_STAGES]
        if bad:
            problems.append(Problem(key, f"unknown stage(s) {bad}", f"use stage names from: {valid}"))
    if len(set(p.stages)) != len(p.stages):
        problems.append(Problem("pipeline.stages", f"a stage is listed twice in {list(p.stages)}",
                                "list each stage once (they always run in the order " + " -> ".join(PIPELINE_STAGES)
                                + ")"))
    if not active_stages(cfg):
        problems.append(Problem("pipeline.stages", "no stage left to run (every listed stage is in pipeline.skip)",
                                f"list stages from: {valid}"))
    lora, stages = cfg.model.lora, active_stages(cfg)
    if "sft" in stages and len(stages) > 1 and lora.r > 0 and not lora.merge_final:
        problems.append(Problem("model.lora.merge_final", "false leaves sft/final/ with the adapter only: the stages "
                                "after sft load a model from it", "keep model.lora.merge_final=true (the default)"))
    seen = {(q.key, q.what) for q in validate_common(cfg)}  # reported already, by load_config
    run = Path(cfg.output_dir or "runs/pipeline")
    validators = _validators()
    for stage in active_stages(cfg):
        if stage not in STAGE_SCHEMAS:
            continue
        where = f"pipeline.stage_overrides.{stage}"
        base = stage_config(cfg, stage, run, plan=True, overrides=False)
        stage_cfg, bad = apply_overrides(base, p.stage_overrides[stage])
        for entry, why in bad:
            problems.append(Problem(where, f"bad override {entry!r} for the {stage} stage: {why}",
                                    f"use keys of `rlvr {stage} --help` as key=value"))
        found = validate_common(stage_cfg) + validators[stage](stage_cfg)
        without = set()
        if p.stage_overrides[stage]:
            without = {(q.key, q.what) for q in validate_common(base) + validators[stage](base)}
        for q in found:
            if (q.key, q.what) in seen:
                continue
            seen.add((q.key, q.what))
            if p.stage_overrides[stage] and (q.key, q.what) not in without:
                q = Problem(f"{q.key} (in {where})", q.what, q.fix)
            problems.append(q)
    return problems


# ------------------------------------------------------------------------------------------------ done markers
def _is_model(folder: Path) -> bool:
    return (folder / "config.json").exists()


def grpo_done(run: Path, max_steps: int) -> bool:
    marker = run / "grpo" / GRPO_DONE
    if not marker.exists():
        return False
    try:
        return int(json.loads(marker.read_text()).get("step", 0)) >= max_steps
    except (json.JSONDecodeError, TypeError, ValueError):
        return False


def eval_checkpoints(run: Path, stage_cfg: DictConfig) -> list:
    """The models the eval stage sweeps: the SFT model ("sft"), then GRPO's checkpoints per ``eval.checkpoints``
    ("grpo step N"); with neither, the configured model itself."""
    from rlvr.runs.layout import Checkpoint, describe_model, run_checkpoints

    out = []
    sft_final, grpo = run / "sft" / "final", run / "grpo"
    has_grpo = _is_model(grpo / "final") or (grpo / "checkpoints").is_dir()
    if _is_model(sft_final):
        base = describe_model(sft_final)
        # on GRPO's step axis the SFT model is step 0; without GRPO it sits at its own step
        out.append(Checkpoint(str(sft_final), "sft", 0 if has_grpo else base.step, base.train_tokens,
                              str(run / "sft")))
    if has_grpo:
        try:
            found = run_checkpoints(grpo, stage_cfg.eval.checkpoints)
        except FileNotFoundError:
            found = []
        for c in found:
            if c.path and _is_model(sft_final) and Path(c.path).resolve() == sft_final.resolve():
                continue  # GRPO's "step 0" is the SFT model, listed above
            out.append(replace(c, label=f"grpo step {c.step}" if c.step is not None else c.label))
    if not out:
        path = stage_cfg.model.name_or_path
        out.append(describe_model(path) if path else Checkpoint(None, stage_cfg.model.name))
    return out


_NOT_COMPARED = ("plot", "tag", "checkpoints", "batch_size")


def _settings(eval_cfg: Any) -> dict[str, Any]:
    plain = OmegaConf.to_container(eval_cfg, resolve=True) if OmegaConf.is_config(eval_cfg) else dict(eval_cfg)
    return {k: v for k, v in plain.items() if k not in _NOT_COMPARED}


def sweep_is_current(path: Path, ckpt: Any, stage_cfg: DictConfig, splits: list[str], task_name: str) -> bool:
    """The sweep file exists, was made with these settings for this model, and is newer than the model."""
    if not path.exists():
        return False
    try:
        meta = json.loads(path.read_text())["meta"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return False
    same = (meta.get("model_path") == ckpt.path and meta.get("splits") == splits and meta.get("task") == task_name
            and meta.get("seed") == stage_cfg.seed and _settings(meta.get("eval") or {}) == _settings(stage_cfg.eval))
    if not same:
        return False
    if ckpt.path:
        weights = [p for p in Path(ckpt.path).glob("*.safetensors")] + [Path(ckpt.path) / "config.json"]
        newest = max((p.stat().st_mtime for p in weights if p.exists()), default=0.0)
        return newest <= path.stat().st_mtime
    return True


def plots_current(run: Path) -> bool:
    from rlvr.eval.budget_sweep import SWEEP_PREFIX
    from rlvr.eval.plots import PLOTS

    sweeps = list((run / "eval").glob(f"{SWEEP_PREFIX}*.json"))
    pngs = [run / "plots" / f"{name}.png" for name in PLOTS]
    if not sweeps or not all(p.exists() for p in pngs):
        return False
    return min(p.stat().st_mtime for p in pngs) >= max(s.stat().st_mtime for s in sweeps)


# ------------------------------------------------------------------------------------------------ stages
def run_distill(stage_cfg: DictConfig, run: Path, console: Any) -> int:
    from rlvr.train.distill import run as distill_run

    return distill_run(stage_cfg)


def run_sft(stage_cfg: DictConfig, run: Path, console: Any) -> int:
    from rlvr.train.sft import run as sft_run

    return sft_run(stage_cfg)


def run_grpo(stage_cfg: DictConfig, run: Path, console: Any) -> int:
    from rlvr.train.grpo import run as grpo_run

    return grpo_run(stage_cfg)


def eval_splits(stage_cfg: DictConfig, task: Any) -> list[str]:
    """The eval stage's splits: as configured, else the task's held-out ones."""
    return list(stage_cfg.eval.splits) or task.default_eval_splits()


def run_eval(stage_cfg: DictConfig, run: Path, console: Any) -> int:
    """Sweep every model of :func:`eval_checkpoints` whose sweep file is missing or stale, with the loop
    ``rlvr eval`` runs (``rlvr.eval.budget_sweep.evaluate_checkpoints``); up-to-date files are kept."""
    from rlvr.eval.budget_sweep import SWEEP_PREFIX, evaluate_checkpoints
    from rlvr.eval.cli import print_table
    from rlvr.runs.provenance import task_datasets, write_stage_card
    from rlvr.tasks import build_task

    e = stage_cfg.eval
    task = build_task(stage_cfg.task, data_dir=stage_cfg.data_dir)
    splits = eval_splits(stage_cfg, task)
    checkpoints = eval_checkpoints(run, stage_cfg)
    console.print(f"[bold]eval[/bold]  {', '.join(c.label for c in checkpoints)}  splits={splits}  "
                  f"budgets={list(e.budgets)}  n={e.n}  problems/split={e.num_problems}  out={run / 'eval'}")

    def reuse(ckpt: Any) -> list[dict] | None:
        path = run / "eval" / f"{SWEEP_PREFIX}{ckpt.tag}.json"
        if not sweep_is_current(path, ckpt, stage_cfg, splits, task.name):
            return None
        console.print(f"{ckpt.label}: {path} is up to date")
        return json.loads(path.read_text())["rows"]

    rows = evaluate_checkpoints(stage_cfg, task, checkpoints, splits, run, console, reuse=reuse)
    print_table(rows, console)
    parent = next((c for c in (stage_dir(run, s) / "final" / "provenance.json" for s in ("grpo", "sft"))
                   if c.exists()), None)
    write_stage_card(stage_cfg, "eval", run / "eval", console=console, verifiers=task.verifier_specs(),
                     datasets=task_datasets(task, dict.fromkeys(splits, e.num_problems), role="eval"),
                     eval_table=rows, parent=parent)
    return 0


def run_plot(cfg: DictConfig, run: Path, console: Any) -> int:
    from rlvr.eval.plots import _wandb_tracker, make_plots

    tracker = None
    try:
        tracker = _wandb_tracker(run, "auto")  # follows <run>/config.yaml's logger
        paths = make_plots(run, tracker)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]plot: {exc}[/red]")
        return 2
    finally:
        if tracker is not None:
            tracker.close()
    console.print("plots: " + "  ".join(str(p) for p in paths))
    return 0


RUNNERS: dict[str, Callable[[DictConfig, Path, Any], int]] = {
    "distill": run_distill, "sft": run_sft, "grpo": run_grpo, "eval": run_eval}


def stage_done(stage: str, cfg: DictConfig, stage_cfg: DictConfig | None, run: Path) -> bool:
    if stage == "distill":
        from rlvr.train.distill import is_done

        return is_done(run / "distill", stage_cfg)
    if stage == "sft":
        return (run / "sft" / SFT_DONE).exists()
    if stage == "grpo":
        return grpo_done(run, stage_cfg.grpo.max_steps)
    if stage == "eval":
        from rlvr.eval.budget_sweep import SWEEP_PREFIX
        from rlvr.tasks import build_task

        task = build_task(stage_cfg.task, data_dir=stage_cfg.data_dir)
        splits = eval_splits(stage_cfg, task)
        return all(sweep_is_current(run / "eval" / f"{SWEEP_PREFIX}{c.tag}.json", c, stage_cfg, splits, task.name)
                   for c in eval_checkpoints(run, stage_cfg))
    if stage == "plot":
        return plots_current(run)
    raise KeyError(stage)


# ------------------------------------------------------------------------------------------------ the command
def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def run(cfg: DictConfig) -> int:
    from rich.console import Console

    from rlvr.eval.summary import SUMMARY, collect_summary, print_summary, read_json, write_summary

    console = Console()
    started = time.time()
    default_output_dir(cfg, "pipeline")
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    previous = (read_json(run_dir / SUMMARY) or {}).get("stages", {})
    listed = [s for s in PIPELINE_STAGES if s in cfg.pipeline.stages]
    console.print(f"[bold]rlvr pipeline[/bold]  {' -> '.join(listed)}  out={run_dir}  (re-run the same command to "
                  "resume after an interruption)")
    statuses: dict[str, dict[str, Any]] = {}
    for stage in listed:
        if stage in cfg.pipeline.skip:
            statuses[stage] = {"status": "skipped (pipeline.skip)"}
            console.print(f"[yellow]stage {stage}: skipped (pipeline.skip)[/yellow]")
            continue
        stage_cfg = stage_config(cfg, stage, run_dir) if stage in STAGE_SCHEMAS else None
        if stage_done(stage, cfg, stage_cfg, run_dir):
            statuses[stage] = {"status": "already complete", "seconds": previous.get(stage, {}).get("seconds")}
            console.print(f"[green]stage {stage}: already complete in {stage_dir(run_dir, stage)}; skipped[/green]")
            continue
        console.rule(f"[bold]stage {stage}")
        if stage_cfg is not None and stage == "grpo":
            console.print(f"grpo starts from {stage_cfg.model.name_or_path or stage_cfg.model.name}")
            check_contamination_before_grpo(cfg, stage_cfg, run_dir, console)
        stage_started = time.time()
        runner = RUNNERS.get(stage)
        rc = runner(stage_cfg, run_dir, console) if runner is not None else run_plot(cfg, run_dir, console)
        _free_memory()
        if rc:
            statuses[stage] = {"status": f"failed (exit {rc})", "seconds": time.time() - stage_started}
            console.print(f"[red]stage {stage} failed (exit {rc}); fix the cause and re-run the same command: "
                          "finished stages are kept[/red]")
            write_summary(run_dir, collect_summary(run_dir, statuses))
            return int(rc)
        statuses[stage] = {"status": "ran", "seconds": time.time() - stage_started}
    summary = collect_summary(run_dir, statuses)
    summary["seconds"] = time.time() - started
    console.rule("[bold]summary")
    print_summary(summary, console)
    write_summary(run_dir, summary)
    write_pipeline_card(cfg, run_dir, summary, console)
    return 0


def check_contamination_before_grpo(cfg: DictConfig, grpo_cfg: DictConfig, run: Path, console: Any) -> None:
    """n-gram overlap of GRPO's training prompts with ``cfg.contamination.eval_sets``, into
    ``<run>/grpo/contamination.json`` (the GRPO run card picks it up from there). A report, never a blocker."""
    from rlvr.runs.contamination import check_task

    try:
        report = check_task(grpo_cfg.task, grpo_cfg.data_dir, cfg.contamination, stage_dir(run, "grpo"))
    except Exception as exc:  # noqa: BLE001 - the check must not stop a training run
        console.print(f"[yellow]contamination check failed ({type(exc).__name__}: {exc}); continuing[/yellow]")
        return
    for item in report.get("eval_sets", []):
        if "error" in item:
            console.print(f"[yellow]contamination: {item['name']}: {item['error']}[/yellow]")
        else:
            console.print(f"contamination: {item['name']}: {item['ngram_hits']} of {item['count']} items share a "
                          f"{cfg.contamination.n}-gram with the training prompts, {item['exact_matches']} exact")


def write_pipeline_card(cfg: DictConfig, run: Path, summary: dict[str, Any], console: Any) -> None:
    """RUNCARD.md + provenance.json in the run folder: the pipeline's own record, its parent the newest stage card
    (eval -> grpo -> sft), so ``rlvr card <run>`` tells the whole chain."""
    from rlvr.eval.summary import read_json
    from rlvr.runs.provenance import collect, write_run_card

    cards = [run / "eval" / "provenance.json", stage_dir(run, "grpo") / "final" / "provenance.json",
             stage_dir(run, "sft") / "final" / "provenance.json"]
    parent = next((c for c in cards if c.exists()), None)
    contamination = read_json(stage_dir(run, "grpo") / "contamination.json")
    try:
        write_run_card(run, collect(cfg, "pipeline", run, parent=parent, wall_seconds=summary.get("seconds"),
                                    contamination=contamination))
        console.print(f"run card: {run / 'RUNCARD.md'}  (rlvr card {run})")
    except Exception as exc:  # noqa: BLE001 - paperwork must not fail a finished run
        console.print(f"[yellow]could not write the pipeline run card: {type(exc).__name__}: {exc}[/yellow]")


def main(argv: list[str]) -> int:
    return run_command("pipeline", argv, validate, run)
