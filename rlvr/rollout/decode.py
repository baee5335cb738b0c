"""Our own batched decode loop for ``HFEngine`` (``decoder="loop"``): the rollout hot path without ``generate``.

What one call does (``decode``): rows = token prefixes, each continued by up to ``max_new[i]`` tokens.

1. Prefill once per *distinct* prefix: the G completions of a prompt share one prefix, so the prompt's forward runs
   once and its KV cache rows are copied G times (``Cache.batch_select_indices``), instead of G identical
   forwards. Prefixes are left-padded; ``position_ids`` come from the attention mask (cumsum - 1, as
   ``generate`` and ``rlvr.algo.logprobs`` compute them), and only the last position's logits are computed.
2. Per step, one forward of the last sampled token of every unfinished row against the KV cache. Two ways:
   ``_FusedStep`` for the Llama family (Llama/SmolLM, Qwen2/2.5, Qwen3, Mistral without sliding window:
   ``fused_support``) runs the model's own modules layer by layer but keeps the KV cache in buffers allocated once
   and does grouped-query attention without expanding keys/values (``generate`` with a ``DynamicCache`` copies
   the whole cache every step, twice: concatenation, then the GQA expansion SDPA needs under a padding mask);
   ``_ModelStep`` for every other model calls its forward with ``past_key_values`` and a 2-D attention mask grown
   by one column (the model builds its own 4-D mask).
3. Sampling and the logprob in the same pass over the fp32 logits ``z`` [rows, V]: ``s = z / tau``,
   ``lse = logsumexp(s)``; greedy takes ``argmax(z)``; sampling draws from ``softmax(s)`` (after top-p
   filtering when ``top_p < 1``) by inverse CDF: one uniform per row from the call's ``torch.Generator``, a float64
   cumulative sum and a binary search (``torch.multinomial`` measured 2-3x slower at V=413 and at V=152k).
   The recorded logprob is ``s[y] - lse`` = ``log softmax(z / tau)[y]``: the full tempered distribution, top-p not
   folded in (``rlvr.rollout.hf`` explains why). Greedy records ``log softmax(z)[y]``.
4. A row ends at its first ``stop_ids`` token or at the token that completes a stop string (``stopped``), or after
   ``max_new[i]`` tokens; the ending token is kept. Stop strings are found as in the ``generate`` path: the text
   of the row's last ``max(len(stop)) + 2`` tokens, decoded without special tokens, contains one.
5. Finished rows leave the batch (their cache rows are dropped), so late steps run on the rows still going, and
   the loop ends when every row is done.

Determinism: given the same prefixes, limits, stop sets, parameters, model and generator state, the output is
the same. A row's random numbers depend on which other rows are in the call (one uniform per unfinished row per
step, in row order), as in ``generate``.

Which models: decoder-only causal LMs whose forward takes ``input_ids``, ``attention_mask``, ``position_ids``,
``past_key_values`` and ``use_cache`` and returns a transformers ``Cache`` with ``batch_select_indices``
(``DynamicCache``: Llama, Qwen2/2.5/3, Mistral, Gemma, SmolLM, Phi-3 ... including sliding-window layers, whose
masks the model builds itself); the fused step only for the family above (tested on tiny random Qwen2, Llama,
Qwen3 and Mistral models against ``generate``), the model's forward for the rest (PEFT-wrapped models included).
``loop_support(model)`` says why a model is not supported at all (encoder-decoder, no ``past_key_values``
argument); a cache without ``batch_select_indices`` (e.g. a recurrent or paged cache) is detected after the first
prefill. ``HFEngine(decoder="auto")`` then falls back to ``generate``.

Numerics: the fused step computes attention as eager attention does (``q k^T * scaling``, fp32 softmax, ``@ v``),
the model's forward uses its configured kernel (SDPA): both agree with teacher forcing
(``rlvr.algo.logprobs``) to ~1e-6 in fp32, and greedy decoding gives ``generate``'s tokens.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, Callable, Sequence

import torch

from rlvr.rollout.budget import Segment


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set to -inf every token outside the smallest set whose probability reaches ``top_p`` (ties kept by sort)."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # [R, V]
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # [R, V] probability of the tokens ranked above this one
    remove_sorted = mass_before >= top_p  # the top token always has mass_before 0 < top_p, so one survives
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def sample_from_probs(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """[R] one token per row of ``probs`` [R, V] (non-negative, rows need not sum to 1), by inverse CDF.

    One uniform per row; a zero-probability token is never drawn: the threshold is kept strictly below the total
    mass, and the search returns the first index whose cumulative mass exceeds it.
    """
    cdf = probs.double().cumsum(dim=-1)  # [R, V] float64: no drift over a 150k vocabulary
    total = cdf[:, -1:]  # [R, 1]
    u = torch.rand(probs.shape[0], 1, dtype=torch.float64, device=probs.device, generator=generator)  # [R, 1]
    threshold = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, threshold, right=True).squeeze(1)  # [R]


def loop_support(model: Any) -> str | None:
    """None if ``decode`` can drive ``model``; otherwise why not (``HFEngine`` then uses ``generate``)."""
    config = getattr(model, "config", None)
    if config is None:
        return "the model has no config"
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder models need generate's encoder pass"
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "the model's forward has no inspectable signature"
    missing = [p for p in ("input_ids", "attention_mask", "position_ids", "past_key_values", "use_cache")
               if p not in params]
    if missing and not any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return f"the model's forward does not take {', '.join(missing)}"
    return None


class UnsupportedCache(RuntimeError):
    """The model's cache cannot drop or copy rows (raised before any token is sampled)."""


class _StopStrings:
    """Which rows' completions now end with a stop string: the text of their last few tokens contains one.

    A stop string of k characters lies within the last k + 2 tokens because every ordinary token decodes to at
    least one character (the ``generate`` path's ``_StopOnStrings`` uses the same window and decoding).
    """

    def __init__(self, tokenizer: Any, stops: Sequence[str]):
        self.tokenizer = tokenizer
        self.stops = tuple(stops)
        self.window = max(len(s) for s in self.stops) + 2

    def __call__(self, tails: torch.Tensor) -> list[bool]:
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)  # tails: [A, <= window]
        return [any(s in text for s in self.stops) for text in texts]


def _left_pad(prefixes: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    p = max(len(ids) for ids in prefixes)
    input_ids = torch.full((len(prefixes), p), pad_id, dtype=torch.long)  # [U, P]
    attention_mask = torch.zeros((len(prefixes), p), dtype=torch.long)  # [U, P]
    for i, ids in enumerate(prefixes):
        input_ids[i, p - len(ids):] = torch.tensor(list(ids), dtype=torch.long)
        attention_mask[i, p - len(ids):] = 1
    return input_ids.to(device), attention_mask.to(device)


FUSED_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral")


def fused_support(model: Any, cache: Any = None) -> str | None:
    """None if ``_FusedStep`` can run ``model``'s decode steps (its KV cache after prefill: ``cache``); else why not.

    The family: ``config.model_type`` in ``FUSED_MODEL_TYPES`` with the standard layout (``model.model`` holding
    ``embed_tokens``, ``layers``, ``norm``, ``rotary_emb``; ``model.lm_head``; per layer ``input_layernorm``,
    ``self_attn`` with ``q/k/v/o_proj``, ``post_attention_layernorm``, ``mlp``), full attention in every layer (no
    sliding window) and a plain ``DynamicLayer`` per layer in the prefill cache. A wrapped model (PEFT) or any other
    architecture runs the model's own forward per step instead.
    """
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in FUSED_MODEL_TYPES:
        return f"model_type {model_type!r} is not one of {', '.join(FUSED_MODEL_TYPES)}"
    base = getattr(model, "model", None)
    if base is None or not all(hasattr(base, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")) \
            or not hasattr(model, "lm_head"):
        return "not the standard <Arch>ForCausalLM layout (a wrapped model?)"
    for layer in base.layers:
        attn = getattr(layer, "self_attn", None)
        if not all(hasattr(layer, a) for a in ("input_layernorm", "post_attention_layernorm", "mlp")) or attn is None \
                or not all(hasattr(attn, a) for a in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling")):
            return f"{type(layer).__name__} is not the standard decoder layer layout"
        if getattr(attn, "sliding_window", None) is not None:
            return "sliding-window attention"
        if not hasattr(sys.modules.get(type(attn).__module__), "apply_rotary_pos_emb"):
            return f"{type(attn).__module__} has no apply_rotary_pos_emb"
    if getattr(config, "sliding_window", None) is not None and model_type == "mistral":
        return "sliding-window attention"
    if cache is not None:
        from transformers.cache_utils import DynamicLayer

        layers = getattr(cache, "layers", None)
        if layers is None or len(layers) != len(base.layers) or any(type(l) is not DynamicLayer for l in layers):
            return f"the prefill cache ({type(cache).__name__}) is not one plain DynamicLayer per layer"
    return None


class _ModelStep:
    """A decode step by the model's own forward: any causal LM whose ``Cache`` can select batch rows."""

    def __init__(self, model: Any, cache: Any, attention_mask: torch.Tensor, t_max: int):
        self.model, self.cache, self.attention_mask = model, cache, attention_mask  # mask: [A, P]

    def select(self, keep: torch.Tensor) -> None:
        self.cache.batch_select_indices(keep)
        self.attention_mask = self.attention_mask[keep]

    def __call__(self, token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """[A, V] next-token logits after feeding ``token`` [A] at ``position`` [A]."""
        mask = self.attention_mask
        self.attention_mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)  # [A, P + t + 1]
        out = self.model(input_ids=token.unsqueeze(1), attention_mask=self.attention_mask,
                         position_ids=position.unsqueeze(1), past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        return out.logits[:, -1]


class _FusedStep:
    """A decode step for the Llama family (``fused_support``) with a preallocated KV cache.

    The model's own modules do the work (embedding, RMSNorms, q/k/v/o projections, Qwen3's q/k norms, rotary
    embedding, ``apply_rotary_pos_emb``, MLP, LM head); only the attention core and the cache are ours:

    - keys/values live in buffers [A, KVH, P + T, d] allocated once per call; step t writes column P + t in place
      (``DynamicCache`` concatenates, copying the whole cache every step);
    - grouped-query attention without copies: the query is viewed as [A, KVH, H/KVH, d] against the un-repeated
      keys (``generate``'s SDPA path expands keys and values H/KVH times every step when a padding mask is present);
    - the padding mask is an additive bias [A, P + T], fixed after prefill (every row appends at the same column).

    The arithmetic is eager attention's (``q k^T * scaling + mask``, softmax, ``@ v``), always in fp32: for a
    bf16/fp16 model the cache buffers are fp32 (the keys and values are the projections' outputs, stored
    exactly) and the attention output is cast back before ``o_proj``. Fused SDPA kernels also accumulate in fp32;
    a bf16 ``q k^T`` would round the scores to ~3 digits and move sampled logprobs off the trainer's by ~0.1.
    """

    def __init__(self, model: Any, cache: Any, attention_mask: torch.Tensor, t_max: int):
        base = model.model
        self.layers, self.embed, self.norm = list(base.layers), base.embed_tokens, base.norm
        self.rotary = base.rotary_emb
        self.lm_head = model.lm_head
        attn = self.layers[0].self_attn
        self.rope: Callable = sys.modules[type(attn).__module__].apply_rotary_pos_emb
        self.head_dim = attn.head_dim
        self.qk_norm = hasattr(attn, "q_norm") and hasattr(attn, "k_norm")
        rows, p = attention_mask.shape
        self.col = p  # the column the next token's key/value goes to
        self.keys, self.values = [], []
        # Left-padding columns are masked below, but their keys/values must be finite: a fully masked query row
        # (a padding position) can come out of a fused attention kernel as NaN, the next layer projects that into
        # its cache, and 0 attention weight x NaN value is NaN in the matmul with the values.
        real = attention_mask.bool()[:, None, :, None]  # [A, 1, P, 1]
        for layer in cache.layers:
            k, v = layer.keys, layer.values  # [A, KVH, P, d]
            kbuf = k.new_empty((rows, k.shape[1], p + t_max, k.shape[3]), dtype=torch.float32)  # [A, KVH, P+T, d]
            vbuf = v.new_empty((rows, v.shape[1], p + t_max, v.shape[3]), dtype=torch.float32)
            kbuf[:, :, :p] = torch.where(real, k, torch.zeros((), dtype=k.dtype, device=k.device))
            vbuf[:, :, :p] = torch.where(real, v, torch.zeros((), dtype=v.dtype, device=v.device))
            self.keys.append(kbuf)
            self.values.append(vbuf)
        self.kv_heads = self.keys[0].shape[1]
        self.bias = torch.zeros((rows, p + t_max), dtype=torch.float32, device=attention_mask.device)  # [A, P+T]
        self.bias[:, :p].masked_fill_(attention_mask == 0, torch.finfo(torch.float32).min)

    def select(self, keep: torch.Tensor) -> None:
        self.keys = [k[keep] for k in self.keys]
        self.values = [v[keep] for v in self.values]
        self.bias = self.bias[keep]

    def __call__(self, token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """[A, V] next-token logits after feeding ``token`` [A] at ``position`` [A]."""
        rows, d, kvh, c = token.shape[0], self.head_dim, self.kv_heads, self.col
        x = self.embed(token.unsqueeze(1))  # [A, 1, C]
        cos, sin = self.rotary(x, position.unsqueeze(1))  # [A, 1, d]
        bias = self.bias[:, None, None, :c + 1]  # [A, 1, 1, L]
        for layer, kbuf, vbuf in zip(self.layers, self.keys, self.values):
            attn = layer.self_attn
            h = layer.input_layernorm(x)  # [A, 1, C]
            q = attn.q_proj(h).view(rows, 1, -1, d)  # [A, 1, H, d]
            k = attn.k_proj(h).view(rows, 1, kvh, d)  # [A, 1, KVH, d]
            v = attn.v_proj(h).view(rows, kvh, d)  # [A, KVH, d]
            if self.qk_norm:
                q, k = attn.q_norm(q), attn.k_norm(k)
            q, k = self.rope(q.transpose(1, 2), k.transpose(1, 2), cos, sin)  # [A, H, 1, d], [A, KVH, 1, d]
            kbuf[:, :, c] = k.squeeze(2)
            vbuf[:, :, c] = v
            heads = q.shape[1]
            qg = q.reshape(rows, kvh, heads // kvh, d).float()  # [A, KVH, H/KVH, d]
            scores = torch.matmul(qg, kbuf[:, :, :c + 1].transpose(2, 3)) * attn.scaling + bias  # [A, KVH, g, L]
            out = torch.matmul(torch.softmax(scores, dim=-1), vbuf[:, :, :c + 1])  # [A, KVH, g, d]
            x = x + attn.o_proj(out.reshape(rows, 1, heads * d).to(x.dtype))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        self.col += 1
        return self.lm_head(self.norm(x))[:, -1]  # [A, V]


@torch.no_grad()
def decode(model: Any, prefixes: Sequence[Sequence[int]], max_new: Sequence[int], *, pad_id: int,
           stop_ids: Sequence[int], stop_strings: Sequence[str] = (), tokenizer: Any = None,
           temperature: float = 1.0, top_p: float = 1.0, generator: torch.Generator | None = None,
           step: str = "auto") -> list[Segment]:
    """Continue ``prefixes[i]`` by up to ``max_new[i]`` tokens each; one ``Segment`` per row (module docstring).

    ``temperature == 0`` is greedy decoding (logprobs of the raw model). ``tokenizer`` is needed only for stop
    strings. ``step``: "fused" (``_FusedStep``; an error where ``fused_support`` says no), "model" (the model's
    forward each step) or "auto" (fused where supported). Raises ``UnsupportedCache`` (before sampling) when the
    model's cache cannot select rows.
    """
    if step not in ("auto", "fused", "model"):
        raise ValueError(f"step={step!r} must be auto, fused or model")
    rows = len(prefixes)
    if rows == 0:
        return []
    if any(len(ids) == 0 for ids in prefixes):
        raise ValueError("every prefix needs at least one token")
    device = model.device
    greedy = temperature == 0
    tau = 1.0 if greedy else float(temperature)
    limits = [max(0, int(m)) for m in max_new]
    t_max = max(limits)
    if t_max == 0:
        return [Segment(ids=[], logprobs=[], stopped=False) for _ in range(rows)]
    stopper = _StopStrings(tokenizer, stop_strings) if stop_strings else None

    # 1. prefill each distinct prefix once, then give every row its prefix's cache rows (rows with no tokens to
    #    sample are left out from the start)
    live = [r for r in range(rows) if limits[r] > 0]  # [A0]
    unique: dict[tuple[int, ...], int] = {}
    inverse = [unique.setdefault(tuple(prefixes[r]), len(unique)) for r in live]  # [A0] row -> distinct prefix
    input_ids, attention_mask = _left_pad(list(unique), pad_id, device)  # [U, P]
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # [U, P]
    kwargs = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
                **kwargs)
    cache = out.past_key_values
    if not hasattr(cache, "batch_select_indices"):
        raise UnsupportedCache(f"{type(cache).__name__} cannot select batch rows")
    logits = out.logits[:, -1]  # [U, V]
    if inverse != list(range(len(live))):
        index = torch.tensor(inverse, dtype=torch.long, device=device)  # [A0]
        cache.batch_select_indices(index)
        logits, attention_mask = logits[index], attention_mask[index]  # [A0, V], [A0, P]
    next_pos = attention_mask.sum(dim=1)  # [A0] position id of each row's next token
    why_not = fused_support(model, cache) if step != "model" else "step='model'"
    if step == "fused" and why_not is not None:
        raise ValueError(f"step='fused' cannot run {type(model).__name__}: {why_not}")
    forward = (_ModelStep if why_not is not None else _FusedStep)(model, cache, attention_mask, t_max)
    del cache, out

    # per-step state covers the A unfinished rows; `active` maps them to rows of the call
    active = torch.tensor(live, dtype=torch.long, device=device)  # [A]
    limit = torch.tensor(limits, dtype=torch.long, device=device)  # [R]
    stop_tensor = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=device)
    out_ids = torch.full((rows, t_max), pad_id, dtype=torch.long, device=device)  # [R, T]
    out_lp = torch.zeros((rows, t_max), dtype=torch.float32, device=device)  # [R, T]
    lengths = [0] * rows
    stopped = [False] * rows
    for t in range(t_max):
        # 3. sample and record the logprob from one pass over the logits
        z = logits.float()  # [A, V]
        scaled = z if tau == 1.0 else z / tau
        lse = torch.logsumexp(scaled, dim=-1)  # [A]
        if greedy:
            token = z.argmax(dim=-1)  # [A]
        elif top_p < 1.0:
            token = sample_from_probs(torch.softmax(top_p_filter(scaled, top_p), dim=-1), generator)
        else:
            token = sample_from_probs(torch.exp(scaled - lse.unsqueeze(1)), generator)
        out_ids[active, t] = token
        out_lp[active, t] = scaled.gather(1, token.unsqueeze(1)).squeeze(1) - lse

        # 4. which rows end here: a stop id, a stop string, or their token limit
        hit = torch.isin(token, stop_tensor)  # [A]
        done_now = hit | (limit[active] <= t + 1)  # [A]
        hit_list = hit.tolist()
        if stopper is not None:
            tails = out_ids[active, max(0, t + 1 - stopper.window):t + 1]  # [A, <= window]
            hit_list = [h or s for h, s in zip(hit_list, stopper(tails))]
            done_now = done_now | torch.tensor(hit_list, dtype=torch.bool, device=device)
        done_list = done_now.tolist()
        active_list = active.tolist()
        for k, row in enumerate(active_list):
            if done_list[k]:
                lengths[row], stopped[row] = t + 1, hit_list[k]
        if all(done_list):
            break

        # 5. drop finished rows from the batch, then one forward of the new tokens
        if any(done_list):
            keep = (~done_now).nonzero().squeeze(1)  # [A']
            forward.select(keep)
            active, token, next_pos = active[keep], token[keep], next_pos[keep]
        logits = forward(token, next_pos)  # [A, V]
        next_pos = next_pos + 1

    ids, lps = out_ids.cpu().tolist(), out_lp.cpu().tolist()
    return [Segment(ids=ids[r][:lengths[r]], logprobs=lps[r][:lengths[r]], stopped=stopped[r]) for r in range(rows)]
