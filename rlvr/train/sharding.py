"""How ``rlvr grpo`` spreads the policy over processes (``grpo.sharding``): none, DDP replicas, or FSDP2 shards.

    torchrun --nproc_per_node 8 -m rlvr.cli grpo grpo.sharding=fsdp ...            # 8 GPUs, NCCL
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 -m rlvr.cli grpo grpo.sharding=fsdp ...

``fsdp`` applies ``torch.distributed.fsdp.fully_shard`` (FSDP2) to every decoder layer and then to the root, on a
1-D device mesh over the launcher's world (cpu/gloo here, cuda/nccl on GPUs): each process holds 1/world of the
parameters, gradients and AdamW state; a layer's full weights exist only while it runs (all-gathered before its
forward and again before its backward, gradients reduce-scattered after it). It is called directly rather than
through accelerate's FSDP plugin, which accelerate 1.15 does not apply on CPU (it falls back to DDP); this is the
code path the GPU run takes too.

What stays the same as under DDP (``rlvr.train.grpo``, "Processes"): the data split, the joint dynamic-sampling
stop, the idle rank's zero-gradient group, the global loss normalisers and the whole-batch metrics. FSDP2 averages
the reduce-scattered gradients over ranks as DDP averages its all-reduced ones, so the same loss gives the same
update. What differs:

- Every forward and backward is a collective, so every rank runs the same number of micro-batches: a rank with
  fewer repeats its last one with the loss multiplied by 0 (``equal_chunk_count``), and gradients are
  reduce-scattered after every micro-batch (no ``no_sync``: accumulating unsharded gradients would need the full
  gradient memory FSDP exists to avoid).
- The rollout engine and the evals need whole weights on one process. Each rank keeps an unsharded, frozen copy
  of the policy (``Learner.policy``: the HF engine samples from it, the held-out eval reads it, ``final/`` is
  saved from it) that ``refresh_policy`` refills after every update by streaming the shards parameter by
  parameter (one all-gather per tensor: the peak is one full tensor beyond the copy, never the whole model a
  second time). The copy costs the weights once per device, no gradients or optimizer state; a colocated vLLM
  engine holds its own copy besides (the engine's weights are synced from this one).
- Checkpoints are sharded (``rlvr.train.sharded_checkpoint``: ``torch.distributed.checkpoint``, any world size).
- Mixed precision (``grpo.mixed_precision=bf16``) is FSDP2's ``MixedPrecisionPolicy``: bf16 parameters in the
  forward and backward, gradients reduced in fp32, fp32 master weights and optimizer state.

A single process may use ``fsdp`` too (e.g. ``grpo.fsdp_cpu_offload=true`` to fit a model on one GPU): it gets a
one-rank process group of its own (an in-memory store, no network).
"""

from __future__ import annotations

from typing import Any

import torch

SHARDINGS = ("auto", "none", "ddp", "fsdp")


def resolve_sharding(requested: str, world: int) -> str:
    """``grpo.sharding`` for a run of ``world`` processes: auto -> ddp with several, else none."""
    if requested not in SHARDINGS:
        raise ValueError(f"grpo.sharding={requested!r}: use one of {', '.join(SHARDINGS)}")
    if requested == "auto":
        return "ddp" if world > 1 else "none"
    if requested == "none" and world > 1:
        raise ValueError(f"grpo.sharding=none with {world} processes: every process would train a model of its own "
                         "into the same folder; use grpo.sharding=ddp (replicas) or fsdp (shards), or launch one "
                         "process")
    return requested


def ensure_process_group(device_type: str) -> None:
    """A one-rank process group for a single-process ``fsdp`` run (FSDP2 needs one; there is no launcher)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)


def decoder_layers(model: Any) -> list[torch.nn.Module]:
    """The repeated blocks to shard one by one: the modules whose class the model names as not to be split
    (transformers' ``_no_split_modules``, e.g. Qwen2DecoderLayer); a model without the attribute is sharded at
    the root only, which still shards but all-gathers the whole model at once."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    base = getattr(model, "get_base_model", lambda: model)()  # a peft wrapper names them on the base model
    names |= set(getattr(base, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def mixed_precision_policy(mixed_precision: str) -> Any:
    """FSDP2's policy for ``grpo.mixed_precision``: bf16/fp16 compute with fp32 gradient reduction; None = fp32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if mixed_precision not in dtypes:
        return None
    return MixedPrecisionPolicy(param_dtype=dtypes[mixed_precision], reduce_dtype=torch.float32)


def shard_model(model: torch.nn.Module, device_type: str, *, mixed_precision: str = "no",
                cpu_offload: bool = False) -> torch.nn.Module:
    """``fully_shard`` every decoder layer, then the root (embeddings, final norm, head: tied weights stay in one
    group), on a mesh over every process. In place: the parameters become DTensor shards; build the optimizer
    after this."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

    mesh = init_device_mesh(device_type, (dist.get_world_size(),))
    kwargs: dict[str, Any] = {"mesh": mesh}
    policy = mixed_precision_policy(mixed_precision)
    if policy is not None:
        kwargs["mp_policy"] = policy
    if cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    return model


def is_sharded(model: Any) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_tensor(t: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """The whole tensor behind ``t`` (an all-gather, a collective, when ``t`` is a DTensor shard); ``device``: where
    to gather (a CPU-offloaded shard is gathered on the accelerator)."""
    from torch.distributed.tensor import DTensor

    if isinstance(t, DTensor):
        return (t.to(device) if device is not None and t.device != device else t).full_tensor()
    return t


@torch.no_grad()
def refresh_full_copy(sharded: torch.nn.Module, copy: torch.nn.Module, device: torch.device | None = None) -> int:
    """Copy ``sharded``'s weights into the unsharded ``copy`` (same architecture), one tensor at a time; a
    collective: every rank calls it. Returns the number of tensors copied. Raises if the two differ in names or
    shapes (a copy that silently missed a tensor would serve stale weights)."""
    targets = dict(copy.named_parameters())
    sources = list(sharded.named_parameters())
    if [n for n, _ in sources] != list(targets):
        missing = sorted(set(targets) ^ {n for n, _ in sources})[:5]
        raise RuntimeError(f"the rollout copy's parameters differ from the sharded policy's (e.g. {missing})")
    for name, p in sources:
        whole = full_tensor(p, device)
        target = targets[name]
        if whole.shape != target.shape:
            raise RuntimeError(f"{name}: gathered shape {tuple(whole.shape)} != the copy's {tuple(target.shape)}")
        target.copy_(whole)
    return len(sources)


def equal_chunk_count(n_local: int, accelerator: Any) -> int:
    """The most micro-batches any rank runs this step (a collective); every rank pads to it under FSDP."""
    import torch.distributed as dist

    if accelerator.num_processes == 1:
        return n_local
    count = torch.tensor([n_local], dtype=torch.long, device=accelerator.device)  # [1]
    dist.all_reduce(count, op=dist.ReduceOp.MAX)
    return int(count.item())


def to_float(value: Any) -> float:
    """A scalar that may be a DTensor (e.g. the gradient norm of sharded gradients) as a Python float."""
    return float(full_tensor(value) if isinstance(value, torch.Tensor) else value)
