"""Metrics sinks: ``metrics.jsonl`` always (one JSON object per step), Weights & Biases when enabled.

wandb runs offline unless ``logger.mode=online``: nothing in the project needs a network. Lines are flushed per
write so a run killed with SIGKILL keeps every metric of the steps it completed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Tracker:
    def __init__(self, output_dir: str | Path, logger_cfg: Any, run_config: DictConfig | None = None,
                 job_type: str = "train", name: str | None = None, keep_until_step: int | None = None,
                 metrics_file: str | None = "metrics.jsonl"):
        """``keep_until_step``: rows of an earlier attempt up to this step are kept (a resume from that step's
        checkpoint); later ones are dropped, since the resumed run logs them again. None keeps nothing.
        ``metrics_file=None``: wandb only, no jsonl — for stages that write their own files into a run directory
        whose metrics.jsonl belongs to training (``rlvr eval``, ``rlvr plot``)."""
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.output_dir / metrics_file if metrics_file else None
        self._file = None
        if self.metrics_path is not None:
            self._truncate(keep_until_step)
            self._file = self.metrics_path.open("a", buffering=1)
        self.wandb_run = None
        if logger_cfg.backend == "wandb" and logger_cfg.mode != "disabled":
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            self.wandb_run = wandb.init(
                project=logger_cfg.project, entity=logger_cfg.entity, mode=logger_cfg.mode,
                dir=str(self.output_dir), job_type=job_type, name=name or self.output_dir.name,
                tags=list(logger_cfg.tags),
                config=OmegaConf.to_container(run_config, resolve=True) if run_config is not None else None,
                resume="allow", id=_stable_run_id(self.output_dir, job_type),
            )

    def _truncate(self, keep_until_step: int | None) -> None:
        if not self.metrics_path.exists():
            return
        kept = [] if keep_until_step is None else [
            row for row in read_metrics(self.metrics_path) if row.get("step", 0) <= keep_until_step
        ]
        tmp = self.metrics_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(row) + "\n" for row in kept))
        tmp.replace(self.metrics_path)

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        row = {"step": int(step)} | {k: _jsonable(v) for k, v in metrics.items()}
        if self._file is not None:
            self._file.write(json.dumps(row) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in row.items() if k != "step" and v is not None}, step=int(step))

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({key: wandb.Table(columns=columns, data=rows)})

    def summary(self, values: Mapping[str, Any]) -> None:
        if self.wandb_run is not None:
            self.wandb_run.summary.update(dict(values))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def _stable_run_id(output_dir: Path, job_type: str) -> str:
    """Same run directory + stage -> same wandb id, so a resumed stage continues its wandb run."""
    import hashlib

    return hashlib.sha1(f"{output_dir.resolve()}::{job_type}".encode()).hexdigest()[:16]


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl; a torn last line from a killed process is skipped."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
