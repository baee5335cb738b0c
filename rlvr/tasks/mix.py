"""``mix``: several tasks in one batch, each row scored by its own task's verifiers.

    rlvr grpo task=mix                        # conf/task/mix.yaml: arith (math + format) + mbpp (code + format)
    rlvr grpo task=mix 'task.mix=[arith,{name:gsm8k,weight:2}]'

``task.mix`` lists the components: a task name, or a mapping with ``name`` and optionally ``weight`` (its share of
the ``train`` split, default 1), ``splits`` (``{mix split: component split}``, for a component whose splits are
named otherwise, e.g. ``{train: test}`` for a benchmark shipped as one file) and any ``task.*`` field for that
component alone (``verifiers``, ``path``, ``system_prompt``, ``arith``, ...). Other ``task.*`` fields (response
format, system prompt, data) are inherited from the mix's own config; ``path``/``hub_id`` are not.

Per-row verifier choice needs nothing special: a ``Sample`` carries its verifier specs, and the reward runtime
and the GRPO scorer (``rlvr.rewards.scoring``) score each row with its own, so math, code and format verifiers share
a batch. Each row's ``meta["task"]`` names its component; ``rlvr.rewards.scoring.verifier_metrics`` turns that into
``task/<name>/accuracy|reward|frac`` per step.

Splits:
- ``train``: the components' train splits interleaved by weight (a seeded draw per row, so the first N rows of the
  split already have the weighted proportions); a component with fewer rows than its share is cycled;
- ``test``: the components' held-out splits interleaved evenly (the first N rows are balanced);
- ``<component>/<split>``: one component's own split, e.g. ``arith/test_ops2`` or ``mbpp/test``; the default
  held-out splits of a mix are each component's own (``default_eval_splits``), so evals report per task.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields as dataclass_fields, replace
from typing import Any

from omegaconf import OmegaConf

from rlvr.tasks.base import Sample, Task
from rlvr.tasks.registry import TASKS, build_task

_COMPONENT_KEYS = {"weight", "splits"}  # mix-only keys of a component spec; the rest are task.* fields


@dataclass
class Component:
    name: str
    weight: float
    task: Task
    splits: dict[str, str]  # mix split -> this component's split

    def split_for(self, split: str) -> str:
        if split in self.splits:
            return self.splits[split]
        if split == "test":
            return self.task.default_eval_splits()[0]
        return split


def _task_fields() -> set[str]:
    from rlvr.config import TaskConfig

    return {f.name for f in dataclass_fields(TaskConfig)}


def component_specs(mix: Any) -> list[dict[str, Any]]:
    """``task.mix`` entries as plain dicts with at least ``name``; raises ValueError on a malformed entry."""
    specs = []
    for i, entry in enumerate(mix or []):
        if OmegaConf.is_config(entry):
            entry = OmegaConf.to_container(entry, resolve=True)
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"task.mix[{i}] must be a task name or a mapping with a 'name', got {entry!r}")
        specs.append(dict(entry))
    return specs


def validate_mix(task_cfg: Any) -> list[tuple[str, str, str]]:
    """(key, what, fix) for every problem of a ``task=mix`` config; empty when fine (or not a mix)."""
    if task_cfg.name != "mix":
        return []
    try:
        specs = component_specs(task_cfg.mix)
    except ValueError as exc:
        return [("task.mix", str(exc), "write task.mix=[arith,{name:mbpp,weight:1}]")]
    if not specs:
        return [("task.mix", "is empty: a mix needs component tasks", "e.g. task.mix=[arith,mbpp] (or task=mix for "
                 "conf/task/mix.yaml)")]
    problems = []
    names = [s["name"] for s in specs]
    for i, spec in enumerate(specs):
        name = spec["name"]
        if name == "mix" or name not in TASKS:
            problems.append((f"task.mix[{i}].name", f"unknown or nested task {name!r}",
                             f"use one of {', '.join(n for n in sorted(TASKS) if n != 'mix')}"))
        weight = spec.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            problems.append((f"task.mix[{i}].weight", f"must be a number > 0, got {weight!r}", "e.g. weight: 1.0"))
        splits = spec.get("splits", {})
        if not isinstance(splits, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in splits.items()):
            problems.append((f"task.mix[{i}].splits", f"must map mix split -> component split, got {splits!r}",
                             "e.g. splits: {train: test}"))
        unknown = set(spec) - _COMPONENT_KEYS - _task_fields()
        if unknown:
            problems.append((f"task.mix[{i}]", f"unknown key(s) {sorted(unknown)}",
                             "use weight, splits, or a task.* field (rlvr tasks --help)"))
    if len(set(names)) != len(names):
        problems.append(("task.mix", f"a task appears twice in {names}", "list each task once; use weight to mix more"))
    return problems


class MixTask(Task):
    name = "mix"
    description = "several tasks in one batch (task.mix=[arith,mbpp]), each row scored by its own task's verifiers"

    def __init__(self, cfg: Any, data_dir: str | None = None):
        super().__init__(cfg, data_dir)
        problems = validate_mix(cfg)
        if problems and list(cfg.mix or []):  # an empty mix can still be listed (`rlvr tasks`); samples() says why
            raise ValueError("; ".join(f"{k}: {w}. Fix: {f}" for k, w, f in problems))
        from rlvr.config import TaskConfig

        base = OmegaConf.structured(TaskConfig)  # typed: a misspelt component field fails here, not later
        base = OmegaConf.merge(base, OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg)
                               else asdict(cfg))
        base.mix, base.path, base.hub_id, base.hub_config, base.verifiers = [], None, None, None, []
        self.components: list[Component] = []
        for spec in component_specs(cfg.mix):
            fields = {k: v for k, v in spec.items() if k not in _COMPONENT_KEYS}
            comp_cfg = OmegaConf.merge(base, fields)
            if not comp_cfg.verifiers and cfg.verifiers:  # the mix's verifiers apply to components naming none
                comp_cfg.verifiers = list(cfg.verifiers)
            self.components.append(Component(spec["name"], float(spec.get("weight", 1.0)),
                                              build_task(comp_cfg, data_dir=data_dir), dict(spec.get("splits", {}))))

    @property
    def splits(self) -> list[str]:
        own = [f"{c.name}/{s}" for c in self.components for s in c.task.splits]
        return ["train", "test", *own]

    def default_eval_splits(self) -> list[str]:
        return [f"{c.name}/{s}" for c in self.components for s in c.task.default_eval_splits()]

    def _tagged(self, comp: Component, samples: list[Sample]) -> list[Sample]:
        return [replace(s, meta={**s.meta, "task": comp.name}) for s in samples]

    def samples(self, split: str, limit: int | None = None) -> list[Sample]:
        if not self.components:
            raise ValueError("task.mix is empty: a mix needs component tasks. Fix: task=mix (conf/task/mix.yaml) or "
                             "task.mix=[arith,mbpp]")
        self.check_split(split)
        if "/" in split:
            name, own = split.split("/", 1)
            comp = next(c for c in self.components if c.name == name)
            return self._tagged(comp, comp.task.samples(own, limit=limit))
        parts = [self._tagged(c, c.task.samples(c.split_for(split), limit=limit)) for c in self.components]
        if any(not p for p in parts):
            empty = [c.name for c, p in zip(self.components, parts) if not p]
            raise ValueError(f"mix split {split!r}: component(s) {empty} gave no samples")
        total = limit if limit is not None else sum(len(p) for p in parts)
        taken = [0] * len(parts)
        out = []
        if split == "train":  # weighted, seeded: the first N rows already have the weighted proportions
            rng = random.Random("mix/" + "/".join(c.name for c in self.components))
            weights = [c.weight for c in self.components]
            for _ in range(total):
                j = rng.choices(range(len(parts)), weights)[0]
                out.append(parts[j][taken[j] % len(parts[j])])
                taken[j] += 1
        else:  # held out: evenly interleaved, never repeated
            for i in range(max(len(p) for p in parts)):
                out += [p[i] for p in parts if i < len(p)]
            out = out[:total]
        return out
