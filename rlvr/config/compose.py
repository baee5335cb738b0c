"""Compose a command's config from Hydra overrides and validate it, reporting every problem at once.

Hydra stops at the first bad override; a user with three typos should not need three runs to find them, so a
failed composition is retried override by override and every failure is collected. Semantic checks (ranges,
missing files, unknown names) run on the composed config before any model loads. Problems end the command with
exit code 2 and one line each: what is wrong, why, and the fix. Commands reach this through the front door,
``rlvr.config.loading.run_command``, which also re-exports these names.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from rlvr.config.schema import register_configs

EXIT_CONFIG_ERROR = 2


@dataclass(frozen=True)
class Problem:
    key: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.key}: {self.what}. Fix: {self.fix}"


class ConfigError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(f"  - {p}" for p in problems))


def _clean_hydra_message(exc: BaseException) -> str:
    text = str(exc).strip()
    cause = exc.__cause__
    if cause is not None and str(cause).strip() and str(cause).strip() not in text:
        text = f"{text} ({str(cause).strip()})"
    # OmegaConf appends full_key/object_type lines that repeat what the first line says.
    keep = [ln for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(("full_key:", "object_type=", "    reference_type"))]
    return " ".join(" ".join(keep).split())


def _compose_raw(command: str, overrides: list[str], with_hydra: bool = False) -> DictConfig:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    # A command body may compose while a multirun job holds the global Hydra: put it back afterwards.
    saved = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="rlvr.conf", job_name=command, version_base="1.3"):
            cfg = compose(config_name=command, overrides=overrides, return_hydra_config=with_hydra)
    finally:
        GlobalHydra.instance().hydra = saved
    return cfg


def _override_problem(override: str, exc: Exception) -> Problem:
    key = override.split("=", 1)[0].lstrip("+~")
    message = _clean_hydra_message(exc)
    if "not in struct" in message or "Could not override" in message and "Key '" in message:
        fix = "check the spelling; `rlvr <command> --help` lists every key"
        what = f"unknown key {key!r}"
    elif "could not be converted" in message or "Value '" in message and "type" in message:
        what = f"wrong type in {override!r} ({message})"
        fix = "give a value of the field's type (see --help)"
    elif "Could not find" in message or "Available options" in message:
        what = message
        fix = "pick one of the available options above, or set model.name_or_path / task.path for your own"
    elif "Error parsing override" in message or "mismatched input" in message or "no viable" in message:
        what = f"cannot parse override {override!r} ({message})"
        fix = "write key=value (quote values with spaces or special characters)"
    else:
        what = message
        fix = "see `rlvr <command> --help`"
    return Problem(key=key, what=what, fix=fix)


def compose_config(command: str, overrides: list[str]) -> DictConfig:
    """The composed, interpolation-resolved config, or a ConfigError listing every bad override."""
    cfg, problems = _compose_collecting(command, overrides)
    if problems:
        raise ConfigError(problems)
    return cfg


def _compose_collecting(command: str, overrides: list[str]) -> tuple[DictConfig | None, list[Problem]]:
    """Compose; on failure find every bad override and compose the good ones, so that semantic checks can
    still run on them and all problems are reported together."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    errors = (HydraException, OmegaConfBaseException, ValueError)
    problems: list[Problem] = []
    try:
        cfg = _compose_raw(command, overrides)
    except errors as first:
        good = []
        for override in overrides:
            try:
                _compose_raw(command, [override])
                good.append(override)
            except errors as exc:
                problems.append(_override_problem(override, exc))
        if not problems:  # the overrides only fail together (e.g. conflicting group choices)
            return None, [Problem(key="overrides", what=_clean_hydra_message(first), fix="see --help")]
        try:
            cfg = _compose_raw(command, good)
        except errors:
            return None, problems
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        problems.append(Problem("config", f"cannot resolve an interpolation: {_clean_hydra_message(exc)}",
                                "fix the ${...} reference or the environment variable it reads"))
        return None, problems
    return cfg, problems


def load_config(command: str, overrides: list[str], validate: Callable[[DictConfig], list[Problem]]) -> DictConfig:
    """Compose and validate; raises one ConfigError with every problem found."""
    cfg, problems = _compose_collecting(command, overrides)
    if cfg is not None:
        problems += validate_common(cfg) + validate(cfg)
    if problems:
        raise ConfigError(problems)
    return cfg


# ----------------------------------------------------------------------------------------- validation
def validate_common(cfg: DictConfig) -> list[Problem]:
    from rlvr.models import KNOWN_MODELS
    from rlvr.tasks import available_tasks
    from rlvr.tasks.loading import looks_like_local_path

    problems: list[Problem] = []
    m = cfg.model
    if m.name_or_path is None and m.name not in KNOWN_MODELS:
        problems.append(Problem("model.name", f"unknown model {m.name!r}",
                                f"use one of {sorted(KNOWN_MODELS)} or set model.name_or_path=<hub id or folder>"))
    if m.name_or_path and looks_like_local_path(m.name_or_path) and not Path(m.name_or_path).expanduser().exists():
        problems.append(Problem("model.name_or_path", f"{m.name_or_path!r} does not exist",
                                "point it at a model folder (e.g. <run>/final) or a hub id like org/name"))
    if m.dtype not in ("float32", "bfloat16", "float16", "auto"):
        problems.append(Problem("model.dtype", f"unknown dtype {m.dtype!r}", "use float32, bfloat16, float16 or auto"))
    t = m.tiny
    if t.hidden_size % t.num_heads or t.num_heads % t.num_kv_heads:
        problems.append(Problem("model.tiny", "hidden_size must be divisible by num_heads and num_heads by num_kv_heads",
                                "e.g. hidden_size=128 num_heads=4 num_kv_heads=2"))
    if cfg.task.name not in available_tasks():
        problems.append(Problem("task.name", f"unknown task {cfg.task.name!r}",
                                f"use one of {', '.join(available_tasks())} (or task=generic task.path=...)"))
    if cfg.task.path and looks_like_local_path(cfg.task.path) and not Path(cfg.task.path).expanduser().exists():
        problems.append(Problem("task.path", f"data file {cfg.task.path!r} does not exist",
                                "point task.path at an existing json/jsonl/parquet/csv file or folder"))
    from rlvr.tasks.mix import validate_mix

    problems += [Problem(key, what, fix) for key, what, fix in validate_mix(cfg.task)]
    if cfg.task.name == "generic" and not cfg.task.path:
        problems.append(Problem("task.path", "the generic task needs a dataset", "set task.path=<file, folder or hub id>"))
    if cfg.data_dir and not Path(cfg.data_dir).expanduser().is_dir():
        problems.append(Problem("data_dir", f"{cfg.data_dir!r} is not a folder", "unset it or point it at the data folder"))
    a = cfg.task.arith
    if not 1 <= a.min_ops <= a.max_ops:
        problems.append(Problem("task.arith", f"need 1 <= min_ops <= max_ops, got {a.min_ops}..{a.max_ops}",
                                "e.g. task.arith.min_ops=1 task.arith.max_ops=3"))
    if any(k < 1 or k > a.max_eval_ops for k in a.eval_ops):
        problems.append(Problem("task.arith.eval_ops", f"{list(a.eval_ops)} must lie in 1..max_eval_ops={a.max_eval_ops}",
                                "raise task.arith.max_eval_ops or drop the larger counts"))
    if a.value_max < 10 or a.operand_max < 1 or a.multiplier_max < 2 or not 0 < a.heldout_fraction < 1:
        problems.append(Problem("task.arith", "value_max>=10, operand_max>=1, multiplier_max>=2 and 0<heldout_fraction<1 "
                                "are required", "restore the defaults (see --help)"))
    if cfg.logger.backend not in ("wandb", "none"):
        problems.append(Problem("logger.backend", f"unknown backend {cfg.logger.backend!r}", "use logger=wandb or logger=none"))
    if cfg.logger.mode not in ("offline", "online", "disabled"):
        problems.append(Problem("logger.mode", f"unknown mode {cfg.logger.mode!r}", "use offline, online or disabled"))
    return problems


def positive(cfg: DictConfig, *keys: str) -> list[Problem]:
    problems = []
    for key in keys:
        value = OmegaConf.select(cfg, key)
        if value is None or value <= 0:
            problems.append(Problem(key, f"must be > 0, got {value!r}", f"set {key} to a positive number"))
    return problems


def default_output_dir(cfg: DictConfig, command: str) -> None:
    if cfg.output_dir is None:
        cfg.output_dir = f"runs/{command}-{time.strftime('%Y%m%d-%H%M%S')}"


def report(command: str, err: ConfigError, context: str = "") -> int:
    n = len(err.problems)
    print(f"rlvr {command}{context}: {n} configuration error{'s' if n > 1 else ''}:\n{err}", file=sys.stderr)
    return EXIT_CONFIG_ERROR
