"""Content fingerprints for run cards: model weights, tokenizers and the dataset rows a stage used.

A run card (rlvr.runs.provenance) identifies inputs by content, not by name: two folders called ``final/`` are the
same model only if their weights hash the same, and "gsm8k test" is the same data only if the rows used hash
the same. Hashes stream files in 1 MiB chunks, so a multi-GB model costs seconds and no memory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_CHUNK = 1 << 20


def _sha256_files(files: Sequence[Path], root: Path) -> tuple[str, int]:
    """One digest over (relative name, contents) of each file, streamed in 1 MiB chunks (models can be GBs)."""
    h, total = hashlib.sha256(), 0
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0")
        with f.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
                total += len(chunk)
        h.update(b"\0")
    return h.hexdigest(), total


def model_hash(path_or_model: Any, gguf_file: str | None = None) -> dict[str, Any] | None:
    """Content hash of a model's weights: ``{sha256, method, files, bytes}``; None for a hub id that is not local.

    A folder: its ``*.safetensors`` files (else ``*.bin``/``*.pt``/``*.gguf``), by name, streamed. A model object:
    its ``state_dict`` in sorted key order (name, dtype, shape, bytes). The two methods give different digests for
    the same weights, so ``method`` is part of the record; stages hash saved folders wherever one exists.
    """
    if path_or_model is None:
        return None
    if hasattr(path_or_model, "state_dict"):
        return _state_dict_hash(path_or_model)
    folder = Path(str(path_or_model)).expanduser()
    if folder.is_file():
        files, folder = [folder], folder.parent
    elif not folder.is_dir():
        return None
    elif gguf_file:
        files = [folder / gguf_file]
    else:
        files = sorted(folder.glob("*.safetensors"))
        files = files or sorted(f for f in folder.iterdir() if f.suffix in WEIGHT_SUFFIXES and f.is_file())
    if not files:
        return None
    digest, size = _sha256_files(files, folder)
    return {"sha256": digest, "method": "weight files", "files": [f.name for f in files], "bytes": size}


def _state_dict_hash(model: Any) -> dict[str, Any]:
    import torch

    h, total = hashlib.sha256(), 0
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\0".encode())
        # raw bytes via a uint8 view: works for bf16, which numpy cannot represent
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        h.update(data)
        total += len(data)
    return {"sha256": h.hexdigest(), "method": "state_dict", "files": [], "bytes": total}


def tokenizer_hash(folder: str | Path | None) -> str | None:
    folder = Path(folder).expanduser() if folder else None
    if folder is None or not folder.is_dir():
        return None
    files = sorted(f for f in folder.iterdir() if f.name.startswith(("tokenizer", "vocab", "merges", "special_tokens"))
                   or f.name == "chat_template.jinja")
    return _sha256_files(files, folder)[0] if files else None


def _canonical(row: Any) -> str:
    if hasattr(row, "prompt") and hasattr(row, "answer"):  # a rlvr.tasks Sample
        row = {"id": row.id, "prompt": row.prompt, "answer": row.answer, "verifiers": list(row.verifiers),
               "meta": dict(row.meta), "solution": row.solution}
    return json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)


def dataset_fingerprint(samples: Iterable[Any], *, source: str | None = None, split: str | None = None,
                        role: str | None = None) -> dict[str, Any]:
    """``{role, source, split, count, sha256}``; sha256 over the canonical JSON of every row used, in order."""
    h, count, first = hashlib.sha256(), 0, None
    for row in samples:
        first = row if first is None else first
        h.update(_canonical(row).encode() + b"\n")
        count += 1
    if split is None and first is not None and hasattr(first, "meta"):
        split = dict(first.meta).get("split")
    return {"role": role, "source": source, "split": split, "count": count, "sha256": h.hexdigest()}


def task_source(task: Any, split: str) -> str:
    """Where a task's split comes from: a file / hub id, or the synthetic generator's settings."""
    if task.name == "arith":
        a = task.cfg.arith
        return f"arith: synthetic generator (task.arith.seed={a.seed}, heldout_fraction={a.heldout_fraction})"
    try:
        return f"{task.name}: {task.source(split)}"
    except Exception as exc:  # noqa: BLE001 - provenance must not fail a finished stage
        return f"{task.name}: unknown source ({type(exc).__name__})"


def task_datasets(task: Any, splits: Mapping[str, int | None], role: str) -> list[dict[str, Any]]:
    """Fingerprints of ``task.samples(split, limit)`` for each split (re-generated: tasks are deterministic)."""
    out = []
    for split, limit in splits.items():
        try:
            out.append(dataset_fingerprint(task.samples(split, limit=limit), source=task_source(task, split),
                                           split=split, role=role))
        except Exception as exc:  # noqa: BLE001
            out.append({"role": role, "source": task_source(task, split), "split": split, "error": repr(exc)})
    return out
