"""The leaf every config imports: ``opt``, a dataclass field with its help string (shown by ``--help``,
rlvr.config.help)."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from omegaconf import MISSING  # noqa: F401  (re-exported for configs that require a value)


def opt(default: Any = None, help: str = "", factory: Any = None) -> Any:  # noqa: A002 - mirrors argparse
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})
