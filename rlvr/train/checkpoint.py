"""GRPO checkpoints: everything a killed run needs to continue as if it had never stopped.

``<output_dir>/checkpoints/step_N/`` holds

    config.json, model.safetensors, ...   the policy (``save_pretrained``: the folder loads as a model)
    tokenizer.json, ...                   the tokenizer (so ``model.name_or_path=.../step_N`` just works)
    trainer_state.pt                      optimizer, LR scheduler, RNG states (python, numpy, torch, cuda),
                                          data position, step, the reward-hacking monitors' state (their
                                          baselines and history); with several processes, every rank's RNG states

A checkpoint is written into ``step_N.tmp`` and renamed to ``step_N`` only when complete: a rename within one
directory is atomic, so a kill mid-save leaves a ``.tmp`` folder (ignored, removed by the next save) and the
previous checkpoint intact. Only ``step_<int>`` folders with a ``trainer_state.pt`` count as checkpoints
(``rlvr.runs.layout.RunDir.list_checkpoints``, the one lister).

RNG states are restored for completeness (anything that draws from the global generators keeps its stream),
but the trainer does not rely on them for its own draws: rollout seeds are derived from (seed, step, round) and
the data order from (seed, epoch), so a resumed run repeats the same samples even if a library draws random
numbers behind its back.

Several processes (DDP): rank 0 writes the checkpoint; optimizer and scheduler states and the data position
are the same on every rank, the RNG states are not, so rank 0 stores each rank's (``rng_states``) and a resumed
rank k restores entry k (rank 0's when the checkpoint came from fewer processes).
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlvr.runs.layout import GRPO_STATE_FILE as STATE_FILE
from rlvr.runs.layout import RunDir


@dataclass
class TrainerState:
    step: int  # optimizer-loop steps completed
    data_position: int  # prompts consumed from the shuffled train stream
    monitors: dict[str, Any] | None = None  # RewardHackingMonitors.state_dict(): baselines and trip history


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_model_files(model: Any, folder: str | Path) -> None:
    """The policy's files of a checkpoint: the whole model, or a LoRA model's adapter (+ trained token rows)."""
    from rlvr.model_lora import is_lora, save_adapter

    if is_lora(model):
        save_adapter(model, folder)
    else:
        model.save_pretrained(folder, safe_serialization=True)


def save_checkpoint(output_dir: str | Path, state: TrainerState, model: Any, tokenizer: Any, optimizer: Any,
                    scheduler: Any, keep: int = 2, rng_states: list[dict[str, Any]] | None = None) -> Path:
    """Write ``checkpoints/step_<state.step>`` atomically, then delete all but the newest ``keep`` checkpoints.

    ``rng_states``: every rank's ``rng_state()`` in rank order (multi-process runs); None = this process only.
    """
    run = RunDir(output_dir)
    final = run.step_checkpoint(state.step)
    tmp = final.with_name(final.name + ".tmp")
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    if tmp.exists():  # left by a run killed mid-save
        shutil.rmtree(tmp)
    save_model_files(model, tmp)
    tokenizer.save_pretrained(tmp)
    torch.save({
        "step": state.step,
        "data_position": state.data_position,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "rng_per_rank": rng_states,
        "monitors": state.monitors,
    }, tmp / STATE_FILE)
    if final.exists():  # a re-save of the same step (e.g. after a resume from it): replace it
        shutil.rmtree(final)
    tmp.rename(final)
    for _, old in run.list_checkpoints("grpo")[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_trainer_state(folder: str | Path, optimizer: Any, scheduler: Any, rank: int = 0) -> TrainerState:
    """Restore optimizer, scheduler and (this ``rank``'s) RNG states from ``folder``; the caller loads the weights.
    ``optimizer=None``: already restored (a sharded checkpoint's lives in ``dcp/``, ``rlvr.train.sharded_checkpoint``)."""
    blob = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)
    if optimizer is not None:
        optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    per_rank = blob.get("rng_per_rank") or [blob["rng"]]
    set_rng_state(per_rank[rank] if rank < len(per_rank) else blob["rng"])
    return TrainerState(step=int(blob["step"]), data_position=int(blob["data_position"]),
                        monitors=blob.get("monitors"))


def load_weights(model: Any, folder: str | Path) -> None:
    """Copy the policy weights saved in ``folder`` into ``model`` (same architecture), in place.

    In place (rather than ``from_pretrained``) so the model object the optimizer and accelerator hold stays the
    same. ``save_pretrained`` drops tied weights (lm_head = embed_tokens), hence ``strict=False`` plus a check
    that only tied parameters were missing.
    """
    from safetensors.torch import load_file

    from rlvr.model_lora import is_lora, load_adapter_weights

    if is_lora(model):  # a LoRA checkpoint holds the adapter (+ trained token rows), not the frozen base
        load_adapter_weights(model, folder)
        return
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in checkpoint {folder}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    tied |= {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    really_missing = [k for k in missing if k not in tied]
    if really_missing or unexpected:
        raise RuntimeError(f"checkpoint {folder} does not match the model: missing {really_missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
    if hasattr(model, "tie_weights"):
        model.tie_weights()


def truncate_jsonl(path: str | Path, keep_until_step: int | None) -> None:
    """Keep rows with ``step <= keep_until_step`` (all dropped when None): a resumed run rewrites later steps.

    Torn last lines (a SIGKILL mid-write) are dropped too.
    """
    import json

    path = Path(path)
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if keep_until_step is not None and row.get("step", 0) <= keep_until_step:
            kept.append(line + "\n")
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(kept))
    tmp.replace(path)
