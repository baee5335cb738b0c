"""Load dataset rows from a local file/folder or a Hugging Face dataset id, through ``datasets``.

Resolution order for a task's source: an explicit ``task.path`` (file, folder or hub id), else the task's
default file inside ``data_dir`` when that folder holds it, else the task's default hub id. Every failure
becomes a ``DataSourceError`` that says what was tried and how to fix it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def looks_like_local_path(source: str) -> bool:
    """A path rather than a hub id ("org/name"): starts like a path, has more than one slash, or ends in a data
    file suffix."""
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or Path(source).suffix.lower() in LOCAL_FORMATS


class DataSourceError(ValueError):
    """A dataset could not be found or read."""


def resolve_source(path: str | None, data_dir: str | None, default_file: str | None, hub_id: str | None) -> str:
    if path:
        return path
    if data_dir and default_file and (Path(data_dir) / default_file).exists():
        return str(Path(data_dir) / default_file)
    if hub_id:
        return hub_id
    raise DataSourceError(
        "no data source: set task.path to a local json/jsonl/parquet/csv file, a folder, or a Hugging Face "
        "dataset id"
    )


def load_rows(source: str, split: str = "train", hub_config: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of ``source`` as plain dicts; ``split`` applies to hub ids and folders (a single file is its rows)."""
    import datasets

    datasets.disable_progress_bars()
    local = Path(source).expanduser()
    try:
        if local.is_file():
            builder = LOCAL_FORMATS.get("".join(local.suffixes[-1:]).lower())
            if builder is None:
                raise DataSourceError(
                    f"{source}: unsupported file type {local.suffix!r}; use one of {sorted(LOCAL_FORMATS)}"
                )
            ds = datasets.load_dataset(builder, data_files=str(local), split="train")
        elif local.is_dir():
            if (local / "dataset_info.json").exists() or (local / "state.json").exists():
                loaded = datasets.load_from_disk(str(local))
                ds = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
            else:
                ds = datasets.load_dataset(str(local), split=split)
        elif looks_like_local_path(source):
            raise DataSourceError(f"{source}: no such file or folder")
        else:
            ds = datasets.load_dataset(source, hub_config, split=split)
    except DataSourceError:
        raise
    except Exception as exc:  # datasets raises many types; all mean "this source is unusable"
        hint = (
            "check the path" if local.exists() or looks_like_local_path(source)
            else "this looks like a hub id: it needs network access (or set HF_DATASETS_OFFLINE=0), or download "
            "the dataset and point task.path at the local file"
        )
        raise DataSourceError(f"could not load {source!r} (split {split!r}): {type(exc).__name__}: {exc}. Fix: {hint}") from exc
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds.to_list()


def require_columns(rows: list[dict[str, Any]], columns: list[str], source: str) -> None:
    if not rows:
        raise DataSourceError(f"{source}: the dataset is empty")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise DataSourceError(
            f"{source}: missing column(s) {missing}; available: {sorted(rows[0])}. Fix: set the task's column "
            "mapping (task.prompt_column / task.answer_column / task.solution_column)"
        )
