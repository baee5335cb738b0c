"""The leaf every config imports: ``opt`` (a dataclass field with its help string) and ``describe``."""

from __future__ import annotations

from dataclasses import MISSING as MISSING_FACTORY
from dataclasses import field, fields, is_dataclass
from typing import Any

from omegaconf import MISSING  # noqa: F401  (re-exported for configs that require a value)


def opt(default: Any = None, help: str = "", factory: Any = None) -> Any:  # noqa: A002 - mirrors argparse
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})



def describe(schema: Any, prefix: str = "") -> list[str]:
    """``key = default  # help`` lines for every field, nested dataclasses flattened. ``schema``: a dataclass, or an
    instance whose values are the defaults (a section whose factory sets other defaults than its class's)."""
    lines = []
    for f in fields(schema):
        key = f"{prefix}{f.name}"
        if not isinstance(schema, type):
            default = getattr(schema, f.name)
        else:
            default = f.default_factory() if f.default_factory is not MISSING_FACTORY else f.default
        if is_dataclass(default):
            lines.extend(describe(default, prefix=f"{key}."))
        else:
            lines.append(f"{key} = {default!r}\n      {f.metadata.get('help', '')}")
    return lines


