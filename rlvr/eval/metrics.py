"""Sampling-based accuracy metrics: unbiased pass@k, majority vote maj@k, and their per-problem aggregation.

- ``pass_at_k(n, c, k)``: the probability that at least one of k samples drawn without replacement from n
  samples (c of them correct) is correct — Chen et al. 2021 (Codex, arXiv 2107.03374), the unbiased estimator
  ``1 - C(n-c, k) / C(n, k)``, computed as the product ``1 - prod_{i=n-c+1}^{n} (1 - k/i)`` so that it never forms
  the huge binomials (n=200 samples overflow float in the closed form).
- ``maj_at_k(answers, correct, k)``: majority vote over the *first* k samples' extracted, normalised answers
  (self-consistency, Wang et al. 2022). Samples with no extracted answer abstain; with no vote at all the problem
  scores 0. **Ties** count as the expected accuracy of breaking the tie uniformly at random: the fraction of the
  tied answers that are correct (a 2-2 tie between a right and a wrong answer scores 0.5). This is deterministic
  (no RNG, no dependence on sample order) and unbiased with respect to any random tie-break; "earliest answer
  wins" would instead reward whatever the sampler happened to produce first.
- ``aggregate(problems, k_list)``: dataset-level numbers. A sample whose verifier broke (error) or did not apply is
  *excluded* (it says nothing about the model), so a problem's effective n is its count of judged samples;
  pass@k and maj@k only average over problems with at least k judged samples (``pass@k/problems`` says how many).

Run the checks: ``OMP_NUM_THREADS=1 python -m pytest tests/unit/test_passk.py -q``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence


def _check_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (needs 1 <= k <= n, 0 <= c <= n)."""
    for name, value in (("n", n), ("c", c), ("k", k)):
        _check_int(name, value)
    if k < 1:
        raise ValueError(f"pass@k needs k >= 1, got k={k}")
    if k > n:
        raise ValueError(f"pass@k needs k <= n (samples per problem), got k={k} > n={n}: sample more or lower k")
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if n - c < k:  # every size-k subset contains a correct sample
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i): c factors, each in (0, 1)
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def maj_at_k(answers: Sequence[str | None], correct: Sequence[float], k: int) -> float:
    """Majority vote over the first k samples (see the module docstring for abstentions and ties).

    ``answers[i]``: the normalised extracted answer of sample i (None = no answer); ``correct[i]``: its score in
    [0, 1] (1 = right). An answer's correctness is the mean score of the first-k samples that gave it.
    """
    _check_int("k", k)
    if len(answers) != len(correct):
        raise ValueError(f"maj@k: {len(answers)} answers but {len(correct)} correctness values")
    if k < 1:
        raise ValueError(f"maj@k needs k >= 1, got k={k}")
    if k > len(answers):
        raise ValueError(f"maj@k needs k <= n (samples per problem), got k={k} > n={len(answers)}")
    first = [(a, float(s)) for a, s in zip(answers[:k], correct[:k]) if a is not None]
    if not first:
        return 0.0
    votes = Counter(a for a, _ in first)
    top = max(votes.values())
    tied = [a for a, v in votes.items() if v == top]
    score_of = {a: sum(s for b, s in first if b == a) / votes[a] for a in tied}
    return sum(score_of.values()) / len(tied)


@dataclass
class ProblemSamples:
    """The n samples of one problem. ``correct[i]`` is None when the verifier broke or did not apply."""

    correct: list[float | None]
    answers: list[str | None] = field(default_factory=list)  # normalised extracted answers; [] = unknown

    def judged(self) -> tuple[list[float], list[str | None]]:
        """(scores, answers) of the samples that were judged, in sample order."""
        answers = self.answers or [None] * len(self.correct)
        kept = [(s, a) for s, a in zip(self.correct, answers) if s is not None]
        return [s for s, _ in kept], [a for _, a in kept]


def aggregate(problems: Sequence[ProblemSamples], k_list: Sequence[int]) -> dict[str, float]:
    """pass@1 (mean score over judged samples, per problem, then over problems), pass@k and maj@k per k.

    pass@1 uses the mean score rather than pass_at_k(n, c, 1) = c/n so that fractional verifier scores count as
    they are; for 0/1 scores they are equal. pass@k counts a sample as correct when its score is >= 1.
    NaN when no problem qualifies (e.g. the verifier broke on every sample).
    """
    out: dict[str, float] = {}
    per_problem = [p.judged() for p in problems]
    means = [sum(s) / len(s) for s, _ in per_problem if s]
    out["pass@1"] = sum(means) / len(means) if means else math.nan
    out["problems_judged"] = float(len(means))
    for k in sorted(set(k_list)):
        _check_int("k", k)
        if k < 1:
            raise ValueError(f"k_list entries must be >= 1, got {k}")
        eligible = [(s, a) for s, a in per_problem if len(s) >= k]
        passes = [pass_at_k(len(s), sum(1 for x in s if x >= 1.0), k) for s, _ in eligible]
        majs = [maj_at_k(a, s, k) for s, a in eligible]
        if k > 1:  # pass@1 is the mean score above
            out[f"pass@{k}"] = sum(passes) / len(passes) if passes else math.nan
        out[f"maj@{k}"] = sum(majs) / len(majs) if majs else math.nan
    return out
