"""``rlvr <command> --multirun`` (``-m``): sweeps through Hydra's own sweeper and launcher.

    rlvr sft -m sft.max_steps=200,400 sft.learning_rate=1e-3,3e-3 hydra.sweep.dir=runs/sft-sweep
    rlvr grpo -m algo=dapo,grpo hydra/launcher=submitit_slurm      # with hydra-submitit-launcher installed

1. ``expand_sweep``: the overrides are parsed by Hydra's override parser and expanded the way Hydra's basic
   sweeper does (``BasicSweeper.split_arguments``: ``a,b``, ``range(...)``, ``glob(...)``, cartesian product),
   one override list per job, in the order Hydra numbers them.
2. ``validate_sweep``: every job's config is composed and validated like a single run, and every problem of
   every job is reported at once (problems shared by all jobs once) before any job starts. Two jobs writing one
   output_dir are a problem too.
3. ``launch``: Hydra's ``multirun`` (its configured sweeper and launcher: basic by default, a plugin selected with
   ``hydra/launcher=...`` / ``hydra/sweeper=...``) runs ``SweepJob`` on each job's config. Each job's output_dir
   is its Hydra job folder, ``hydra.sweep.dir/hydra.sweep.subdir`` (``DIR/0``, ``DIR/1``, ...), where Hydra
   also keeps ``.hydra/`` (the job's config and overrides) and its log. ``hydra.sweep.dir`` defaults to
   ``runs/<command>-multirun-<timestamp>`` (beside single runs). An explicit ``output_dir`` is kept as given:
   sweep it or interpolate a swept key (``output_dir=runs/lr${sft.learning_rate}``) so jobs differ; one
   output_dir shared by several jobs is refused (they would resume from and overwrite each other).

A sweeper other than the basic one (e.g. Optuna) proposes its jobs while it runs, so step 2 cannot see them in
advance: each job is then validated when it starts and a bad one fails alone. ``SweepJob`` is a plain picklable
object (module-level ``validate``/``body`` functions pickle by name) because launchers such as submitit, joblib
or ray ship the task function to other processes.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from rlvr.config.compose import (ConfigError, Problem, _clean_hydra_message, _compose_collecting, _override_problem,
                                 compose_config, report, validate_common)

Validate = Callable[[DictConfig], list[Problem]]
Body = Callable[[DictConfig], Any]


def _key(override: str) -> str:
    return override.split("=", 1)[0]


def custom_sweeper(overrides: list[str]) -> str | None:
    """The sweeper chosen with ``hydra/sweeper=NAME`` when it is not Hydra's basic one."""
    for o in overrides:
        if _key(o).lstrip("+~") == "hydra/sweeper" and o.split("=", 1)[1] != "basic":
            return o.split("=", 1)[1]
    return None


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """One override list per job (Hydra's basic-sweeper expansion); ConfigError lists every unparsable one."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    parsed, problems = [], []
    for override in overrides:
        try:
            parsed += parser.parse_overrides([override])
        except HydraException as exc:
            problems.append(_override_problem(override, exc))
    if problems:
        raise ConfigError(problems)
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    try:
        return BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]
    except HydraException as exc:
        raise ConfigError([Problem("--multirun", _clean_hydra_message(exc), "use a,b,c, range(...) or glob(...) "
                                   "sweeps, or pick a sweeper that supports this one with hydra/sweeper=...")])


def varying(jobs: list[list[str]]) -> list[list[str]]:
    """Per job, the overrides that differ between jobs (how a job is named in messages)."""
    keys = {_key(o) for job in jobs for o in job if any(o not in other for other in jobs)}
    return [[o for o in job if _key(o) in keys] for job in jobs]


def validate_sweep(command: str, jobs: list[list[str]], validate: Validate) -> list[tuple[str, Problem]]:
    """(which jobs, problem) for every problem of every job; one shared by every job is listed once."""
    per_job: list[list[Problem]] = []
    output_dirs: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        cfg, problems = _compose_collecting(command, job)
        if cfg is not None:
            problems = problems + validate_common(cfg) + validate(cfg)
            if cfg.output_dir is not None:
                output_dirs.setdefault(str(cfg.output_dir), []).append(i)
        per_job.append(problems)
    names = [" ".join(v) or "no overrides" for v in varying(jobs)]
    everywhere = set.intersection(*(set(map(str, p)) for p in per_job)) if len(jobs) > 1 else set()
    found: list[tuple[str, Problem]] = []
    listed_everywhere = set()
    for i, problems in enumerate(per_job):
        for p in problems:
            if str(p) in everywhere:
                if str(p) not in listed_everywhere:
                    listed_everywhere.add(str(p))
                    found.append(("every job", p))
            else:
                found.append((f"job {i} ({names[i]})", p))
    for out, idx in output_dirs.items():
        if len(idx) > 1:
            found.append((f"jobs {', '.join(map(str, idx))}", Problem(
                "output_dir", f"{out!r} is the run directory of {len(idx)} jobs: they would resume from and "
                "overwrite each other", "drop output_dir (each job then writes hydra.sweep.dir/<job number>), sweep "
                "it, or put a swept key in it, e.g. output_dir=runs/x_${sft.max_steps}")))
    return found


@dataclass(frozen=True)
class SweepJob:
    """Hydra's task function: one job's config -> validate -> the command's body. Runs inside Hydra's
    ``run_job``, so ``HydraConfig`` names the job's folder."""

    command: str
    validate: Validate
    body: Body

    def __call__(self, cfg: DictConfig) -> int:
        from hydra.core.hydra_config import HydraConfig

        OmegaConf.resolve(cfg)
        if cfg.output_dir is None:
            cfg.output_dir = HydraConfig.get().runtime.output_dir
        problems = validate_common(cfg) + self.validate(cfg)
        if problems:  # only with a sweeper whose jobs could not be validated in advance
            raise ConfigError(problems)
        return int(self.body(cfg) or 0)


def launch(command: str, overrides: list[str], job: SweepJob) -> int:
    """Hydra's multirun with the configured sweeper and launcher; the worst job exit code (0 = all passed)."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from rlvr.config.schema import register_configs

    if not any(_key(o) == "hydra.sweep.dir" for o in overrides):
        overrides = [*overrides, f"hydra.sweep.dir=runs/{command}-multirun-{time.strftime('%Y%m%d-%H%M%S')}"]
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="rlvr.conf", job_name=command, version_base="1.3"):
        batches = GlobalHydra.instance().hydra.multirun(config_name=command, task_function=job, overrides=overrides)
    codes = [r.return_value for batch in batches or [] for r in batch]
    return max((c for c in codes if isinstance(c, int)), default=0)


def run_multirun(command: str, overrides: list[str], validate: Validate, body: Body, *, help_: bool = False,
                 cfg: str | None = None) -> int:
    """``run_command``'s --multirun branch: expand, validate every job, then launch (or print, for --help/--cfg)."""
    sweeper = custom_sweeper(overrides)
    jobs = [overrides] if sweeper else expand_sweep(overrides)
    if help_:
        from rlvr.config.help import command_help

        print(command_help(command, jobs[0] if sweeper is None else []))  # a custom sweep cannot be expanded
        return 0
    if cfg:
        for i, job in enumerate(jobs):
            print(f"# job {i}: {' '.join(job)}\n{OmegaConf.to_yaml(compose_config(command, job))}")
        return 0
    if sweeper:
        print(f"rlvr {command} --multirun: hydra/sweeper={sweeper} proposes its jobs while it runs; each is "
              "validated when it starts", file=sys.stderr)
    else:
        found = validate_sweep(command, jobs, validate)
        if found:
            err = ConfigError([Problem(f"{where}: {p.key}", p.what, p.fix) for where, p in found])
            return report(command, err, f" --multirun ({len(jobs)} jobs; no job was started)")
    return launch(command, overrides, SweepJob(command, validate, body))
