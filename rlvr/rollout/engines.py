"""The rollout engine factory: a name ("hf", "vllm") -> a ``RolloutEngine`` over a model.

Apart from ``base`` (the interface every engine implements) so that the interface does not import its
implementations: each engine module imports ``base``, and only this factory imports the engines, lazily, so that
asking for the HF engine never loads vLLM.
"""

from __future__ import annotations

from typing import Any

from rlvr.rollout.base import RolloutEngine


def build_engine(name: str, model: Any, tokenizer: Any, *, seed: int, think_open: str, think_close: str,
                 batch_size: int) -> RolloutEngine:
    """The rollout engine ``name`` ("hf" or "vllm") over ``model``; engines are imported only when asked for.

    ``batch_size`` is the HF engine's rows per decode call (vLLM schedules its own batches); ``seed`` seeds
    vLLM's engine (the HF engine takes seeds per call through ``SamplingParams``)."""
    if name == "vllm":
        from rlvr.rollout.vllm_engine import VLLMEngine

        return VLLMEngine(model, tokenizer, seed=seed, think_open=think_open, think_close=think_close)
    if name == "hf":
        from rlvr.rollout.hf import HFEngine

        return HFEngine(model, tokenizer, batch_size=batch_size, think_open=think_open, think_close=think_close)
    raise ValueError(f"unknown rollout engine {name!r}; valid: hf, vllm")
