"""The shared front door of every command, ``run_command``: compose the config from Hydra overrides, validate it
(every problem at once, exit code 2: ``rlvr.config.compose``), then run the command's body; or answer ``--help``,
``--cfg`` or ``--multirun``.

Flags (Hydra's spellings), read by ``run_command`` before the overrides:

- ``--help`` / ``-h``: every key with the value this command will run with (the composed config: primary YAML,
  its defaults list, experiment and algo preset, the given overrides) and its help (``rlvr.config.help``).
- ``--cfg job`` (``-c job``): that composed config as YAML, interpolations and derived defaults resolved; nothing
  runs. ``--cfg hydra`` / ``--cfg all`` add Hydra's own node (unresolved). ``--resolve`` is accepted: the job
  config is always printed resolved, as the command sees it.
- ``--multirun`` / ``-m``: a sweep through Hydra's sweeper and launcher (``rlvr.config.sweep``).

A single run (no ``-m``) composes with Hydra's compose API: no outputs/ folder, no change of directory, no
logging set up; the command's ``output_dir`` is the run directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from rlvr.config.compose import (EXIT_CONFIG_ERROR, ConfigError, Problem, _clean_hydra_message, _compose_raw,
                                 compose_config, default_output_dir, load_config, positive, report, validate_common)
from rlvr.config.help import command_help
from rlvr.config.sweep import run_multirun

# Commands import these from here, the front door; they live in rlvr.config.compose.
__all__ = ["EXIT_CONFIG_ERROR", "CFG_KINDS", "ConfigError", "Flags", "Problem", "_clean_hydra_message", "command_help",
           "compose_config", "config_yaml", "default_output_dir", "load_config", "positive", "report", "run_command",
           "split_flags", "validate_common"]


@dataclass(frozen=True)
class Flags:
    help: bool = False
    cfg: str | None = None        # job | hydra | all
    multirun: bool = False


CFG_KINDS = ("job", "hydra", "all")


def split_flags(argv: list[str]) -> tuple[Flags, list[str]]:
    """(the flags ``run_command`` understands, the Hydra overrides); a bad ``--cfg`` raises ConfigError."""
    help_ = multirun = False
    cfg = None
    overrides: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in ("-h", "--help"):
            help_ = True
        elif arg in ("-m", "--multirun"):
            multirun = True
        elif arg == "--resolve":
            continue  # --cfg job always prints the resolved config
        elif arg in ("-c", "--cfg") or arg.startswith("--cfg="):
            cfg = arg.split("=", 1)[1] if "=" in arg else next(args, None)
            if cfg not in CFG_KINDS:
                raise ConfigError([Problem("--cfg", f"needs one of {', '.join(CFG_KINDS)}, got {cfg!r}",
                                           "write `--cfg job` to print the composed config as YAML")])
        else:
            overrides.append(arg)
    return Flags(help=help_, cfg=cfg, multirun=multirun), overrides


def config_yaml(command: str, overrides: list[str], kind: str = "job") -> str:
    """``--cfg``: the composed config (resolved, derived defaults filled) and/or Hydra's node, as YAML."""
    parts = []
    if kind in ("job", "all"):
        parts.append(OmegaConf.to_yaml(compose_config(command, overrides)))
    if kind in ("hydra", "all"):
        compose_config(command, overrides)  # every bad override reported, not just Hydra's first
        hydra_node = _compose_raw(command, overrides, with_hydra=True).hydra
        parts.append(OmegaConf.to_yaml({"hydra": hydra_node}))
    return "\n".join(parts)


def run_command(command: str, argv: list[str], validate: Callable[[DictConfig], list[Problem]],
                body: Callable[[DictConfig], int | None]) -> int:
    """Shared front door of every command: --help, --cfg, --multirun, or compose, validate (all errors at once),
    then run ``body`` on the composed config."""
    try:
        flags, overrides = split_flags(argv)
        if flags.multirun:
            return run_multirun(command, overrides, validate, body, help_=flags.help, cfg=flags.cfg)
        if flags.help:
            print(command_help(command, overrides))
            return 0
        if flags.cfg:
            print(config_yaml(command, overrides, flags.cfg), end="")
            return 0
        cfg = load_config(command, overrides, validate)
    except ConfigError as err:
        return report(command, err)
    return int(body(cfg) or 0)
