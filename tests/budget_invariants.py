"""Shared by the HF (tests/unit) and vLLM (tests/integration) budget-forcing tests: a tag-writing tiny model and
``check_rollout``, which re-derives every invariant of a budget-forced rollout from its token ids alone."""

from __future__ import annotations

import copy

import torch

from rlvr.rollout.budget import ThinkingBudget


def tag_prone(model, tokenizer, boosts=(("<think>", 3.5), ("</think>", 4.0), ("<|im_end|>", 3.5))):
    """A copy of ``model`` that writes thinking tags and eos often, by a pure weight edit (no extra modules).

    The random tiny model's final hidden states at completion positions share one direction u (projection
    10.2 +- 0.2), so adding (boost / 10.2) * u/|u| to a token's tied embedding raises its logit by ~boost
    everywhere, like an output bias. Unlike ``lm_head.bias`` this survives the copy into vLLM (Qwen2 has no LM-head
    bias there), so HF and vLLM sample the same tag-writing model and budget forcing meets natural closes, early
    closes and eos inside thinking.
    """
    m = copy.deepcopy(model)
    chat = [{"role": "user", "content": "Start with 37. Add 4. Multiply by 2."}]
    prompt = tokenizer(tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False),
                       add_special_tokens=False, return_tensors="pt")["input_ids"]  # [1, P]
    text = torch.randint(3, 400, (1, 48), generator=torch.Generator().manual_seed(0))  # [1, 48] a random completion
    with torch.no_grad():
        h = m(input_ids=torch.cat([prompt, text], 1), output_hidden_states=True).hidden_states[-1][0]  # [L, H]
        h = h[prompt.shape[1]:]  # completion positions, after the final norm
        u_hat = h.mean(0) / h.mean(0).norm()
        mu = (h @ u_hat).mean()
        emb = m.get_input_embeddings().weight  # [V, H], tied with the LM head
        for tag, boost in boosts:
            emb[tokenizer.convert_tokens_to_ids(tag)] += boost / mu * u_hat
    return m


def forced_runs(r, upto: int | None = None) -> list[tuple[int, int]]:
    """[(start, end)] of the maximal runs of forced tokens in ``r.completion_ids[:upto]``."""
    mask, runs, k = (r.forced_mask or (False,) * r.num_tokens)[:upto], [], 0
    while k < len(mask):
        if mask[k]:
            end = k
            while end < len(mask) and mask[end]:
                end += 1
            runs.append((k, end))
            k = end
        else:
            k += 1
    return runs


def check_rollout(engine, r, budget: ThinkingBudget, max_new: int, prompt_opens: bool = False) -> None:
    """Every invariant of one budgeted rollout, from its token ids."""
    tok, ids = engine.tokenizer, list(r.completion_ids)
    open_id, close_id = engine.think_ids
    eos = set(engine.eos_ids)
    encode = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    b, t = budget.thinking, r.num_tokens
    forced = r.forced_mask or (False,) * t

    assert t <= max_new and len(r.logprobs) == len(forced) == t
    assert r.text == tok.decode(ids, skip_special_tokens=True)
    assert all(lp == 0.0 for lp, f in zip(r.logprobs, forced) if f), "forced tokens must have logprob 0"
    assert all(lp <= 0.0 for lp in r.logprobs)
    if r.forced_mask:
        assert any(r.forced_mask), "forced_mask is () when nothing was forced"
    assert not eos & set(ids[:-1]), "nothing follows an eos"

    # the thinking count: tokens inside the block up to its (single remaining) close tag, wait cues included
    if b is not None:
        assert r.thinking_tokens <= b
    if close_id in ids:
        upto = ids[:ids.index(close_id) + 1]
        expected = engine._thinking_tokens(upto, "")
    else:  # ended inside the block: the plain count, plus the prompt-opened case it cannot see
        expected = engine._thinking_tokens(ids, "")
        if prompt_opens and open_id not in ids:
            expected = t - (1 if ids and ids[-1] in eos else 0)
    assert r.thinking_tokens == expected, (r.thinking_tokens, expected, r.text)

    # the forced end of thinking: the first close tag (earlier sampled ones were dropped for a wait cue or ended
    # thinking), preceded by the forced open tag when B = 0
    end_start = end_stop = t
    if r.budget_forced:
        assert r.thinking_tokens == b, "thinking is cut exactly at B"
        expected_forced = ([open_id] if b == 0 and not prompt_opens else []) + [close_id] + encode(budget.answer_cue)
        end_start = ids.index(close_id) - (1 if b == 0 and not prompt_opens else 0)
        end_stop = min(t, end_start + len(expected_forced))
        assert ids[end_start:end_stop] == expected_forced[:end_stop - end_start]
        assert all(forced[end_start:end_stop]) and not any(forced[end_stop:]), "only the answer follows, sampled"
        answer = ids[end_stop:]
        if end_stop - end_start < len(expected_forced):  # max_new_tokens cut the forced tokens
            assert t == max_new and r.finish_reason == "length"
        else:
            assert 1 <= len(answer) <= budget.answer or (not answer and t == max_new)
            if len(answer) == budget.answer and answer[-1] not in eos:
                assert r.finish_reason == "length"
    elif close_id in ids:
        assert not forced[ids.index(close_id)], "only a budget cut forces the close tag"

    # wait cues: the forced runs before the forced end, each the cue (or its start, when max_new_tokens cut it)
    # (two cues in a row, when the model closes again at once, form one run: split runs cue by cue)
    cue = encode(budget.wait_cue)
    waits = [ids[k:min(k + len(cue), e)] for s, e in forced_runs(r, end_start) for k in range(s, e, len(cue))]
    assert len(waits) == r.waits <= budget.max_waits
    for k, w in enumerate(waits):
        assert w == cue or (k == len(waits) - 1 and t == max_new and w == cue[:len(w)])

    if r.finish_reason == "stop":
        assert ids[-1] in eos and not forced[-1]
    else:
        assert ids[-1] not in eos
        answer_cut = r.budget_forced and t - end_stop == budget.answer
        assert t == max_new or answer_cut


def generate_checked(engine, samples, *, n: int, max_new: int, seed: int = 0, temperature: float = 1.0,
                     **budget_kw) -> list:
    """``engine.generate`` under ``ThinkingBudget(**budget_kw)``, every rollout checked by :func:`check_rollout`."""
    from rlvr.rollout.base import SamplingParams

    budget = ThinkingBudget(**budget_kw)
    params = SamplingParams(max_new_tokens=max_new, seed=seed, temperature=temperature, budget=budget)
    rollouts = engine.generate(samples, n=n, params=params)
    assert len(rollouts) == len(samples) * n
    for i, r in enumerate(rollouts):
        assert r.sample_id == samples[i // n].id and r.index == i % n
        check_rollout(engine, r, budget, max_new)
    return rollouts
