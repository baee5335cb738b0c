"""Memory per device of a GRPO run, estimated from the model's shape alone (no weights, no torch): ``rlvr plan``.

    from rlvr.train.memory_plan import Setup, estimate, load_shape
    plan = estimate(load_shape("qwen2.5-7b"), Setup(sharding="fsdp", devices=8, mixed_precision="bf16"))
    plan.total_bytes, plan.verdict                        # rlvr.train.plan_cli prints it as a table

What one device holds, as ``rlvr grpo`` runs (rlvr.train.grpo_steps, rlvr.train.sharding), in three phases:

- always: weights (model.dtype; LoRA: the frozen base plus fp32 adapters), gradients of what trains (kept
  between micro-batches and steps: ``zero_grad(set_to_none=True)`` runs at the next update's start, and from a
  step's second micro-batch on they are live during every forward), AdamW's two states (torch keeps them in the
  parameter's dtype: fp32 for fp32 master weights), the KL reference (``algo.kl_beta > 0``: a second copy of
  the weights, sharded like the policy under fsdp; with LoRA the reference is the base with the adapters
  disabled, no copy), under fsdp the unsharded frozen copy that sampling, evals and ``final/`` read, and a
  colocated vLLM engine's share (``gpu_memory_utilization`` x the device: its weight copy and KV cache).
- update (one micro-batch's forward and backward): activations saved for the backward, the logits, and the
  parameters as the matmuls see them (bf16 autocast keeps a bf16 cast of every weight until the backward; FSDP2
  all-gathers ~2 layers at a time) plus the gradient communication buffers (DDP's buckets, FSDP's
  reduce-scatter of one layer).
- rollout (HF engine only): ``generate``'s KV cache. step: AdamW's foreach temporaries (one state-sized copy).

The peak is ``always + max(update, rollout, step)``: the phases never overlap. Sharding: ``none`` and ``ddp``
hold everything on every device (DDP replicates: more devices add throughput, not room); ``fsdp`` divides
weights, gradients, AdamW state and the reference by the number of devices (``cpu_offload`` moves those shards
to host memory). Precision: ``weight_dtype`` (model.dtype) is the master weights', gradients' and AdamW's;
``mixed_precision`` bf16/fp16 runs the matmuls in 16 bits (autocast; FSDP2's MixedPrecisionPolicy under fsdp),
so activations are mostly 16-bit while the residual stream and the RMSNorms stay fp32. The optimizer is AdamW.

Activations (``layer_activation_bytes``): what HF's Llama/Qwen2 layer saves for the backward, per token
(micro_batch x seq of them, seq = prompt + completion) and decoder layer, in bytes, with h = hidden,
I = intermediate, e = compute bytes (2 under autocast, else the weight dtype's), r = the residual stream's
bytes (the weight dtype's: autocast leaves it alone; under fsdp with mixed precision 2, ``residual_bytes``):

    2 RMSNorms: the fp32 input, and the output when the norm trains  2 x (4h + r h)   (LoRA: 2 x 4h)
    attention: q, and k and v at every head (HF repeats GQA's k/v
               for SDPA when a padding mask is given, as in every
               GRPO batch), SDPA's output, o_proj's input; the mask   e x (6h + seq)
    gated MLP: gate, silu(gate), up, their product                   e x 4I   (plain MLP: e x 2I)
    autocast over an fp32 residual: the norm outputs cast per linear 2 x 3h
    without a fused attention kernel: the softmax'd scores          e x heads x seq
    (RoPE keeps nothing large: autograd saves cos/sin, not q or k)

This is the usual accounting (Korthikanti et al. 2022, 2205.05198: ~34 s b h bytes per layer for a GPT in 16
bits) done again for RMSNorm, RoPE, GQA, SwiGLU and autocast, and it matches ``saved_tensors_hooks`` counts to
1% (tests/unit/test_memory_plan.py, scripts/check_memory_plan.py). All layers are stored, plus the final norm;
with activation checkpointing only each layer's input (r h per token). The backward's working set adds half a
layer (measured 0.3: the gradients of the layer being differentiated) or, checkpointed, the recomputed layer;
a trained output head adds its fp32 weight gradient (vocab x h) before it is accumulated. Shared prompts
(rlvr.algo.logprobs runs a group's prompt once) shrink the prompt part; that saving is not counted (an upper
bound). Logits: completion tokens only (``logits_to_keep``) x vocab x ``LOGITS_BYTES``. Against peak memory
measured on CPU (tiny model, SmolLM2-135M; fp32, bf16 autocast, checkpointing, LoRA) the estimate is within
0.96-1.09x (docs/plan.md). On a GPU add what a CPU has no equivalent of, kept free by ``HEADROOM``: the CUDA
context, NCCL buffers and the caching allocator's fragmentation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import Any, Mapping

from rlvr.config.model_size import SMOLLM2_135M, _folder_config, architecture_params

GB = 1e9  # device sizes are the vendors' GB; the CUDA context and allocator slack are what HEADROOM keeps free
# FITS below this share of the device; between it and 1 the run may still fit but fragmentation, the CUDA
# context (~0.5-1 GB) and NCCL buffers decide: TIGHT.
HEADROOM = 0.9
# Per logit element (micro_batch x completion x vocab): the fp32 logits log-softmax saves (4), and three more
# fp32 tensors of that size at once, in the forward (the entropy diagnostic's log_softmax, exp and product) and
# in the backward (softmax x grad, the gather's scatter, their sum).
LOGITS_BYTES = 16
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
SHARDINGS = ("none", "ddp", "fsdp")  # rlvr.train.sharding.SHARDINGS without "auto" (resolved by the caller)
MIXED_PRECISIONS = ("no", "bf16", "fp16")
ENGINES = ("vllm", "hf", "none")  # none: no rollout engine (scripts/check_memory_plan.py measures updates alone)
# The decoder layer's linear modules (HF Llama / Qwen2 names, what peft's target_modules match).
ATTENTION_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_LINEARS = ("gate_proj", "up_proj", "down_proj")
_PLAIN_MLP_TYPES = ("gpt2", "gpt_neox", "gptj", "opt", "bloom", "falcon", "phi", "bert", "gpt_bigcode")


class PlanError(ValueError):
    """Bad input to the planner: the message says what, why and the fix."""


@dataclass(frozen=True)
class ModelShape:
    """The sizes the estimate needs, from a ``config.json``-style dict (``shape_from_config``)."""

    name: str
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    gated_mlp: bool
    params: int            # every parameter (rlvr.config.model_size.architecture_params)
    outer_params: int      # embeddings, an untied head and the final norm: what is not in a decoder layer
    source: str = ""       # where the shape came from

    @property
    def layer_params(self) -> int:
        return (self.params - self.outer_params) // self.layers

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


@dataclass(frozen=True)
class Setup:
    """How the run trains (the ``rlvr grpo`` config the estimate reads, ``rlvr.train.plan_cli.setup_from_config``)."""

    sharding: str = "none"            # none | ddp | fsdp
    devices: int = 1                  # processes, one device each
    lora_rank: int = 0                # 0 = full fine-tuning
    lora_targets: tuple[str, ...] = ("all-linear",)
    weight_dtype: str = "float32"     # model.dtype: master weights, gradients, AdamW states
    mixed_precision: str = "no"       # no | bf16 | fp16: the matmuls' precision
    micro_batch: int = 1              # rows per forward/backward
    prompt_tokens: int = 256
    completion_tokens: int = 1024
    activation_checkpointing: bool = False
    reference: bool = False           # algo.kl_beta > 0
    engine: str = "vllm"              # vllm | hf | none
    vllm_fraction: float = 0.3        # vLLM's gpu_memory_utilization
    rollout_rows: int = 64            # rows per HF generate call
    batch_rows: int = 0               # prompts x G per step (0 = unknown): a device never runs more than its share
    cpu_offload: bool = False         # fsdp: shards on the host
    fused_attention: bool = True      # flash / memory-efficient SDPA: no seq x seq scores kept
    device_gb: float = 80.0

    @property
    def seq(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Component:
    name: str
    bytes: float
    phase: str   # always | update | rollout | step
    note: str = ""


@dataclass(frozen=True)
class Plan:
    shape: ModelShape
    setup: Setup
    trainable_params: int
    components: tuple[Component, ...]
    host_bytes: float = 0.0               # fsdp cpu_offload: the shards in host memory
    warnings: tuple[str, ...] = field(default=())

    def phase_bytes(self, phase: str) -> float:
        return sum(c.bytes for c in self.components if c.phase == phase)

    @property
    def total_bytes(self) -> float:
        """Peak per device: what is always held plus the largest of the phases that never overlap."""
        return self.phase_bytes("always") + max(self.phase_bytes(p) for p in ("update", "rollout", "step"))

    def get(self, name: str) -> float:
        return sum(c.bytes for c in self.components if c.name == name)

    @property
    def verdict(self) -> str:
        device = self.setup.device_gb * GB
        if self.total_bytes <= HEADROOM * device:
            return "FITS"
        return "TIGHT" if self.total_bytes <= device else "DOES NOT FIT"


# ------------------------------------------------------------------------------------------------ shapes
def _first(config: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    return next((config[k] for k in keys if config.get(k) is not None), default)


def shape_from_config(config: Mapping[str, Any], name: str = "model", source: str = "") -> ModelShape:
    """A ``ModelShape`` from a Hugging Face ``config.json`` dict; the parameter counts are
    ``rlvr.config.model_size.architecture_params``'s (the whole model, and with 1 and 2 layers for the split
    between the decoder layers and the rest)."""
    config = config.get("text_config") or config
    params = architecture_params(config)
    if params is None:
        raise PlanError(f"{source or name}: the config lacks hidden_size, num_hidden_layers or vocab_size, so its "
                        "size cannot be told. Fix: give a config.json of a decoder-only transformer")
    layers_key = next(k for k in ("num_hidden_layers", "n_layer", "num_layers") if config.get(k))
    one, two = (architecture_params({**config, layers_key: n}) for n in (1, 2))
    hidden = _first(config, "hidden_size", "n_embd", "d_model")
    heads = _first(config, "num_attention_heads", "n_head", default=1)
    return ModelShape(
        name=name, hidden=hidden, layers=config[layers_key], heads=heads,
        intermediate=_first(config, "intermediate_size", "n_inner", "ffn_dim", default=4 * hidden),
        kv_heads=_first(config, "num_key_value_heads", "num_kv_heads", default=heads),
        head_dim=_first(config, "head_dim", default=hidden // heads), vocab=config["vocab_size"],
        tied=bool(config.get("tie_word_embeddings", True)),
        gated_mlp=config.get("model_type") not in _PLAIN_MLP_TYPES,
        params=params, outer_params=one - (two - one), source=source)


def packaged_shapes() -> dict[str, Any]:
    """name -> file of the shapes shipped in conf/model_shapes (config.json files without weights)."""
    folder = files("rlvr.conf").joinpath("model_shapes")
    if not folder.is_dir():  # an install whose package data left the .json files out
        return {}
    return {p.name[:-len(".json")]: p for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".json")}


def tiny_config(tiny: Any) -> dict:
    """model=tiny's config.json fields from its ``model.tiny`` section (as rlvr.config.model_size.tiny_params)."""
    return {"model_type": "qwen2", "hidden_size": tiny.hidden_size, "num_hidden_layers": tiny.num_layers,
            "intermediate_size": tiny.intermediate_size, "num_attention_heads": tiny.num_heads,
            "num_key_value_heads": tiny.num_kv_heads, "vocab_size": tiny.vocab_size, "tie_word_embeddings": True}


def load_shape(spec: str) -> ModelShape:
    """A packaged shape by name (``qwen2.5-7b``), a ``.json`` file, or a folder with a ``config.json``;
    ``smollm2-135m`` is also known without a file."""
    shapes = packaged_shapes()
    if spec in shapes:
        return shape_from_config(json.loads(shapes[spec].read_text()), spec, f"conf/model_shapes/{spec}.json")
    if spec == "smollm2-135m":
        return shape_from_config(SMOLLM2_135M, spec, "rlvr.config.model_size.SMOLLM2_135M")
    path = Path(spec).expanduser()
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise PlanError(f"no model shape {spec!r}: not a packaged shape, a .json file or a folder with a "
                        f"config.json. Fix: use one of {', '.join([*shapes, 'smollm2-135m'])} or the path of a "
                        "config.json")
    try:
        config = json.loads(file.read_text())
    except ValueError as exc:
        raise PlanError(f"{file} is not JSON ({exc}). Fix: give a model's config.json") from exc
    return shape_from_config(config, path.stem if path.suffix == ".json" else path.name, str(file))


def shape_for_model(name_or_path: str) -> ModelShape | None:
    """The shape of ``model.name_or_path``: its config.json (a local folder, or a hub id already in the HF
    cache), else a packaged shape whose name is in the model's (``Qwen/Qwen2.5-Coder-1.5B-Instruct`` ->
    qwen2.5-1.5b: same shape), else None."""
    config = _folder_config(name_or_path)
    if config is not None:
        return shape_from_config(config, name_or_path.rstrip("/").rsplit("/", 1)[-1], name_or_path)
    if name_or_path.endswith(".json") and Path(name_or_path).expanduser().is_file():
        return load_shape(name_or_path)
    words = name_or_path.rsplit("/", 1)[-1].lower().replace("_", "-").split("-")  # qwen2.5, coder, 1.5b, instruct
    for name in packaged_shapes():
        family, size = name.rsplit("-", 1)  # qwen2.5, 1.5b: variants of one family and size share the shape
        if words[0] == family and size in words:
            return replace(load_shape(name), source=f"conf/model_shapes/{name}.json (matched {name_or_path!r})")
    return None


# ------------------------------------------------------------------------------------------------ checks
def check_setup(setup: Setup) -> list[tuple[str, str]]:
    """Every problem with ``setup``: (its field, 'what. Fix: ...'); empty when it can be estimated."""
    s, problems = setup, []

    def bad(name: str, text: str) -> None:
        problems.append((name, text))

    if s.sharding not in SHARDINGS:
        bad("sharding", f"sharding {s.sharding!r} is unknown. Fix: use one of {', '.join(SHARDINGS)}")
    if s.devices < 1:
        bad("devices", f"devices={s.devices}: a run needs at least one. Fix: give 1 or more")
    elif s.sharding == "none" and s.devices > 1:
        bad("devices", f"sharding none on {s.devices} devices: every process would train a model of its own. "
                       "Fix: use ddp (replicas) or fsdp (shards), or 1 device")
    if s.lora_rank < 0:
        bad("lora_rank", f"LoRA rank {s.lora_rank} is negative. Fix: 0 for full fine-tuning, else a rank such as 8")
    unknown = sorted(set(s.lora_targets) - set(ATTENTION_LINEARS + MLP_LINEARS + ("all-linear",)))
    if s.lora_rank > 0 and (unknown or not s.lora_targets):
        bad("lora_targets", f"LoRA target modules {unknown or '[]'} are not ones the planner knows. Fix: use "
                            f"all-linear or some of {', '.join(ATTENTION_LINEARS + MLP_LINEARS)}")
    if s.weight_dtype not in DTYPE_BYTES:
        bad("weight_dtype", f"weight dtype {s.weight_dtype!r} is unknown. Fix: use one of {', '.join(DTYPE_BYTES)}")
    if s.mixed_precision not in MIXED_PRECISIONS:
        bad("mixed_precision", f"mixed precision {s.mixed_precision!r} is unknown. Fix: use one of "
                               f"{', '.join(MIXED_PRECISIONS)}")
    if s.engine not in ENGINES:
        bad("engine", f"rollout engine {s.engine!r} is unknown. Fix: use one of {', '.join(ENGINES)}")
    if not 0 < s.vllm_fraction < 1:
        bad("vllm_fraction", f"vLLM memory fraction {s.vllm_fraction} must lie in (0, 1). Fix: e.g. 0.3")
    for name in ("micro_batch", "prompt_tokens", "completion_tokens", "rollout_rows"):
        if getattr(s, name) < 1:
            bad(name, f"{name}={getattr(s, name)} must be >= 1. Fix: give a positive count")
    if s.device_gb <= 0:
        bad("device_gb", f"device size {s.device_gb} GB must be > 0. Fix: e.g. 80 for an 80 GB H100/A100")
    return problems


# ------------------------------------------------------------------------------------------------ counts
def dtype_bytes(dtype: str) -> int:
    return DTYPE_BYTES[dtype]


def compute_bytes(setup: Setup) -> int:
    """Bytes per element the matmuls produce: 2 under bf16/fp16 autocast, else the weights'."""
    return 2 if setup.mixed_precision in ("bf16", "fp16") else dtype_bytes(setup.weight_dtype)


def residual_bytes(setup: Setup) -> int:
    """Bytes per element of the residual stream: the weights' under autocast (it leaves additions alone), the
    compute dtype's under FSDP2's MixedPrecisionPolicy (it casts every layer's inputs, and the embeddings are
    16-bit there)."""
    return compute_bytes(setup) if setup.sharding == "fsdp" else dtype_bytes(setup.weight_dtype)


def adapted_linears(shape: ModelShape, targets: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """(in, out) features of each linear of one decoder layer that LoRA wraps ('all-linear': every one; peft
    leaves the output head out)."""
    h, q, kv, inter = shape.hidden, shape.heads * shape.head_dim, shape.kv_dim, shape.intermediate
    linears = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
               "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
    if not shape.gated_mlp:  # a plain MLP: one up and one down projection
        del linears["gate_proj"]
    if "all-linear" in targets:
        return linears
    return {name: dims for name, dims in linears.items() if name in targets}


def lora_params(shape: ModelShape, rank: int, targets: tuple[str, ...] = ("all-linear",)) -> int:
    """Trainable parameters of LoRA: A (r x in) and B (out x r) for each wrapped linear of every layer."""
    return shape.layers * sum(rank * (fan_in + fan_out) for fan_in, fan_out in adapted_linears(shape, targets).values())


def layer_activation_bytes(shape: ModelShape, setup: Setup) -> float:
    """Bytes one decoder layer saves for the backward, per token (the module docstring's table)."""
    h, e, r = shape.hidden, compute_bytes(setup), residual_bytes(setup)
    norms = 2 * (4 * h + (0 if setup.lora_rank else r * h))  # the normalised output only for a trained weight
    attention = e * (6 * h + setup.seq)  # q, k and v at every head (repeated for SDPA with a mask), out, o_proj in
    mlp = e * (4 if shape.gated_mlp else 2) * shape.intermediate
    casts = 2 * 3 * h if e == 2 and r == 4 else 0  # autocast: the fp32 norm outputs cast to 16 bits per linear
    scores = 0 if setup.fused_attention else e * shape.heads * setup.seq
    lora = e * 7 * setup.lora_rank  # the adapters' r-wide intermediates
    return norms + attention + mlp + casts + scores + lora


def stored_activation_bytes(shape: ModelShape, setup: Setup) -> float:
    """What autograd holds for one micro-batch's backward once the forward is done: every layer's activations
    (checkpointed: every layer's input) and the final norm's; the logits are ``logits_bytes``."""
    tokens = setup.micro_batch * setup.seq
    r = residual_bytes(setup)
    final_norm = (4 + (0 if setup.lora_rank else r)) * shape.hidden * tokens
    if setup.activation_checkpointing:
        return shape.layers * r * shape.hidden * tokens + final_norm
    return shape.layers * layer_activation_bytes(shape, setup) * tokens + final_norm


def activation_bytes(shape: ModelShape, setup: Setup) -> float:
    """Activations at the backward's peak: the stored ones plus the working set, half a layer's worth (the
    gradients of the layer being differentiated; measured 0.3) or, checkpointed, the layer being recomputed."""
    layer = layer_activation_bytes(shape, setup) * setup.micro_batch * setup.seq
    return stored_activation_bytes(shape, setup) + (1.0 if setup.activation_checkpointing else 0.5) * layer


def logits_bytes(shape: ModelShape, setup: Setup) -> float:
    return setup.micro_batch * setup.completion_tokens * shape.vocab * LOGITS_BYTES


def kv_cache_bytes(shape: ModelShape, setup: Setup) -> float:
    """HF ``generate``: keys and values of every layer for rollout_rows x seq tokens, plus the last position's
    fp32 logits, probabilities and sampling buffer per row."""
    kv = setup.rollout_rows * setup.seq * shape.layers * 2 * shape.kv_dim * compute_bytes(setup)
    return kv + 3 * 4 * setup.rollout_rows * shape.vocab


# ---------------------------------------------------------------------------------------------- estimate
def training_state(shape: ModelShape, setup: Setup) -> tuple[list[Component], int]:
    """(weights, gradients, AdamW states and the reference, per device; trainable parameters)."""
    s, w = setup, dtype_bytes(setup.weight_dtype)
    shards = s.devices if s.sharding == "fsdp" else 1
    adapters = lora_params(shape, s.lora_rank, s.lora_targets) if s.lora_rank else 0
    trainable, state_bytes = (adapters, 4) if adapters else (shape.params, w)  # peft keeps adapters in fp32
    where = f"/ {shards} (fsdp)" if shards > 1 else ("replicated" if s.devices > 1 else "")
    lora_note = f"base {w} B + LoRA adapters fp32" if adapters else f"{w} B/param"
    parts = [Component("weights", (shape.params * w + adapters * 4) / shards, "always",
                       f"{lora_note} {where}".strip()),
             Component("grads", trainable * state_bytes / shards, "always", f"{trainable:,} trainable"),
             Component("optimizer", 2 * trainable * state_bytes / shards, "always", "AdamW: 2 states")]
    if s.reference and not adapters:
        parts.append(Component("reference", shape.params * w / shards, "always", "KL reference copy"))
    elif s.reference:
        parts.append(Component("reference", 0.0, "always", "LoRA: the base with adapters off"))
    return parts, trainable


def working_set(shape: ModelShape, setup: Setup, trainable: int) -> list[Component]:
    """The parameters as the matmuls see them and the gradient communication buffers (update phase)."""
    s, w, e = setup, dtype_bytes(setup.weight_dtype), compute_bytes(setup)
    if s.sharding == "fsdp":  # FSDP2: the layer running and the one prefetched, plus the root (embeddings, head)
        gathered = (2 * shape.layer_params + shape.outer_params) * e
        return [Component("params (compute)", gathered, "update", "fsdp all-gather: 2 layers + embeddings"),
                Component("comm buffers", shape.layer_params * 4, "update", "one layer's fp32 reduce-scatter")]
    parts = []
    if e < w:  # autocast caches a 16-bit cast of every weight it multiplies (not the input embedding)
        cast = shape.params - (0 if shape.tied else shape.vocab * shape.hidden)
        parts.append(Component("params (compute)", cast * e, "update", "autocast's 16-bit weight casts"))
    if s.sharding == "ddp" and s.devices > 1:  # DDP's flat all-reduce buckets, as large as the gradients
        grad_bytes = trainable * (4 if s.lora_rank else w)
        parts.append(Component("comm buffers", grad_bytes, "update", "DDP gradient buckets"))
    return parts


def engine_parts(shape: ModelShape, setup: Setup) -> tuple[list[Component], list[str]]:
    """The rollout side: fsdp's unsharded policy copy, vLLM's share or HF generate's KV cache."""
    s, w = setup, dtype_bytes(setup.weight_dtype)
    parts, warnings = [], []
    if s.sharding == "fsdp":
        adapters = lora_params(shape, s.lora_rank, s.lora_targets) * 4 if s.lora_rank else 0
        parts.append(Component("rollout copy", shape.params * w + adapters, "always",
                               "fsdp: unsharded frozen policy for sampling, evals, final/"))
    if s.engine == "vllm":
        share = s.vllm_fraction * s.device_gb * GB
        parts.append(Component("engine", share, "always", f"vLLM: {s.vllm_fraction:.0%} of the device"))
        if shape.params * w > share:
            warnings.append(f"vLLM's share ({share / GB:.1f} GB) cannot hold its {w}-byte copy of the weights "
                            f"({shape.params * w / GB:.1f} GB): raise the vLLM memory fraction or use bf16 weights")
    elif s.engine == "hf":
        parts.append(Component("engine", kv_cache_bytes(shape, s), "rollout",
                               f"HF generate KV cache, {s.rollout_rows} rows"))
    return parts, warnings


def capped(setup: Setup) -> Setup:
    """``setup`` with the micro-batch and the HF generate rows cut to one device's share of the step's rows
    (DDP and FSDP split the batch; a micro-batch of 32 on 16 rows runs 16)."""
    if setup.batch_rows <= 0:
        return setup
    share = -(-setup.batch_rows // max(setup.devices, 1))
    return replace(setup, micro_batch=min(setup.micro_batch, share), rollout_rows=min(setup.rollout_rows, share))


def estimate(shape: ModelShape, setup: Setup) -> Plan:
    """Bytes per device of each component of a GRPO run (module docstring); raises PlanError on bad input."""
    problems = check_setup(setup)
    if problems:
        raise PlanError("; ".join(text for _, text in problems))
    s = capped(setup)
    state, trainable = training_state(shape, s)
    host = 0.0
    if s.sharding == "fsdp" and s.cpu_offload:  # the shards live in host memory; the device keeps the working set
        host = sum(c.bytes for c in state)
        state = [replace(c, bytes=0.0, note="offloaded to host") for c in state]
    update = [Component("activations", activation_bytes(shape, s), "update",
                        f"{s.micro_batch} x {s.seq} tokens" + (", checkpointed" if s.activation_checkpointing else "")),
              Component("logits", logits_bytes(shape, s), "update", f"{s.micro_batch} x {s.completion_tokens} x "
                                                                    f"{shape.vocab} x {LOGITS_BYTES} B")]
    if not s.lora_rank:  # the output head's weight gradient is a new tensor before it is added into .grad
        update.append(Component("head grad", shape.vocab * shape.hidden * dtype_bytes(s.weight_dtype), "update",
                                "the output head's gradient, unsharded, before accumulation"))
    engine, warnings = engine_parts(shape, s)
    shards = s.devices if s.sharding == "fsdp" else 1
    step = 0.0 if host else trainable * (4 if s.lora_rank else dtype_bytes(s.weight_dtype)) / shards
    components = (*state, *working_set(shape, s, trainable), *update, *engine,
                  Component("adamw temporaries", step, "step", "foreach AdamW: one state-sized copy"))
    return Plan(shape, s, trainable, tuple(components), host_bytes=host, warnings=tuple(warnings))


def matrix(shape: ModelShape, base: Setup, devices: tuple[int, ...] = (1, 8),
           lora_rank: int = 8) -> list[tuple[str, int, str, Plan | None]]:
    """(sharding, devices, 'full' | 'LoRA r=N', plan or None where it cannot run) for none/ddp/fsdp x full/LoRA
    x each device count, everything else as in ``base``; none runs on one device only."""
    rows = []
    for sharding in SHARDINGS:
        for n in devices:
            for rank in (0, lora_rank):
                label = "full" if rank == 0 else f"LoRA r={rank}"
                runs = not (sharding == "none" and n > 1)
                plan = estimate(shape, replace(base, sharding=sharding, devices=n, lora_rank=rank)) if runs else None
                rows.append((sharding, n, label, plan))
    return rows
