"""Throughput figures of ``scripts/bench_grpo_vs_trl.py --mode speed``: the trainable parameter count and the
prompt + completion tokens of each step that the update FLOP/s formula (``bench_report.FLOPS_FORMULA``) needs,
their addition to a run's result row, and the machine's fp32 matmul ceiling measured by ``scripts/bench_peak_flops.py``
in a fresh subprocess with the runs' environment.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench_report import throughput_series
from bench_spec import RunSpec, arith_task_config, child_env, load_average, run_subprocess


def trainable_parameters(folder: str) -> int:
    """Parameters of the model in ``folder`` (tied embeddings once), built on the meta device: no weights read.
    Both sides train every parameter (full fine-tuning); with ``model.add_think_tokens=true`` (off by default) ours
    would add 2 thinking-tag rows to the embeddings, ~0.001% of SmolLM2's, not counted."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    return sum(p.numel() for p in model.parameters())


def step_prompt_tokens(spec: RunSpec) -> list[int]:
    """Prompt tokens of each step's B*G sequences (each prompt counted G times), from both sides' prompt order (our
    PromptStream over the first ``train_prompts`` arith train prompts, as ``bench_trl_worker`` feeds TRL) and our
    chat-template rendering (the TRL worker checks TRL's ids equal ours: ``prompt_ids_match``)."""
    from rlvr.config import ModelConfig
    from rlvr.models import load_tokenizer
    from rlvr.rollout.prompts import render_prompt
    from rlvr.tasks import build_task
    from rlvr.train.loop_parts import PromptStream

    tokenizer = load_tokenizer(ModelConfig(name_or_path=spec.model, dtype="float32"))
    task = build_task(arith_task_config(spec.arith, spec.verifiers))
    samples = PromptStream(task.samples("train", limit=spec.train_prompts), seed=spec.seed).take(
        spec.steps * spec.prompts)
    lengths = [len(render_prompt(tokenizer, s.prompt)) for s in samples]
    return [spec.group * sum(lengths[k * spec.prompts:(k + 1) * spec.prompts]) for k in range(spec.steps)]


def trl_step_tokens(logs: list[dict]) -> list[float]:
    """TRL's prompt + completion tokens per step: differences of its cumulative ``num_tokens`` log."""
    seen = [row["num_tokens"] for row in logs if "num_tokens" in row]
    return [b - a for a, b in zip([0.0] + seen[:-1], seen)]


def add_throughput(row: dict[str, Any], spec: RunSpec, prompt_tokens: list[int] | None, params: int | None) -> None:
    """Per-step completion/prompt tokens, rollout tokens/s and update GFLOP/s into a run's result row."""
    n = spec.prompts * spec.group
    row["completion_tokens"] = [None if x is None else x * n for x in row.get("completion_length") or []]
    row["prompt_tokens"] = prompt_tokens
    if spec.system == "trl":
        totals = trl_step_tokens(row.get("logs") or [])
        row["prompt_tokens_trl"] = [t - c for t, c in zip(totals, row["completion_tokens"]) if c is not None]
    row["step_tokens"] = [None if c is None or prompt_tokens is None or i >= len(prompt_tokens)
                          else c + prompt_tokens[i] for i, c in enumerate(row["completion_tokens"])]
    row.update(throughput_series(row["completion_tokens"], prompt_tokens, (row.get("phases") or {}).get("rollout"),
                                 row.get("update_time"), params))


PEAK_SIZE, PEAK_REPEATS = 2048, 9  # bench_peak_flops.py's matmul size and calls per measurement


def measure_peak(threads: int, logs_dir: Path, when: str, timeout: float = 300) -> dict[str, Any]:
    """``scripts/bench_peak_flops.py`` in a fresh subprocess with the runs' environment: fp32 matmul GFLOP/s."""
    cmd = [sys.executable, str(Path(__file__).resolve().parent / "bench_peak_flops.py"), "--threads", str(threads),
           "--size", str(PEAK_SIZE), "--repeats", str(PEAK_REPEATS), "--json"]
    code, _wall, tail = run_subprocess(cmd, logs_dir / f"peak_{when}.log", child_env(threads), timeout)
    for line in reversed(tail.splitlines()):
        if line.startswith("{"):
            return {**json.loads(line), "when": when, "loadavg_1min": load_average()}
    return {"when": when, "error": f"exit code {code}: {tail[-300:]}"}
