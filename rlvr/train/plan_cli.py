"""``rlvr plan``: memory per device of a GRPO run, from its config alone (no weights loaded, no torch, no GPU).

    rlvr plan experiment=gsm8k_qwen2.5_1.5b                       # that experiment, on plan.devices x 80 GB
    rlvr plan experiment=gsm8k_qwen2.5_1.5b plan.devices=8 grpo.sharding=fsdp plan.device_gb=141
    rlvr plan plan.shape=qwen2.5-7b plan.matrix=true grpo.mixed_precision=bf16 grpo.micro_batch_size=1 \
        grpo.max_new_tokens=1024                                  # none/ddp/fsdp x full/LoRA x 1 and 8 devices
    rlvr plan model=hf model.name_or_path=path/to/model_folder    # its config.json is the shape

The config is ``rlvr grpo``'s (the same overrides, groups and experiments: conf/plan.yaml; the experiments'
other sections, sft/eval/pipeline, compose too and are not used) plus a ``plan`` section. What the estimate
reads from it: the model shape (``plan.shape``, else ``model.name_or_path``'s config.json, model=tiny's
``model.tiny``, SmolLM2's known shape, or a packaged shape matched by name), ``grpo.sharding`` (auto = ddp on
several devices, else none), ``model.lora.r`` / ``target_modules``, ``model.dtype`` (auto: bf16, what hub
checkpoints of these sizes ship in), ``grpo.mixed_precision``, ``grpo.micro_batch_size`` and
``rollout_batch_size`` (capped at a device's share of ``prompts_per_step x group_size``),
``plan.prompt_tokens`` + ``grpo.max_new_tokens``, ``grpo.activation_checkpointing``, ``grpo.fsdp_cpu_offload``,
``algo.kl_beta > 0`` (a reference model), ``rollout`` (auto = vllm: the plan is for CUDA devices, where auto
picks vLLM when it is installed) with ``plan.vllm_memory_fraction``. What it counts and assumes:
``rlvr.train.memory_plan``; how close it comes to measured peaks: docs/plan.md.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any, Optional

from omegaconf import DictConfig

from rlvr.config.model_size import SMOLLM2_135M
from rlvr.config.options import opt
from rlvr.config.schema import SCHEMAS, PipelineRunConfig
from rlvr.train.memory_plan import (GB, HEADROOM, ModelShape, Plan, PlanError, Setup, check_setup, estimate,
                                    load_shape, matrix, packaged_shapes, shape_for_model, shape_from_config,
                                    tiny_config)

FORMATS = ("table", "markdown")


@dataclass
class PlanConfig:
    shape: Optional[str] = opt(None, "model shape: a packaged one (conf/model_shapes: qwen2.5-1.5b, qwen2.5-7b), "
                                     "a config.json file or a model folder. None = the configured model's: "
                                     "model.name_or_path's config.json (a local folder or the HF cache), "
                                     "model.tiny for model=tiny, SmolLM2-135M's, or a packaged shape whose name "
                                     "is in the model's (Qwen/Qwen2.5-Math-7B -> qwen2.5-7b)")
    devices: int = opt(1, "processes of the run, one device each (torchrun --nproc_per_node)")
    device_gb: float = opt(80.0, "memory of one device in GB (80: H100/A100 80GB; 141: H200). FITS below "
                                 f"{HEADROOM:.0%} of it (the CUDA context, NCCL and allocator fragmentation take "
                                 "the rest), TIGHT up to 100%")
    prompt_tokens: int = opt(256, "prompt length of a training row (template + system prompt + question; GSM8K "
                                  "with Qwen's chat template is ~150-250 tokens); the completion is "
                                  "grpo.max_new_tokens")
    vllm_memory_fraction: float = opt(0.3, "share of the device a colocated vLLM engine reserves (its "
                                           "gpu_memory_utilization; rlvr.rollout.vllm_engine's default 0.3): its "
                                           "weight copy, in model.dtype, and the KV cache")
    matrix: bool = opt(False, "print none/ddp/fsdp x full/LoRA x plan.matrix_devices instead of one plan")
    matrix_devices: list[int] = opt(factory=lambda: [1, 8], help="device counts of the matrix")
    matrix_lora_rank: int = opt(8, "LoRA rank of the matrix's LoRA rows when model.lora.r is 0")
    format: str = opt("table", "table (rich, for a terminal) or markdown (for docs)")


@dataclass
class PlanRunConfig(PipelineRunConfig):
    """``rlvr grpo``'s sections (through the pipeline's, so that experiments compose) plus ``plan``."""

    plan: PlanConfig = opt(factory=PlanConfig, help="what to estimate for: devices, their size, prompt length")


# Registered here, not in rlvr.config.schema, so the planner is one self-contained command; compose picks it up
# from SCHEMAS (rlvr.config.schema.register_configs) like every other command's.
SCHEMAS.setdefault("plan", PlanRunConfig)

# Setup field -> the config key a user changes
CONFIG_KEYS = {"sharding": "grpo.sharding", "devices": "plan.devices", "lora_rank": "model.lora.r",
               "lora_targets": "model.lora.target_modules", "weight_dtype": "model.dtype",
               "mixed_precision": "grpo.mixed_precision", "engine": "rollout",
               "vllm_fraction": "plan.vllm_memory_fraction", "micro_batch": "grpo.micro_batch_size",
               "prompt_tokens": "plan.prompt_tokens", "completion_tokens": "grpo.max_new_tokens",
               "rollout_rows": "grpo.rollout_batch_size", "device_gb": "plan.device_gb"}


def resolve_shape(cfg: Any) -> ModelShape:
    """The model shape the config names (module docstring); PlanError says what exists when none is found."""
    if cfg.plan.shape:
        return load_shape(cfg.plan.shape)
    m = cfg.model
    if m.name_or_path:
        shape = shape_for_model(str(m.name_or_path))
        if shape is None:
            raise PlanError(f"no config.json for {m.name_or_path!r} here (not a local folder, not in the HF cache) "
                            "and no packaged shape matches its name. Fix: plan.shape=<one of "
                            f"{', '.join(packaged_shapes())}, or a config.json path>")
        return shape
    if m.name == "tiny":
        return shape_from_config(tiny_config(m.tiny), "tiny", "model.tiny")
    if m.name == "smollm2-135m":
        return shape_from_config(SMOLLM2_135M, "smollm2-135m", "rlvr.config.model_size.SMOLLM2_135M")
    raise PlanError(f"model {m.name!r} has no shape. Fix: set model.name_or_path or plan.shape")


def setup_from_config(cfg: Any, devices: int | None = None) -> Setup:
    """The ``Setup`` a composed plan config describes (module docstring: which key feeds which field)."""
    g, p = cfg.grpo, cfg.plan
    n = p.devices if devices is None else devices
    lora = getattr(cfg.model, "lora", None)  # model.lora is newer than some configs
    sharding = g.sharding if g.sharding != "auto" else ("ddp" if n > 1 else "none")
    return Setup(
        sharding=sharding, devices=n, lora_rank=int(lora.r) if lora is not None else 0,
        lora_targets=tuple(lora.target_modules) if lora is not None else ("all-linear",),
        weight_dtype="bfloat16" if cfg.model.dtype == "auto" else cfg.model.dtype,
        mixed_precision=g.mixed_precision, micro_batch=g.micro_batch_size, prompt_tokens=p.prompt_tokens,
        completion_tokens=g.max_new_tokens, activation_checkpointing=g.activation_checkpointing,
        reference=cfg.algo.kl_beta > 0, engine="vllm" if cfg.rollout == "auto" else cfg.rollout,
        vllm_fraction=p.vllm_memory_fraction, rollout_rows=g.rollout_batch_size,
        batch_rows=g.prompts_per_step * g.group_size, cpu_offload=g.fsdp_cpu_offload, device_gb=p.device_gb)


def validate(cfg: DictConfig) -> list:
    """Config problems of ``rlvr plan`` (rlvr.config.loading's Problem), every one at once."""
    from rlvr.config.loading import Problem

    problems = []
    setup = setup_from_config(cfg)
    if cfg.plan.matrix:  # the matrix sets sharding and devices itself
        setup = replace(setup, sharding="none", devices=1)
        if not cfg.plan.matrix_devices or min(cfg.plan.matrix_devices) < 1:
            problems.append(Problem("plan.matrix_devices", f"{list(cfg.plan.matrix_devices)} needs counts >= 1",
                                    "e.g. plan.matrix_devices=[1,8]"))
    for name, text in check_setup(setup):
        what, _, fix = text.partition(". Fix: ")
        if name == "sharding":  # the config also takes auto, resolved before the planner sees it
            fix = "use one of auto, none, ddp, fsdp"
        problems.append(Problem(CONFIG_KEYS.get(name, name), what, fix))
    if cfg.plan.format not in FORMATS:
        problems.append(Problem("plan.format", f"unknown format {cfg.plan.format!r}", f"use one of {FORMATS}"))
    try:
        resolve_shape(cfg)
    except PlanError as exc:
        what, _, fix = str(exc).partition(". Fix: ")
        problems.append(Problem("plan.shape", what, fix or "see `rlvr plan --help`"))
    return problems


# -------------------------------------------------------------------------------------------------- output
def gb(x: float) -> str:
    return f"{x / GB:.1f}" if x >= 0.05 * GB or x == 0 else f"{x / GB:.2f}"


def describe(shape: ModelShape, s: Setup) -> list[str]:
    """What was estimated for, in words: the head of every table."""
    precision = f"{s.weight_dtype} weights/grads/AdamW" + (
        f", {s.mixed_precision} autocast matmuls" if s.mixed_precision != "no" else "")
    engine = {"vllm": f"colocated vLLM ({s.vllm_fraction:.0%} of the device)", "hf": "HF generate",
              "none": "none"}[s.engine]
    return [f"model: {shape.name}, {shape.params / 1e9:.3g}B parameters ({shape.layers} layers x {shape.hidden}, "
            f"vocab {shape.vocab}; shape from {shape.source})",
            f"precision: {precision}; micro-batch {s.micro_batch} x ({s.prompt_tokens} prompt + "
            f"{s.completion_tokens} completion) tokens; activation checkpointing "
            f"{'on' if s.activation_checkpointing else 'off'}; KL reference {'yes' if s.reference else 'no'}; "
            f"rollout engine {engine}"]


def plan_rows(plan: Plan) -> list[list[str]]:
    rows = [[c.name, c.phase, gb(c.bytes), c.note] for c in plan.components if c.bytes or c.name == "reference"]
    peak = plan.total_bytes
    rows.append(["peak per device", "always + max(update, rollout, step)", gb(peak),
                 f"{peak / (plan.setup.device_gb * GB):.0%} of {plan.setup.device_gb:g} GB: {plan.verdict}"])
    if plan.host_bytes:
        rows.append(["host memory", "always", gb(plan.host_bytes), "fsdp cpu offload: shards, grads, AdamW"])
    return rows


MATRIX_COLUMNS = ["sharding", "devices", "training", "weights", "grads", "optimizer", "reference", "rollout copy",
                  "engine", "params+comm", "activations", "logits+head grad", "peak GB", "fits"]


def matrix_rows(entries: list) -> list[list[str]]:
    rows = []
    for sharding, n, label, plan in entries:
        if plan is None:
            rows.append([sharding, str(n), label, *["n/a"] * 10, "n/a: one process only (use ddp or fsdp)"])
            continue
        work = plan.get("params (compute)") + plan.get("comm buffers")
        rows.append([sharding, str(n), label, *(gb(plan.get(c)) for c in
                     ("weights", "grads", "optimizer", "reference", "rollout copy", "engine")),
                     gb(work), gb(plan.get("activations")), gb(plan.get("logits") + plan.get("head grad")),
                     gb(plan.total_bytes),
                     plan.verdict])
    return rows


def render(title: list[str], columns: list[str], rows: list[list[str]], fmt: str) -> None:
    if fmt == "markdown":
        print("\n".join(title) + "\n")
        print("| " + " | ".join(columns) + " |\n|" + "|".join("---" for _ in columns) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title="\n".join(title), title_justify="left")
    for row in rows:
        table.add_row(*row)
    Console(width=None if sys.stdout.isatty() else 220).print(table)


def run(cfg: DictConfig) -> int:
    shape, p = resolve_shape(cfg), cfg.plan
    if p.matrix:
        base = setup_from_config(cfg, devices=1)
        rank = base.lora_rank or p.matrix_lora_rank
        entries = matrix(shape, base, tuple(p.matrix_devices), rank)
        title = [*describe(shape, base), f"per device of {p.device_gb:g} GB (GB = 1e9 bytes); none and ddp "
                 "replicate everything on every device, fsdp shards weights/grads/AdamW/reference"]
        render(title, MATRIX_COLUMNS, matrix_rows(entries), p.format)
        warnings = {w for *_, plan in entries if plan is not None for w in plan.warnings}
    else:
        plan = estimate(shape, setup_from_config(cfg))
        s = plan.setup
        where = f"{s.sharding} on {s.devices} x {s.device_gb:g} GB"
        training = f"LoRA r={s.lora_rank} ({plan.trainable_params:,} trainable)" if s.lora_rank else "full fine-tuning"
        render([*describe(shape, s), f"{where}; {training}"], ["component", "phase", "GB/device", "note"],
               plan_rows(plan), p.format)
        warnings = set(plan.warnings)
    for warning in sorted(warnings):
        print(f"warning: {warning}")
    return 0


def main(argv: list[str]) -> int:
    from rlvr.config.loading import run_command

    try:
        return run_command("plan", argv, validate, run)
    except PlanError as exc:  # validation catches bad input first; this is the safety net
        print(f"rlvr plan: {exc}", file=sys.stderr)
        return 2
