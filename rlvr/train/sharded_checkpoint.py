"""Sharded GRPO checkpoints (``grpo.sharding=fsdp``): ``torch.distributed.checkpoint`` for the model and AdamW
state, beside the same files an unsharded checkpoint has (``rlvr.train.checkpoint``).

``checkpoints/step_N/`` of an FSDP run holds

    dcp/                                  model + optimizer state, one file per rank plus metadata (DCP): it
                                          loads at ANY world size, also into one process without a process group
    config.json, model.safetensors, ...   the whole policy, saved by rank 0 from its unsharded rollout copy, so
                                          the folder still loads as a model (``rlvr eval eval.checkpoints=all``)
    tokenizer files, trainer_state.pt     as unsharded: scheduler, every rank's RNG states, data position,
                                          monitors; ``optimizer`` is None there (it lives in dcp/)

Atomic as unsharded checkpoints are: every rank writes into ``step_N.tmp/dcp`` (a shared filesystem across
nodes), and rank 0 renames the folder to ``step_N`` only after every rank finished and its own files are
written; a kill mid-save leaves ``.tmp`` (removed by the next save) and the previous checkpoint.

Resume (``load_sharded_state``) fills whatever model it is given: FSDP shards at the same or another world size,
or a plain module in a single process (``grpo.sharding=none``). Going the other way (an unsharded checkpoint into
an FSDP run) is refused with an error: its optimizer state is keyed by parameter index, not by name.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

DCP_DIR = "dcp"


def has_sharded_state(folder: str | Path) -> bool:
    return (Path(folder) / DCP_DIR / ".metadata").exists()


def _options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=False, cpu_offload=False)


def _state(model: Any, optimizer: Any) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, _bare(optimizer), options=_options())
    return {"model": model_state, "optim": optim_state}


def _bare(optimizer: Any) -> Any:
    """The torch optimizer inside accelerate's wrapper (DCP reads its param_groups and state)."""
    return getattr(optimizer, "optimizer", optimizer)


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def save_sharded_checkpoint(output_dir: str | Path, state: Any, model: Any, policy: Any, tokenizer: Any,
                            optimizer: Any, scheduler: Any, *, main: bool, keep: int = 2,
                            rng_states: list[dict[str, Any]] | None = None) -> Path:
    """Write ``checkpoints/step_<state.step>`` (a collective: every rank calls it); returns the folder.

    ``model``: the sharded policy; ``policy``: rank 0's unsharded copy (saved as the folder's model files).
    """
    import torch
    import torch.distributed.checkpoint as dcp

    from rlvr.runs.layout import GRPO_STATE_FILE, RunDir
    from rlvr.train.checkpoint import rng_state, save_model_files

    run = RunDir(output_dir)
    final = run.step_checkpoint(state.step)
    tmp = final.with_name(final.name + ".tmp")
    if main:
        run.checkpoints.mkdir(parents=True, exist_ok=True)
        if tmp.exists():  # left by a run killed mid-save
            shutil.rmtree(tmp)
        tmp.mkdir()
    _barrier()  # the folder exists (and is empty) before any rank writes into it
    dcp.save(_state(model, optimizer), checkpoint_id=str(tmp / DCP_DIR))
    if main:
        save_model_files(policy, tmp)
        tokenizer.save_pretrained(tmp)
        torch.save({"step": state.step, "data_position": state.data_position, "optimizer": None,
                    "scheduler": scheduler.state_dict(), "rng": rng_state(), "rng_per_rank": rng_states,
                    "monitors": state.monitors, "sharded": True}, tmp / GRPO_STATE_FILE)
    _barrier()  # every rank's shard is on disk before the folder counts as a checkpoint
    if main:
        if final.exists():  # a re-save of the same step (after a resume from it): replace it
            shutil.rmtree(final)
        tmp.rename(final)
        for _, old in run.list_checkpoints("grpo")[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def load_sharded_state(folder: str | Path, model: Any, optimizer: Any) -> None:
    """Load ``folder``'s dcp/ model and optimizer state into ``model`` (sharded or not) and ``optimizer``, in
    place; a collective when a process group exists."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    state = _state(model, optimizer)
    dcp.load(state, checkpoint_id=str(Path(folder) / DCP_DIR))
    set_state_dict(model, _bare(optimizer), model_state_dict=state["model"], optim_state_dict=state["optim"],
                   options=_options())
