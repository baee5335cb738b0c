"""``HFEngine``: rollouts with transformers ``generate`` (KV cache, batched, left padding).

Which distribution the logprobs refer to
----------------------------------------
``Rollout.logprobs[t] = log softmax(z_t / tau)[y_t]`` where ``z_t`` are the model's raw fp32 logits at step t,
``y_t`` the sampled token and ``tau = params.temperature`` (``tau = 1`` for greedy decoding, i.e. the raw
model). Top-p truncation is *not* folded in: the logprob is that of the tempered full distribution, the same
quantity ``rlvr.grpo.logprobs.token_logprobs(..., temperature=tau)`` recomputes with teacher forcing, so
sampler and trainer logprobs are comparable token for token (with ``top_p=1`` it is exactly the sampling
distribution). This matches verl's convention (logits divided by temperature in the trainer) and vLLM's
``logprobs_mode="processed_logprobs"`` without top-p.

How: a single logits processor (the only one: temperature and top-p are applied here, not by transformers,
so no model-specific generation defaults such as a hub ``top_k=20`` or repetition penalty leak in) keeps the
previous step's log-softmax [rows, V] and gathers the sampled token's value at the next step. Memory is
O(rows x V), instead of the O(rows x T x V) that ``output_logits=True`` would hold.

Ending a completion: it stops at the first eos (``<|im_end|>`` for the chat models here; every id in the
generation config's ``eos_token_id`` and the tokenizer's eos) or at the token that completes one of
``params.stop`` — both give ``finish_reason="stop"`` and the ending token is kept in ``completion_ids`` so the
policy is trained to emit it. Otherwise the completion has exactly ``max_new_tokens`` tokens and
``finish_reason="length"``. A pad token the model samples before that is an ordinary token.

Determinism: with ``params.seed`` set, the global torch RNG is forked and seeded for the call (the caller's
RNG state is left untouched), so the same samples, n, params, ``batch_size`` and model give the same rollouts.
Different batching changes which random numbers each row draws.

Thinking budgets: with ``params.budget`` set, ``rlvr.rollout.budget.generate_with_budget`` runs the phases (think
up to B, force ``</think>`` + answer cue, answer up to A; "Wait" under min_thinking) and this engine only samples:
``_continue`` resumes each row from prompt + completion so far (a fresh prefill per phase: transformers has no
prefix cache), ``batch_size`` rows per ``generate`` call, each row with its own token limit. Logprobs keep the
convention above; forced tokens get 0.0 and ``Rollout.forced_mask``. ``budget=None`` is the plain path, unchanged.

Thinking tokens: with ``<think>``/``</think>`` as single tokens (the tiny model), the count is the number of
completion tokens strictly between them; a completion with no close tag counts everything after the open tag
(minus a final eos), and one with a close tag but no open tag (the template opened the block in the prompt)
counts everything before it. No tags at all: 0. Multi-token tags are located in the text and the span is
re-tokenized, which can differ from the sampled tokenization by a token or two.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import torch

from rlvr.rollout.base import RolloutEngine, SamplingParams
from rlvr.rollout.budget import Segment, generate_with_budget
from rlvr.rollout.types import Rollout
from rlvr.tasks.base import Message, Sample


def render_prompt(tokenizer: Any, messages: Sequence[Message]) -> list[int]:
    """Chat messages -> prompt token ids (template with generation prompt; the template adds any special tokens)."""
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set to -inf every token outside the smallest set whose probability reaches ``top_p`` (ties kept by sort)."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # [R, V]
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # [R, V] probability of the tokens ranked above this one
    remove_sorted = mass_before >= top_p  # the top token always has mass_before 0 < top_p, so one survives
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


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

    ``batch_size`` bounds the rows (prompts x n) per ``generate`` call; all n completions of a prompt share a
    call. The model is put in eval mode during generation and restored afterwards (the trainer shares it).
    """

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 64, think_open: str = "<think>",
                 think_close: str = "</think>"):
        self.model = model
        self.batch_size = batch_size
        self._init_tokens(tokenizer, model.generation_config, think_open, think_close)

    # ------------------------------------------------------------------------------------------ generate
    def generate(self, samples: Sequence[Sample], n: int = 1, params: SamplingParams | None = None) -> list[Rollout]:
        params = params or SamplingParams()
        if n < 1:
            raise ValueError(f"n={n} must be >= 1")
        prompts = [render_prompt(self.tokenizer, s.prompt) for s in samples]
        per_call = max(1, self.batch_size // n)
        device = self.model.device
        rollouts: list[Rollout] = []
        was_training = self.model.training
        self.model.eval()
        rng_devices = [device.index or 0] if device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=rng_devices):
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                if params.budget is not None:  # phases driven by rlvr.rollout.budget, sampled by _continue
                    continue_fn = partial(self._continue, params=params)
                    return generate_with_budget(self, continue_fn, samples, prompts, n, params)
                for start in range(0, len(samples), per_call):
                    chunk = range(start, min(start + per_call, len(samples)))
                    rollouts += self._generate_chunk([samples[i] for i in chunk], [prompts[i] for i in chunk], n,
                                                     params)
        finally:
            self.model.train(was_training)
        return rollouts

    def _generate_chunk(self, samples: list[Sample], prompts: list[list[int]], n: int,
                        params: SamplingParams) -> list[Rollout]:
        # row i*n + j is completion j of prompt i (prompt-major)
        prefixes = [ids for ids in prompts for _ in range(n)]
        segments = self._sample(prefixes, [params.max_new_tokens] * len(prefixes), self.eos_ids, params.stop,
                                params)
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
                  stop_strings: Sequence[str], seeds: Sequence[int | None], *, params: SamplingParams) -> list[Segment]:
        """The budget driver's primitive (``rlvr.rollout.budget.ContinueFn``), ``batch_size`` rows per call.

        ``seeds`` is not used: rows draw from the torch stream ``generate`` seeded from ``params.seed``, which is
        deterministic for the same inputs and batching (per-row seeds would need one generate call per row).
        """
        segments: list[Segment] = []
        for start in range(0, len(prefixes), self.batch_size):
            end = start + self.batch_size
            segments += self._sample(prefixes[start:end], max_new[start:end], stop_ids, stop_strings, params)
        return segments

    def _sample(self, prefixes: Sequence[Sequence[int]], max_new: Sequence[int], stop_ids: Sequence[int],
                stop_strings: Sequence[str], params: SamplingParams) -> list[Segment]:
        """One ``generate`` call: row i continues ``prefixes[i]`` by up to ``max_new[i]`` tokens.

        Each row is cut after its first ``stop_ids`` token or the token completing a stop string (``stopped``), or
        at ``max_new[i]`` tokens.
        """
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
