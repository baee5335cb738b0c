"""The run directory (``RunDir``: every file and folder a stage writes, the done markers, the ONE checkpoint
lister) and, on top of it, each model of a run with its training step and cumulative train tokens.

``RunDir(path)`` knows the layout::

    config.yaml  metrics.jsonl  samples.jsonl  flagged.jsonl      resolved config, one row per step, completions
    checkpoints/step_N/        rlvr grpo (complete once it holds trainer_state.pt; step_N.tmp while written)
    checkpoints/checkpoint-N/  rlvr sft (TRL's; complete once it holds trainer_state.json)
    final/                     the stage's model + tokenizer; final/rlvr_<stage>_done.json marks it complete
    eval/  plots/              accuracy-vs-budget files and held-out evals; PNG plots

The evaluation and the scaling plots need, for every evaluated model, *where it sits on the training axis*: the
step and the number of tokens the optimizer had trained on by then. Both come from files the stages already write:

- ``rlvr grpo``: ``checkpoints/step_N/`` (with ``trainer_state.pt``), ``final/`` (step from
  ``final/rlvr_grpo_done.json`` or ``config.yaml`` ``grpo.max_steps``); train tokens = cumulative sum of the
  ``tokens`` column of ``metrics.jsonl`` (completion tokens in the policy-gradient loss that step);
- ``rlvr sft``: TRL's ``checkpoints/checkpoint-N/`` (with ``trainer_state.json``), ``final/`` (step from
  ``config.yaml`` ``sft.max_steps``); train tokens = TRL's ``num_tokens`` in ``trainer_state.json``'s log history
  (prompt + completion tokens seen), linearly extrapolated past the last logged step.

A run that started from another run's model (``config.yaml`` ``model.name_or_path`` = ``<other run>/final`` or one
of its checkpoints) adds that model's train tokens, so a GRPO run's compute axis includes its SFT stage. A model
folder outside any run has unknown step and tokens (None): it still gets evaluated, only the training-axis plots
leave it out. "Tokens" are counted as each stage defines them above; they are a compute proxy, not FLOPs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_GRPO_STEP = re.compile(r"^step_(\d+)$")
_TRL_STEP = re.compile(r"^checkpoint-(\d+)$")
GRPO_STATE_FILE = "trainer_state.pt"  # written last into a GRPO checkpoint (rlvr.train.checkpoint)
TRL_STATE_FILE = "trainer_state.json"  # written last into a TRL checkpoint
CHECKPOINT_KINDS = {"grpo": (_GRPO_STEP, GRPO_STATE_FILE), "sft": (_TRL_STEP, TRL_STATE_FILE)}


def checkpoint_step(folder: str | Path) -> int | None:
    """The step in a checkpoint folder's name (``step_N`` or ``checkpoint-N``), else None."""
    name = Path(folder).name
    m = _GRPO_STEP.match(name) or _TRL_STEP.match(name)
    return int(m.group(1)) if m else None


class RunDir:
    """Where a stage's files live under ``<output_dir>`` (see the module docstring). Paths only: nothing is
    created until a stage writes it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # the files and folders of the layout (module docstring), as read-only attributes
    config = property(lambda self: self.path / "config.yaml")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    samples = property(lambda self: self.path / "samples.jsonl")
    flagged = property(lambda self: self.path / "flagged.jsonl")
    checkpoints = property(lambda self: self.path / "checkpoints")
    final = property(lambda self: self.path / "final")
    eval = property(lambda self: self.path / "eval")
    plots = property(lambda self: self.path / "plots")

    def done_marker(self, stage: str) -> Path:
        """``final/rlvr_<stage>_done.json``: written last, so final/ is complete exactly when it exists."""
        return self.final / f"rlvr_{stage}_done.json"

    def read_done(self, stage: str) -> dict[str, Any] | None:
        """The done marker's contents (e.g. ``{"step": 100, ...}``), or None when the stage has not finished."""
        marker = self.done_marker(stage)
        if not marker.exists():
            return None
        try:
            return json.loads(marker.read_text())
        except json.JSONDecodeError:  # a torn write: the stage did not finish cleanly
            return None

    def step_checkpoint(self, step: int) -> Path:
        """A GRPO checkpoint's folder (``checkpoints/step_N``), whether or not it exists yet."""
        return self.checkpoints / f"step_{step}"

    def list_checkpoints(self, kind: str | None = None) -> list[tuple[int, Path]]:
        """Complete checkpoints as (step, folder), oldest first: ``kind`` "grpo" (``step_N``), "sft" (TRL's
        ``checkpoint-N``) or None (both). Complete = a model folder holding its state file, which both trainers
        write last; half-written folders (``step_N.tmp``, a TRL save cut short) are ignored."""
        kinds = [CHECKPOINT_KINDS[kind]] if kind else list(CHECKPOINT_KINDS.values())
        found = []
        for folder in self.checkpoints.iterdir() if self.checkpoints.is_dir() else []:
            for pattern, state_file in kinds:
                m = pattern.match(folder.name)
                if m and (folder / state_file).is_file() and _is_model(folder):
                    found.append((int(m.group(1)), folder))
        return sorted(found)

    def newest_checkpoint(self, kind: str | None = None) -> Path | None:
        found = self.list_checkpoints(kind)
        return found[-1][1] if found else None


@dataclass(frozen=True)
class Checkpoint:
    path: str | None  # model folder (None = model.name, e.g. the tiny model built from its config)
    label: str  # legend text: "step 1000", "sft1000/step 1000", or the folder name
    step: int | None = None  # training step of the run that produced it
    train_tokens: float | None = None  # cumulative train tokens up to `step` (incl. the base model's run)
    run_dir: str | None = None  # the run directory it belongs to

    @property
    def tag(self) -> str:
        """File-name-safe form of the label (budget_sweep_<tag>.json)."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "", self.label.replace("/", "_").replace(" ", ""))


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.yaml"
    if not path.exists():
        return {}
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    except Exception:  # noqa: BLE001 - a hand-edited or foreign config only loses the step information
        return {}


def _stage(run_dir: Path) -> str | None:
    cfg = _read_config(run_dir)
    return "grpo" if "grpo" in cfg else "sft" if "sft" in cfg else None


def _final_step(run_dir: Path) -> int | None:
    done = RunDir(run_dir).read_done("grpo")
    if done is not None:
        try:
            return int(done["step"])
        except (ValueError, KeyError, TypeError):
            pass
    cfg = _read_config(run_dir)
    stage = _stage(run_dir)
    steps = (cfg.get(stage) or {}).get("max_steps") if stage else None
    return int(steps) if isinstance(steps, int) else None


def _is_model(folder: Path) -> bool:
    """A folder ``from_pretrained`` loads: a model (config.json) or a LoRA adapter (adapter_config.json)."""
    return (folder / "config.json").exists() or (folder / "adapter_config.json").exists()


def list_run_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint of a GRPO or SFT run, by step: ``RunDir.list_checkpoints``."""
    return RunDir(run_dir).list_checkpoints()


def train_tokens_by_step(run_dir: str | Path) -> dict[int, float]:
    """Cumulative train tokens at each logged step of this run alone (see the module docstring)."""
    run_dir = Path(run_dir)
    from rlvr.runs.tracking import read_metrics

    metrics = RunDir(run_dir).metrics
    if _stage(run_dir) == "grpo" and metrics.exists():
        per_step: dict[int, float] = {}
        for row in read_metrics(metrics):  # a resumed run may repeat steps: the last row wins
            if isinstance(row.get("step"), int):
                per_step[row["step"]] = float(row.get("tokens") or 0.0)
        out, total = {0: 0.0}, 0.0
        for step in sorted(per_step):
            total += per_step[step]
            out[step] = total
        return out
    trl = RunDir(run_dir).newest_checkpoint("sft")
    if trl is not None:  # TRL: the newest trainer_state.json holds the whole log history
        state = json.loads((trl / TRL_STATE_FILE).read_text())
        out = {0: 0.0}
        for entry in state.get("log_history", []):
            if "num_tokens" in entry and "step" in entry:
                out[int(entry["step"])] = float(entry["num_tokens"])
        return out if len(out) > 1 else {}
    return {}


def tokens_at(table: dict[int, float], step: int | None) -> float | None:
    """Tokens at ``step``: exact, else interpolated between logged steps, else extrapolated at the last rate."""
    if step is None or not table:
        return None
    if step in table:
        return table[step]
    steps = sorted(table)
    below = [s for s in steps if s < step]
    above = [s for s in steps if s > step]
    if below and above:
        a, b = below[-1], above[0]
        return table[a] + (table[b] - table[a]) * (step - a) / (b - a)
    last = below[-1] if below else None
    if last:  # past the last log line: the run's average rate so far
        return table[last] * step / last
    return None


def _base_tokens(run_dir: Path, depth: int) -> float:
    """Train tokens of the model this run started from, when that model came from another run."""
    start = (_read_config(run_dir).get("model") or {}).get("name_or_path")
    if not start or depth > 4:
        return 0.0
    base = describe_model(start, _depth=depth + 1)
    return base.train_tokens or 0.0


def describe_model(path: str | Path, relative_to: str | Path | None = None, _depth: int = 0) -> Checkpoint:
    """A model folder as a Checkpoint: its run, step and train tokens when it lies in a run directory.

    ``relative_to``: the output run directory; a checkpoint of another run gets that run's name in its label.
    """
    folder = Path(path).expanduser()
    run_dir, step = None, None
    if folder.name == "final" and (folder.parent / "config.yaml").exists():
        run_dir = folder.parent
        step = _final_step(run_dir)
    elif folder.parent.name == "checkpoints" and (folder.parent.parent / "config.yaml").exists():
        run_dir = folder.parent.parent
        step = checkpoint_step(folder)
    elif (folder / "config.yaml").exists() and (folder / "final").is_dir():  # a run directory itself
        return describe_model(folder / "final", relative_to, _depth)
    if run_dir is None or step is None:
        return Checkpoint(str(folder), folder.name or str(folder))
    own = tokens_at(train_tokens_by_step(run_dir), step)
    tokens = None if own is None else own + _base_tokens(run_dir, _depth)
    same_run = relative_to is not None and Path(relative_to).resolve() == run_dir.resolve()
    label = f"step {step}" if same_run else f"{run_dir.name}/step {step}"
    return Checkpoint(str(folder), label, step, tokens, str(run_dir))


def run_checkpoints(run_dir: str | Path, which: str = "final") -> list[Checkpoint]:
    """The models of a run to evaluate: ``final``, ``newest``, or ``all`` (the starting model as step 0 for a run
    that started from a local folder, every checkpoint, and final; one per step, final preferred)."""
    run_dir = Path(run_dir)
    if which not in ("final", "all", "newest"):
        raise ValueError(f"eval.checkpoints must be final, all or newest, got {which!r}")
    final = RunDir(run_dir).final
    by_step: dict[int | None, Checkpoint] = {}
    for step, folder in RunDir(run_dir).list_checkpoints():
        by_step[step] = describe_model(folder, relative_to=run_dir)
    if _is_model(final):
        ckpt = describe_model(final, relative_to=run_dir)
        by_step[ckpt.step] = ckpt
    if not by_step:
        raise FileNotFoundError(f"{run_dir} has no final/ model and no checkpoints/ to evaluate")
    if which == "final":
        if not _is_model(final):
            raise FileNotFoundError(f"{final} is not a model (the run has not finished); use eval.checkpoints=newest "
                                    "or eval.checkpoints=all")
        return [describe_model(final, relative_to=run_dir)]
    ordered = sorted(by_step.values(), key=lambda c: -1 if c.step is None else c.step)
    if which == "newest":
        return ordered[-1:]
    start = (_read_config(run_dir).get("model") or {}).get("name_or_path")
    if start and _is_model(Path(start).expanduser()) and 0 not in by_step:
        base = describe_model(start)
        ordered.insert(0, Checkpoint(base.path, "step 0", 0, base.train_tokens or 0.0, str(run_dir)))
    return ordered
