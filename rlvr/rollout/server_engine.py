"""``ServerEngine``: rollouts from N vLLM OpenAI servers (``rollout=server``), weight-synced after each update.

What
----
The ``RolloutEngine`` interface and conventions of the in-process ``VLLMEngine`` (prompt-major results, the
ending eos / stop token kept in ``completion_ids``, ``text`` decoded here without special tokens, the same
thinking-token count, ``finish_reason`` "stop"/"length"), sampled by stock vLLM servers that rlvr launched on
loopback or attached to (``rlvr.rollout.server``). Requests go to ``POST /v1/completions`` with the prompt as
token ids (``render_prompt``: the exact tokens the trainer re-scores), ``return_token_ids`` and ``logprobs=0``
(the sampled token's logprob only), the in-process engine's sampler settings (``top_k=0``, ``min_p=0``, no
penalties) and a seed per request: prompt i gets ``seed + i * n`` and vLLM gives its child j ``+ j``, so the
same seed gives the same rollouts as ``VLLMEngine`` over the same weights. Logprobs are the servers'
``processed_logprobs`` (log-softmax after temperature), the in-process engine's convention (its docstring has the
top_p < 1 caveat).

Spreading: the prompts of a call are dealt round-robin over the servers, a whole group (its n completions) per
request, so the G rows of a prompt share its KV blocks on one server; under a thinking budget every phase of a
row goes to the server its prompt went to (prefix cache reuse across phases). Requests run concurrently on a
thread pool; each server batches what it receives.

Thinking budgets: ``rlvr.rollout.budget.generate_with_budget`` drives the phases exactly as for the in-process
engines; ``_continue`` is its primitive over HTTP (one n=1 request per row, prompt = prompt + completion so far).

Weights: the engine is built from the policy object. Launched servers start from the policy's config and
tokenizer with ``load_format=dummy`` and receive the policy's weights before the first rollout; attached servers
are synced the same way. ``sync_weights(policy)`` runs the configured transport (``rlvr.rollout.weight_sync``:
version counter, pause -> update -> resume, checksum compared after every sync; a mismatch raises). ``close``
stops the servers rlvr launched (never attached ones) and deletes the sync folder.

How to run the tests: ``python -m pytest -q -m vllm tests/integration/test_server_rollout.py``.
"""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Sequence

from rlvr.rollout.base import RolloutEngine, SamplingParams
from rlvr.rollout.budget import Segment, generate_with_budget
from rlvr.rollout.server import Server, ServerError, attach_servers, launch_servers, request, shutdown
from rlvr.rollout.types import Rollout
from rlvr.rollout.weight_sync import WeightSync
from rlvr.tasks.base import Sample


class ServerEngine(RolloutEngine):
    """Rollouts from ``servers`` (launched or attached), weights pushed by ``sync``.

    Args:
        policy: the bare transformers causal LM being trained (read, never modified).
        tokenizer: its tokenizer (chat template applied here, as in every engine).
        servers: ``rlvr.rollout.server.Server`` objects, healthy and with rlvr's worker extension.
        sync: the weight transport (``rlvr.rollout.sync_transport.build_sync``).
        request_timeout_s: seconds one HTTP completion request may take.
        sync_now: push the policy's weights before returning (what the trainer wants: no rollout from dummy
            or someone else's weights).
    """

    def __init__(self, policy: Any, tokenizer: Any, servers: Sequence[Server], sync: WeightSync, *,
                 think_open: str = "<think>", think_close: str = "</think>", request_timeout_s: float = 600.0,
                 sync_now: bool = True, scratch: str | None = None):
        if not servers:
            raise ValueError("ServerEngine needs at least one server")
        self.policy, self.servers, self.sync = policy, list(servers), sync
        self._init_tokens(tokenizer, getattr(policy, "generation_config", None), think_open, think_close)
        self.request_timeout_s = request_timeout_s
        self._scratch = scratch  # the launched servers' config folder, deleted by close()
        self._pool = ThreadPoolExecutor(max_workers=16 * len(self.servers), thread_name_prefix="rlvr-server")
        if sync_now:
            self.sync_weights(policy)

    @classmethod
    def start(cls, policy: Any, tokenizer: Any, *, urls: Sequence[str] = (), num_servers: int = 1,
              sync: str = "disk", run_dir: str | Path, seed: int = 0, max_model_len: int | None = None,
              startup_timeout_s: float = 600.0, request_timeout_s: float = 600.0, extra_args: Sequence[str] = (),
              sync_dir: str | None = None, sync_host: str = "127.0.0.1", think_open: str = "<think>",
              think_close: str = "</think>") -> "ServerEngine":
        """Attach to ``urls``, or launch ``num_servers`` on loopback (logs in ``<run_dir>/servers/``), then sync."""
        import torch

        from rlvr.rollout.sync_transport import build_sync

        run_dir = Path(run_dir)
        transport = build_sync(sync, sync_dir=sync_dir or run_dir / "servers" / "weights", host=sync_host,
                               timeout_s=request_timeout_s)
        scratch = None
        if urls:
            servers = attach_servers(urls, timeout_s=min(startup_timeout_s, 120.0))
        else:
            # config + tokenizer only: the weights come from the policy object (dummy load + the first sync)
            scratch = tempfile.mkdtemp(prefix="rlvr-server-model-")
            try:
                policy.config.save_pretrained(scratch)
                tokenizer.save_pretrained(scratch)
                servers = launch_servers(scratch, num_servers, log_dir=run_dir / "servers", seed=seed,
                                         dtype=str(policy.dtype).removeprefix("torch."), max_model_len=max_model_len,
                                         startup_timeout_s=startup_timeout_s, extra_args=extra_args,
                                         gpus=torch.cuda.is_available())
            except BaseException:
                shutil.rmtree(scratch, ignore_errors=True)
                raise
        try:
            return cls(policy, tokenizer, servers, transport, think_open=think_open, think_close=think_close,
                       request_timeout_s=request_timeout_s, scratch=scratch)
        except BaseException:  # e.g. the first sync failed its checksum: stop what we started
            shutdown(servers)
            transport.close()
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
            raise

    # ------------------------------------------------------------------------------------------ requests
    def _body(self, server: Server, prompt: Sequence[int], params: SamplingParams, n: int, seed: int | None, *,
              max_tokens: int | None = None, stop_ids: Sequence[int] | None = None,
              stop: Sequence[str] | None = None) -> dict:
        """The /v1/completions body: VLLMEngine._vllm_params as JSON (the keywords override limit and stops)."""
        stop = params.stop if stop is None else stop
        body = {
            "model": server.model, "prompt": list(prompt), "n": n,
            "temperature": 0.0 if params.greedy else params.temperature,
            "top_p": 1.0 if params.greedy else params.top_p,
            "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0,  # no other processor changes the distribution
            "max_tokens": params.max_new_tokens if max_tokens is None else max_tokens,
            "stop_token_ids": list(self.eos_ids if stop_ids is None else stop_ids),
            "stop": list(stop) or None,
            "include_stop_str_in_output": True,  # the stop string stays, like HFEngine
            # text is decoded here from the ids (HFEngine's rule); vLLM's own text only serves stop strings
            "logprobs": 0, "return_token_ids": True,
        }
        if seed is not None:
            body["seed"] = seed
        return body

    def _complete(self, jobs: Sequence[tuple[Server, dict]]) -> list[list[dict]]:
        """POST every job concurrently; each result is the request's choices sorted by index."""
        def one(job: tuple[Server, dict]) -> list[dict]:
            server, body = job
            answer = request(server, "POST", "/v1/completions", body, timeout=self.request_timeout_s)
            choices = sorted(answer.get("choices") or [], key=lambda c: c["index"])
            if len(choices) != body["n"]:
                raise ServerError(f"{server.where()} returned {len(choices)} completions, expected {body['n']}")
            for c in choices:
                ids, lps = c.get("token_ids"), (c.get("logprobs") or {}).get("token_logprobs")
                if ids is None or lps is None or len(lps) != len(ids):
                    raise ServerError(f"{server.where()} returned {0 if lps is None else len(lps)} logprobs for "
                                      f"{0 if ids is None else len(ids)} tokens (needs return_token_ids; vLLM >= 0.10)")
                if c.get("finish_reason") not in ("stop", "length"):  # "abort": dropped, a bug here, not a result
                    raise ServerError(f"{server.where()} finished a request with "
                                      f"finish_reason={c.get('finish_reason')!r}")
            return choices

        return list(self._pool.map(one, jobs))

    def _continue(self, prefixes: Sequence[Sequence[int]], max_new: Sequence[int], stop_ids: Sequence[int],
                  stop_strings: Sequence[str], seeds: Sequence[int | None], *, params: SamplingParams,
                  route: dict[tuple[int, ...], Server], lengths: set[int]) -> list[Segment]:
        """The budget driver's primitive over HTTP: one n=1 request per row, on its prompt's server."""
        def server_of(prefix: Sequence[int]) -> Server:
            return next((route[key] for k in lengths if (key := tuple(prefix[:k])) in route), self.servers[0])

        servers = [server_of(p) for p in prefixes]  # [rows] the server each row's prompt went to
        jobs = [(server, self._body(server, p, params, 1, seed, max_tokens=k, stop_ids=stop_ids, stop=stop_strings))
                for server, p, k, seed in zip(servers, prefixes, max_new, seeds)]
        segments = []
        for (c,) in self._complete(jobs):
            logprobs = [float(x) for x in c["logprobs"]["token_logprobs"]]
            segments.append(Segment(ids=list(c["token_ids"]), logprobs=logprobs, stopped=c["finish_reason"] == "stop"))
        return segments

    def generate(self, samples: Sequence[Sample], n: int = 1, params: SamplingParams | None = None) -> list[Rollout]:
        params, prompts = self._request(samples, n, params)
        if not samples:
            return []
        servers = [self.servers[i % len(self.servers)] for i in range(len(samples))]  # round-robin by prompt
        if params.budget is not None:  # phases driven by rlvr.rollout.budget, sampled by _continue
            route = {tuple(p): s for p, s in zip(prompts, servers)}
            primitive = partial(self._continue, params=params, route=route, lengths={len(p) for p in prompts})
            return generate_with_budget(self, primitive, samples, prompts, n, params)
        # greedy: one completion per prompt, repeated n times (vLLM refuses n > 1 identical copies)
        per_request = 1 if params.greedy else n
        jobs = [(s, self._body(s, p, params, per_request, None if params.seed is None else params.seed + i * n))
                for i, (p, s) in enumerate(zip(prompts, servers))]
        rollouts: list[Rollout] = []
        eos = set(self.eos_ids)
        for sample, ids_prompt, server, choices in zip(samples, prompts, servers, self._complete(jobs)):
            if per_request == 1:
                choices = choices * n
            for j, c in enumerate(choices):
                ids = list(c["token_ids"])
                # stop_reason: None for the eos, the token id for stop_token_ids, the string for a stop string
                if (c["finish_reason"] == "stop" and not isinstance(c.get("stop_reason"), str)
                        and (not ids or ids[-1] not in eos)):
                    raise ServerError(f"{server.where()} stopped {sample.id!r} on an eos token it did not return")
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                rollouts.append(Rollout(
                    sample_id=sample.id, prompt_ids=tuple(ids_prompt), completion_ids=tuple(ids),
                    logprobs=tuple(float(x) for x in c["logprobs"]["token_logprobs"]), text=text,
                    finish_reason=c["finish_reason"], thinking_tokens=self._thinking_tokens(ids, text), index=j))
        return rollouts

    # ------------------------------------------------------------------------------------------ weights
    @property
    def version(self) -> int:
        """Weights version every server holds (the sync's counter; 0 = never synced)."""
        return self.sync.version

    def sync_weights(self, policy: Any | None = None) -> float:
        """Push ``policy``'s (default: the constructor's) weights to every server; returns seconds taken.

        Raises ``rlvr.rollout.weight_sync.WeightSyncError`` when a server's checksum disagrees with the trainer's."""
        return self.sync.push(self.policy if policy is None else policy, self.servers)

    def load_weights(self, policy: Any) -> None:
        """The trainer's hook name (``rlvr.train.loop_parts.sync_weights`` calls ``engine.load_weights(policy)``)."""
        self.sync_weights(policy)

    def close(self) -> None:
        """Stop the servers rlvr launched (attached ones keep running), delete the sync folder. Idempotent."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.sync.close()  # first: a gloo sync tells the servers to drop its groups
        shutdown(self.servers)
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
