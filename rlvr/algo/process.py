"""Process supervision: a verifier's per-step scores -> token-level advantages [N, T].

GRPO with outcome rewards gives every token of a completion the same advantage, so a correct step in a failed
completion is pushed down with the rest. DeepSeekMath (2402.03300, section 4.1.3, "process supervision RL with
GRPO") scores each reasoning step instead: the step scores of a group are normalised together,

    r~_j = (r_j - mean(R)) / std(R),   R = every step score of every completion of the prompt,

and token t gets the sum of the normalised scores of the steps that end at or after it (a return-to-go). We add
a discount ``gamma`` on later steps: token t in step k gets sum_{j >= k} gamma^(j - k) r~_j. gamma = 1 is the
paper; gamma = 0 credits each step with its own score only, which is the right credit when a step is judged
independently of the earlier ones (``arith_steps`` judges each line on the value the model carried into it, so
a later line's verdict says nothing about an earlier line). Tokens after the last step (the answer) get 0 here;
the outcome advantage, which this is added to (``algo.process_weight``), covers them.

Choices where the paper is silent:
- a completion with no scored step (no line matched, or the verifier broke or did not apply) gets 0 and is left
  out of its group's mean and std, like a NaN reward;
- a group whose step scores are all equal, or that has fewer than two steps, gets 0 (no contrast to learn from);
- population std, as in ``rlvr.algo.advantages``.

Steps arrive as character offsets into the completion text (``VerifyResult.steps``); ``char_ends_per_token``
maps them to the token that completes each step.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch


def char_ends_per_token(tokenizer: Any, ids: Sequence[int], text: str, cache: dict[int, str] | None = None) -> list[int]:
    """[T] for each completion token, the length of the text decoded up to and including it.

    ``text`` is ``tokenizer.decode(ids, skip_special_tokens=True)`` (how the engines build ``Rollout.text``). The
    fast path decodes each token alone (memoised in ``cache``) and sums the lengths; when the pieces do not add up
    to ``text`` (a character split over tokens, decoder clean-up) it decodes every prefix instead, O(T^2).
    """
    cache = {} if cache is None else cache
    missing = sorted({i for i in ids if i not in cache})
    if missing:
        pieces = tokenizer.batch_decode([[i] for i in missing], skip_special_tokens=True)
        cache.update(zip(missing, pieces))
    ends, total = [], 0
    for i in ids:
        total += len(cache[i])
        ends.append(total)
    if "".join(cache[i] for i in ids) == text:
        return ends
    return [len(tokenizer.decode(list(ids[:k + 1]), skip_special_tokens=True)) for k in range(len(ids))]


def step_tokens(steps: Sequence[tuple[int, float]], token_ends: Sequence[int]) -> list[tuple[int, float]]:
    """(token index that completes the step, score) per step: the first token whose decoded text reaches the
    step's end offset. Steps past the decoded text (cannot happen for offsets into the same text) are dropped."""
    out, t = [], 0
    for end, score in steps:
        while t < len(token_ends) and token_ends[t] < end:
            t += 1
        if t == len(token_ends):
            break
        out.append((t, float(score)))
    return out


def process_advantages(step_scores: Sequence[Sequence[tuple[int, float]] | None], group_size: int, width: int,
                       discount: float = 1.0, eps: float = 1e-6) -> torch.Tensor:
    """step_scores [N] (prompt-major, N = B*G): per completion its (token index, score) steps in order, or None
    -> advantages [N, T=width]; see the module docstring for every rule."""
    n = len(step_scores)
    if n % group_size:
        raise ValueError(f"{n} completions is not a whole number of groups of {group_size}")
    out = torch.zeros(n, width)  # [N, T]
    for g0 in range(0, n, group_size):
        group = [s or () for s in step_scores[g0:g0 + group_size]]  # [G] lists of steps
        pool = torch.tensor([score for steps in group for _, score in steps], dtype=torch.float64)  # [S]
        if pool.numel() < 2:
            continue
        mean, std = pool.mean(), pool.std(unbiased=False)
        if std <= 0:
            continue
        for i, steps in enumerate(group):
            ret = 0.0  # discounted sum of the normalised scores of step k and later ones (walking backwards)
            for k in range(len(steps) - 1, -1, -1):
                token, score = steps[k]
                ret = float((score - mean) / (std + eps)) + discount * ret
                start = steps[k - 1][0] + 1 if k > 0 else 0  # step k: the tokens after step k-1's up to its own
                out[g0 + i, start:min(token + 1, width)] = ret
    return out


def check_process_verifier(key: str, samples: Sequence[Any]) -> None:
    """Fail before training when no training prompt is scored by ``key`` (a typo, or a verifier the task lacks)."""
    from rlvr.rewards.runtime import parse_spec

    keys = {parse_spec(spec).key for s in samples for spec in s.verifiers}
    if key not in keys:
        raise ValueError(f"algo.process_verifier={key!r} scores none of the training prompts (their verifiers: "
                         f"{', '.join(sorted(keys)) or 'none'}); add it to task.verifiers (weight 0 keeps it out of "
                         "the reward) or set algo.process_verifier to one of them")


def round_process_advantages(results: Sequence[dict[str, Any]], rollouts: Sequence[Any], key: str, tokenizer: Any,
                             group_size: int, width: int, discount: float,
                             cache: dict[int, str]) -> tuple[torch.Tensor, dict[str, float]]:
    """Kept completions' verifier results [N] and rollouts [N] (prompt-major) -> (process advantages [N, T=width],
    ``process/*`` metrics: mean step score, steps per scored completion, share of completions scored)."""
    step_scores: list[list[tuple[int, float]] | None] = []
    for res, rollout in zip(results, rollouts):
        r = res.get(key)
        if r is None or r.error is not None or r.steps is None:  # did not apply, broke, or gives no steps
            step_scores.append(None)
            continue
        ends = char_ends_per_token(tokenizer, rollout.completion_ids, rollout.text, cache)
        step_scores.append(step_tokens(r.steps, ends))
    adv = process_advantages(step_scores, group_size, width, discount)  # [N, T]
    scores = [s for steps in step_scores if steps for _, s in steps]
    scored = [steps for steps in step_scores if steps is not None]
    metrics = {"process/step_score_mean": sum(scores) / len(scores) if scores else float("nan"),
               "process/steps_per_completion": sum(map(len, scored)) / len(scored) if scored else 0.0,
               "process/scored_frac": len(scored) / max(len(step_scores), 1)}
    return adv, metrics
