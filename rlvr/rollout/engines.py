"""The rollout engine factory: a name ("hf", "vllm", "server") -> a ``RolloutEngine`` over a model.

Apart from ``base`` (the interface every engine implements) so that the interface does not import its
implementations: each engine module imports ``base``, and only this factory imports the engines, lazily, so that
asking for the HF engine never loads vLLM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlvr.rollout.base import RolloutEngine


def build_engine(name: str, model: Any, tokenizer: Any, *, seed: int, think_open: str, think_close: str,
                 batch_size: int, server: Any = None, run_dir: Any = None, rank: int = 0,
                 world_size: int = 1) -> RolloutEngine:
    """The rollout engine ``name`` ("hf", "vllm" or "server") over ``model``; engines are imported only when asked.

    ``batch_size`` is the HF engine's rows per decode call (vLLM schedules its own batches); ``seed`` seeds
    vLLM's engine (the HF engine takes seeds per call through ``SamplingParams``). "server" needs ``server`` (the
    ``server.*`` section, ``rlvr.config.ServerConfig``) and ``run_dir`` (server logs, default sync folder); trainer
    rank ``rank`` of ``world_size`` attaches to ``server.urls[rank::world_size]`` and syncs only those (every
    rank holds the same weights after an update), its disk sync in a folder of its own."""
    if name == "server":
        from rlvr.rollout.server_engine import ServerEngine

        if server is None or run_dir is None:
            raise ValueError("rollout engine 'server' needs the server.* options and a run directory; it is "
                             "rlvr grpo's (rollout=server)")
        urls = list(server.urls)[rank::world_size]
        sync_dir = server.sync_dir
        if world_size > 1:
            sync_dir = str(Path(sync_dir or Path(run_dir) / "servers" / "weights") / f"rank{rank}")
        return ServerEngine.start(model, tokenizer, urls=urls, num_servers=server.num_servers,
                                  sync=server.sync, run_dir=run_dir, seed=seed, max_model_len=server.max_model_len,
                                  startup_timeout_s=server.startup_timeout_s,
                                  request_timeout_s=server.request_timeout_s, extra_args=list(server.extra_args),
                                  sync_dir=sync_dir, sync_host=server.sync_host,
                                  think_open=think_open, think_close=think_close)
    if name == "vllm":
        from rlvr.rollout.vllm_engine import VLLMEngine

        return VLLMEngine(model, tokenizer, seed=seed, think_open=think_open, think_close=think_close)
    if name == "hf":
        from rlvr.rollout.hf import HFEngine

        return HFEngine(model, tokenizer, batch_size=batch_size, think_open=think_open, think_close=think_close)
    raise ValueError(f"unknown rollout engine {name!r}; valid: hf, vllm, server")
