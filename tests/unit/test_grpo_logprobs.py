"""Teacher-forced logprobs (rlvr.algo.logprobs): the shared-prompt forward equals the full forward, entropy is a
no-grad diagnostic by default and equals the log_softmax formula."""

from __future__ import annotations

import pytest
import torch

from rlvr.algo.logprobs import token_logprobs, token_logprobs_and_entropy


def _batch(tok, prompts, completions):
    """Prompt-major rows as RolloutBatch lays them out: left-padded prompts to P, right-padded completions to T."""
    p = max(len(x) for x in prompts)
    t = max(len(x) for x in completions)
    ids = torch.full((len(prompts), p + t), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (a, b) in enumerate(zip(prompts, completions)):
        ids[i, p - len(a):p], mask[i, p - len(a):p + len(b)] = torch.tensor(a), 1
        ids[i, p:p + len(b)] = torch.tensor(b)
    return ids, mask, p


def _reference(model, ids, mask, p, temperature):
    """The pre-sharing implementation: one full forward, log_softmax over [N, T, V]."""
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
    logits = logits[:, p - 1:-1].float() / temperature
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(-1, ids[:, p:].unsqueeze(-1)).squeeze(-1), -(logp.exp() * logp).sum(-1)


@pytest.mark.parametrize("t_max", [1, 9])
def test_shared_prompts_equal_the_full_forward(tiny, t_max):
    model, tok = tiny
    gen = torch.Generator().manual_seed(0)
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    a, b, c = enc("Start with 37. Add 4."), enc("Start with 5. Multiply by 3. Add 2."), enc("Start with 9.")
    prompts = [a, a, a, b, c, c, a]  # groups of 3, 1, 2 and 1 rows (a repeats later: a new group)
    lengths = [t_max, max(1, t_max - 3), t_max, 2 if t_max > 1 else 1, t_max, 1, t_max]
    completions = [torch.randint(3, 400, (n,), generator=gen).tolist() for n in lengths]
    ids, mask, p = _batch(tok, prompts, completions)
    comp_mask = mask[:, p:].bool()
    model.train()
    results = {}
    for share in (False, True):
        model.zero_grad()
        lp, ent = token_logprobs_and_entropy(model, ids, mask, p, temperature=0.8, share_prompts=share)
        assert not ent.requires_grad  # a diagnostic: no graph unless asked
        ((lp * comp_mask).sum() / comp_mask.sum()).backward()
        results[share] = lp.detach(), ent, [q.grad.clone() for q in model.parameters()]
    model.eval()
    with torch.no_grad():
        ref_lp, ref_ent = _reference(model, ids, mask, p, 0.8)
        plain = token_logprobs(model, ids, mask, p, temperature=0.8)
        plain_unshared = token_logprobs(model, ids, mask, p, temperature=0.8, share_prompts=False)
    for share, (lp, ent, _) in results.items():
        assert (lp - ref_lp)[comp_mask].abs().max() < 1e-6, share
        assert (ent - ref_ent)[comp_mask].abs().max() < 1e-6, share
    assert (plain - plain_unshared)[comp_mask].abs().max() < 1e-6
    for g_full, g_shared in zip(results[False][2], results[True][2]):
        torch.testing.assert_close(g_shared, g_full, rtol=1e-4, atol=1e-7)


def test_entropy_gradient_on_request(tiny):
    model, tok = tiny
    ids, mask, p = _batch(tok, [[5, 6, 7]] * 2, [[8, 9], [10, 11]])
    lp, ent = token_logprobs_and_entropy(model, ids, mask, p, entropy_grad=True)
    assert ent.requires_grad and lp.requires_grad
    ent.sum().backward()
    assert any(q.grad is not None and q.grad.abs().sum() > 0 for q in model.parameters())
    model.zero_grad()
    with torch.no_grad():
        _, ent_nograd = token_logprobs_and_entropy(model, ids, mask, p)
    torch.testing.assert_close(ent.detach(), ent_nograd, atol=1e-6, rtol=0)


def test_gradient_checkpointing_takes_the_full_forward(tiny):
    import copy

    model, tok = tiny
    model = copy.deepcopy(model)
    ids, mask, p = _batch(tok, [[5, 6, 7]] * 3, [[8, 9], [10, 11], [12]])
    with torch.no_grad():
        expected = token_logprobs(model, ids, mask, p, share_prompts=False)
    model.gradient_checkpointing_enable()
    model.train()
    lp = token_logprobs(model, ids, mask, p)  # no cache under checkpointing: must not try to share
    assert (lp.detach() - expected)[mask[:, p:].bool()].abs().max() < 1e-6
