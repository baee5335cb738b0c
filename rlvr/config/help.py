"""``rlvr <command> --help``: every key with the value the command will run with, and the field's help.

The values come from the composed config (the command's primary YAML, its defaults list, the experiment and algo
preset it selects, then the given overrides, derived defaults resolved), not from the dataclass defaults: the
schema's default for a field is often not what a command runs with (``rlvr grpo`` selects ``algo=dapo``; the
pipeline's ``experiment=demo`` sets its own step counts). The help strings come from the schema's fields. Only
Hydra and OmegaConf are imported, so the help stays fast.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from importlib.resources import files
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlvr.config.compose import _compose_raw, compose_config
from rlvr.config.schema import SCHEMAS


def field_helps(schema: Any, prefix: str = "") -> dict[str, str]:
    """dotted key -> help for every field of ``schema`` (a dataclass or an instance), sections included."""
    instance = schema() if isinstance(schema, type) else schema
    helps = {}
    for f in fields(instance):
        key = f"{prefix}{f.name}"
        helps[key] = f.metadata.get("help", "")
        value = getattr(instance, f.name)
        if is_dataclass(value):
            helps |= field_helps(value, prefix=f"{key}.")
    return helps


def option_lines(cfg: DictConfig, helps: dict[str, str], prefix: str = "") -> list[str]:
    """``key = value`` then its help, for every leaf of ``cfg``; sections of the schema are walked into, other
    dicts (free-form values) are one leaf."""
    lines = []
    for key in cfg:
        full = f"{prefix}{key}"
        value = cfg[key]
        if isinstance(value, DictConfig) and any(k.startswith(f"{full}.") for k in helps):
            lines.extend(option_lines(value, helps, prefix=f"{full}."))
            continue
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        lines.append(f"{full} = {value!r}\n      {helps.get(full, '')}")
    return lines


def group_options(group: str) -> list[str]:
    folder = files("rlvr.conf").joinpath(group)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def group_lines(command: str, overrides: list[str]) -> list[str]:
    """``group: chosen  (options: ...)`` for the config groups the composition picked (Hydra's runtime choices)."""
    choices = _compose_raw(command, overrides, with_hydra=True).hydra.runtime.choices
    lines = []
    for group, chosen in choices.items():
        if group.startswith("hydra/") or group.endswith("_schema"):
            continue
        lines.append(f"  {group} = {chosen}   (options: {', '.join(group_options(group))})")
    return lines


def command_help(command: str, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """The ``--help`` text of ``command`` with ``overrides`` applied; raises ConfigError on a bad override."""
    overrides = list(overrides)
    cfg = compose_config(command, overrides)
    given = f", given {' '.join(overrides)}" if overrides else ""
    return "\n".join([
        f"rlvr {command} [key=value ...] [--cfg job] [--multirun key=a,b ...]",
        "",
        f"Config groups{given} (pick another with group=option):",
        *group_lines(command, overrides),
        "",
        f"Options: the value each key will run with{given} (conf/{command}.yaml with its groups, experiment and "
        "preset applied), then what it trades off.",
        "Override any with key=value; `--cfg job` prints this config as YAML; `--multirun key=a,b` sweeps.",
        "",
        *option_lines(cfg, field_helps(SCHEMAS[command])),
    ])
