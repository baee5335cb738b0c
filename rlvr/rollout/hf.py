"""``HFEngine``: rollouts from a transformers causal LM (KV cache, batched, left padding).

Two decoders sample the same distribution with the same contract (fields, finish reasons, logprob convention):

- ``decoder="loop"`` (``rlvr.rollout.decode``): our own decode loop: one prefill per distinct prompt (the G
  completions share it), one single-token forward per step against the KV cache, sampling and the sampled
  token's logprob in one pass over the logits, finished rows dropped from the batch. The fast path.
- ``decoder="generate"``: transformers ``generate`` with a logits processor that records the logprobs (below).
- ``decoder="auto"`` (default): the loop for decoder-only models whose forward takes ``past_key_values`` and whose
  cache can select rows (``rlvr.rollout.decode.loop_support``; a cache that cannot is detected at the first
  call), ``generate`` otherwise. ``HFEngine.decoder_used`` says which one ran.

Greedy output is the same token for token (up to float ties: the loop's matmuls see a different batch once rows
are dropped); sampled outputs differ between the decoders for the same seed (different random streams), each
deterministic by seed. Measured with ``scripts/bench_rollout.py`` (B=8 x G=8, 64 new tokens, fp32, 1 CPU thread,
loaded 2-core machine): the loop takes 0.6-0.65x ``generate``'s time on the random tiny model (completions run to
the cap) and ~0.45-0.5x on an SFT checkpoint (completions stop at ~23 tokens; finished rows leave the batch).

Which distribution the logprobs refer to
----------------------------------------
``Rollout.logprobs[t] = log softmax(z_t / tau)[y_t]`` where ``z_t`` are the model's raw fp32 logits at step t,
``y_t`` the sampled token and ``tau = params.temperature`` (``tau = 1`` for greedy decoding, i.e. the raw
model). Top-p truncation is *not* folded in: the logprob is that of the tempered full distribution, the same
quantity ``rlvr.algo.logprobs.token_logprobs(..., temperature=tau)`` recomputes with teacher forcing, so
sampler and trainer logprobs are comparable token for token (with ``top_p=1`` it is exactly the sampling
distribution). This matches verl's convention (logits divided by temperature in the trainer) and vLLM's
``logprobs_mode="processed_logprobs"`` without top-p.

How (``generate``): a single logits processor (the only one: temperature and top-p are applied here, not by
transformers, so no model-specific generation defaults such as a hub ``top_k=20`` or repetition penalty leak in)
keeps the previous step's log-softmax [rows, V] and gathers the sampled token's value at the next step. Memory is
O(rows x V), instead of the O(rows x T x V) that ``output_logits=True`` would hold. (The loop applies no
generation-config defaults either.)

Ending a completion: it stops at the first eos (``<|im_end|>`` for the chat models here; every id in the
generation config's ``eos_token_id`` and the tokenizer's eos) or at the token that completes one of
``params.stop`` — both give ``finish_reason="stop"`` and the ending token is kept in ``completion_ids`` so the
policy is trained to emit it. Otherwise the completion has exactly ``max_new_tokens`` tokens and
``finish_reason="length"``. A pad token the model samples before that is an ordinary token.

Determinism: with ``params.seed`` set, the loop draws from a ``torch.Generator`` seeded with it and ``generate``
from the global torch RNG, forked and seeded for the call; either way the caller's RNG state is left untouched,
and the same samples, n, params, ``batch_size``, decoder and model give the same rollouts. Different batching
changes which random numbers each row draws. ``seed=None`` draws from (and advances) the global RNG.

Thinking budgets: with ``params.budget`` set, ``rlvr.rollout.budget.generate_with_budget`` runs the phases (think
up to B, force ``</think>`` + answer cue, answer up to A; "Wait" under min_thinking) and this engine only samples:
``_continue`` resumes each row from prompt + completion so far (a fresh prefill per phase: no prefix cache is
kept between calls), ``batch_size`` rows per call, each row with its own token limit. Logprobs keep the
convention above; forced tokens get 0.0 and ``Rollout.forced_mask``. ``budget=None`` is the plain path, unchanged.

Thinking tokens: with ``<think>``/``</think>`` as single tokens (the tiny model), the count is the number of
completion tokens strictly between them; a completion with no close tag counts everything after the open tag
(minus a final eos), and one with a close tag but no open tag (the template opened the block in the prompt)
counts everything before it. No tags at all: 0. Multi-token tags are located in the text and the span is
re-tokenized, which can differ from the sampled tokenization by a token or two.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial
from typing import Any, Sequence

import torch

from rlvr.rollout.base import RolloutEngine, SamplingParams
from rlvr.rollout.budget import Segment, generate_with_budget
from rlvr.rollout.decode import UnsupportedCache, decode, loop_support, top_p_filter
from rlvr.rollout.types import Rollout
from rlvr.tasks.base import Sample

DECODERS = ("auto", "loop", "generate")


_top_p_filter = top_p_filter  # both decoders truncate the same way


class _SamplerLogprobs:
    """Logits processor: applies temperature/top-p and records log softmax(z / tau) of each sampled token."""

    def __init__(self, params: SamplingParams):
        self.params = params
        self.prev: torch.Tensor | None = None  # [R, V] log-probs of the previous step
        self.per_step: list[torch.Tensor] = []  # T_gen x [R]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.prev is not None:  # input_ids[:, -1] is the token sampled from self.prev
            self.per_step.append(self.prev.gather(1, input_ids[:, -1:]).squeeze(1))
        scaled = scores.float() / self.params.logprob_temperature  # [R, V]
        self.prev = torch.log_softmax(scaled, dim=-1)
        if self.params.greedy or self.params.top_p >= 1.0:
            return scaled  # argmax is unchanged by the scale
        return _top_p_filter(scaled, self.params.top_p)

    def token_logprobs(self, generated: torch.Tensor) -> torch.Tensor:
        """[R, T_gen] log-probs of ``generated`` [R, T_gen]."""
        steps = list(self.per_step)
        t_gen = generated.shape[1]
        if len(steps) < t_gen and self.prev is not None:  # the last token has no following call
            steps.append(self.prev.gather(1, generated[:, -1:]).squeeze(1))
        # generate may run a step past the stop and undo it; keep one entry per returned token
        return torch.stack(steps[:t_gen], dim=1) if t_gen else generated.new_zeros((generated.shape[0], 0)).float()


class _StopOnStrings:
    """Stopping criterion: a row stops once the text of its last few completion tokens contains a stop string.

    Looking at a short token window (not the whole completion) keeps each step O(window); a stop string of k
    characters lies within the last k + 2 tokens because every ordinary token decodes to at least one character.
    Records the completion length at which each row first matched, so the engine ends it there.
    """

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_len: int, rows: int):
        self.tokenizer = tokenizer
        self.stops = tuple(stops)
        self.prompt_len = prompt_len
        self.window = max(len(s) for s in self.stops) + 2
        self.stopped_at: list[int | None] = [None] * rows

    def __call__(self, input_ids: torch.Tensor, scores: Any = None, **kwargs: Any) -> torch.Tensor:
        completion = input_ids[:, self.prompt_len:]  # [R, t]
        tails = self.tokenizer.batch_decode(completion[:, -self.window:], skip_special_tokens=True)
        hit = [any(s in text for s in self.stops) for text in tails]
        for row, h in enumerate(hit):
            if h and self.stopped_at[row] is None:
                self.stopped_at[row] = completion.shape[1]
        return torch.tensor(hit, dtype=torch.bool, device=input_ids.device)


class _StopAtLength:
    """Stopping criterion: row i is done after ``limits[i]`` new tokens (rows of one call may differ)."""

    def __init__(self, limits: Sequence[int], prompt_len: int):
        self.limits = torch.tensor(list(limits), dtype=torch.long)  # [R]
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: Any = None, **kwargs: Any) -> torch.Tensor:
        return (input_ids.shape[1] - self.prompt_len >= self.limits).to(input_ids.device)  # [R] bool


class HFEngine(RolloutEngine):
    """Rollouts from a transformers causal LM. See the module docstring for the logprob and stop semantics.

    ``batch_size`` bounds the rows (prompts x n) per decoder call; all n completions of a prompt share a call.
    ``decoder``: "auto" (the loop where the model supports it, else ``generate``), "loop" (an unsupported model is
    an error) or "generate"; ``loop_step``: how the loop runs a decode step ("auto": the fused Llama-family step
    where ``rlvr.rollout.decode.fused_support`` allows, else the model's forward; "fused"; "model"). The model is
    put in eval mode during generation and restored afterwards (the trainer shares it).
    """

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 64, think_open: str = "<think>",
                 think_close: str = "</think>", decoder: str = "auto", loop_step: str = "auto"):
        if decoder not in DECODERS:
            raise ValueError(f"decoder={decoder!r} must be one of {', '.join(DECODERS)}")
        self.model = model
        self.batch_size = batch_size
        self.decoder = decoder
        self.loop_step = loop_step  # rlvr.rollout.decode.decode's `step`: auto | fused | model (for measurements)
        why_not = loop_support(model)
        if decoder == "loop" and why_not is not None:
            raise ValueError(f"decoder='loop' cannot drive {type(model).__name__}: {why_not}; use decoder='generate'")
        self.decoder_used = "generate" if decoder == "generate" or why_not is not None else "loop"
        self._init_tokens(tokenizer, model.generation_config, think_open, think_close)

    # ------------------------------------------------------------------------------------------ generate
    def generate(self, samples: Sequence[Sample], n: int = 1, params: SamplingParams | None = None) -> list[Rollout]:
        params, prompts = self._request(samples, n, params)
        per_call = max(1, self.batch_size // n)
        device = self.model.device
        rollouts: list[Rollout] = []
        was_training = self.model.training
        self.model.eval()
        rng_devices = [device.index or 0] if device.type == "cuda" else []
        seeded = params.seed is not None
        # the loop's own generator; generate draws from the global RNG, forked so the caller's stream is untouched
        generator = torch.Generator(device=device).manual_seed(params.seed) if seeded else None
        try:
            with torch.random.fork_rng(devices=rng_devices) if seeded else nullcontext():
                if seeded:
                    torch.manual_seed(params.seed)
                if params.budget is not None:  # phases driven by rlvr.rollout.budget, sampled by _continue
                    continue_fn = partial(self._continue, params=params, generator=generator)
                    return generate_with_budget(self, continue_fn, samples, prompts, n, params)
                for start in range(0, len(samples), per_call):
                    chunk = range(start, min(start + per_call, len(samples)))
                    rollouts += self._generate_chunk([samples[i] for i in chunk], [prompts[i] for i in chunk], n,
                                                     params, generator)
        finally:
            self.model.train(was_training)
        return rollouts

    def _generate_chunk(self, samples: list[Sample], prompts: list[list[int]], n: int, params: SamplingParams,
                        generator: torch.Generator | None = None) -> list[Rollout]:
        # row i*n + j is completion j of prompt i (prompt-major)
        prefixes = [ids for ids in prompts for _ in range(n)]
        segments = self._sample(prefixes, [params.max_new_tokens] * len(prefixes), self.eos_ids, params.stop,
                                params, generator)
        result = []
        for row, seg in enumerate(segments):
            text = self.tokenizer.decode(seg.ids, skip_special_tokens=True)
            result.append(Rollout(
                sample_id=samples[row // n].id,
                prompt_ids=tuple(prompts[row // n]),
                completion_ids=tuple(seg.ids),
                logprobs=tuple(seg.logprobs),
                text=text,
                finish_reason="stop" if seg.stopped else "length",
                thinking_tokens=self._thinking_tokens(seg.ids, text),
                index=row % n,
            ))
        return result

    def _continue(self, prefixes: Sequence[Sequence[int]], max_new: Sequence[int], stop_ids: Sequence[int],
                  stop_strings: Sequence[str], seeds: Sequence[int | None], *, params: SamplingParams,
                  generator: torch.Generator | None = None) -> list[Segment]:
        """The budget driver's primitive (``rlvr.rollout.budget.ContinueFn``), ``batch_size`` rows per call.

        ``seeds`` is not used: rows draw from the stream seeded once from ``params.seed`` (the loop's
        ``generator``, or the global RNG ``generate`` uses), which is deterministic for the same inputs and
        batching (per-row seeds would need one call per row).
        """
        segments: list[Segment] = []
        for start in range(0, len(prefixes), self.batch_size):
            end = start + self.batch_size
            segments += self._sample(prefixes[start:end], max_new[start:end], stop_ids, stop_strings, params,
                                     generator)
        return segments

    def _sample(self, prefixes: Sequence[Sequence[int]], max_new: Sequence[int], stop_ids: Sequence[int],
                stop_strings: Sequence[str], params: SamplingParams,
                generator: torch.Generator | None = None) -> list[Segment]:
        """One decoder call: row i continues ``prefixes[i]`` by up to ``max_new[i]`` tokens.

        Each row is cut after its first ``stop_ids`` token or the token completing a stop string (``stopped``), or
        at ``max_new[i]`` tokens.
        """
        if self.decoder_used == "loop":
            try:
                return decode(self.model, prefixes, max_new, pad_id=self.pad_id, stop_ids=stop_ids,
                              stop_strings=stop_strings, tokenizer=self.tokenizer, temperature=params.temperature,
                              top_p=params.top_p, generator=generator, step=self.loop_step)
            except UnsupportedCache as err:  # raised before any token is sampled: nothing to undo
                if self.decoder == "loop":
                    raise ValueError(f"decoder='loop' cannot drive {type(self.model).__name__}: {err}; "
                                     "use decoder='generate'") from err
                self.decoder_used = "generate"
        return self._sample_generate(prefixes, max_new, stop_ids, stop_strings, params)

    def _sample_generate(self, prefixes: Sequence[Sequence[int]], max_new: Sequence[int], stop_ids: Sequence[int],
                         stop_strings: Sequence[str], params: SamplingParams) -> list[Segment]:
        """``_sample`` with one transformers ``generate`` call."""
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        p = max(len(ids) for ids in prefixes)
        rows = len(prefixes)
        input_ids = torch.full((rows, p), self.pad_id, dtype=torch.long)  # [R, P] left-padded
        attention_mask = torch.zeros((rows, p), dtype=torch.long)  # [R, P]
        for i, ids in enumerate(prefixes):
            input_ids[i, p - len(ids):] = torch.tensor(list(ids), dtype=torch.long)
            attention_mask[i, p - len(ids):] = 1
        input_ids, attention_mask = input_ids.to(self.model.device), attention_mask.to(self.model.device)

        recorder = _SamplerLogprobs(params)
        stopper = _StopOnStrings(self.tokenizer, stop_strings, p, rows) if stop_strings else None
        criteria = [stopper] if stopper else []
        if len(set(max_new)) > 1:  # rows with a smaller limit stop early instead of sampling tokens thrown away
            criteria.append(_StopAtLength(max_new, p))
        # Temperature/top-p live in `recorder`. transformers fills every unset field of `gen_cfg` from the
        # model's own generation config (a hub checkpoint may carry top_k=20, repetition_penalty=1.05, ...), which
        # would add processors after ours; a blank model config for the duration of the call prevents that.
        sampling = {"top_k": 0} if not params.greedy else {}  # top_k=0 disables the global default top_k=50
        gen_cfg = GenerationConfig(
            max_new_tokens=max(max_new), do_sample=not params.greedy, temperature=1.0, top_p=1.0,
            eos_token_id=list(stop_ids), pad_token_id=self.pad_id, use_cache=True, return_dict_in_generate=True,
            **sampling,
        )
        saved_cfg = self.model.generation_config
        self.model.generation_config = GenerationConfig()
        try:
            out = self.model.generate(
                input_ids=input_ids, attention_mask=attention_mask, generation_config=gen_cfg,
                logits_processor=LogitsProcessorList([recorder]),
                stopping_criteria=StoppingCriteriaList(criteria) if criteria else None,
            )
        finally:
            self.model.generation_config = saved_cfg
        generated = out.sequences[:, p:]  # [R, T_gen]
        logprobs = recorder.token_logprobs(generated).cpu()  # [R, T_gen]
        generated = generated.cpu()

        segments = []
        stops = set(stop_ids)
        for row in range(rows):
            ids = generated[row].tolist()
            end, stopped = min(len(ids), max_new[row]), False
            for t, tok in enumerate(ids[:end]):
                if tok in stops:
                    end, stopped = t + 1, True
                    break
            if stopper is not None and stopper.stopped_at[row] is not None and stopper.stopped_at[row] <= end:
                end, stopped = stopper.stopped_at[row], True
            segments.append(Segment(ids=ids[:end], logprobs=logprobs[row, :end].tolist(), stopped=stopped))
        return segments
