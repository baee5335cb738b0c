"""Derived defaults: a field whose default follows another field unless the user sets it.

A default written as a constant can contradict a value the user did set (``eval.n=4`` with a fixed
``k_list=[1, 4, 8]`` is an error the user never asked for). Such defaults are OmegaConf interpolations through
the resolvers registered here, so they follow their source wherever a config is built: Hydra composition,
``OmegaConf.structured`` + merge (the pipeline's stage configs), and stage overrides. ``rlvr.config.loading``
resolves them before validation, so a command body only ever sees concrete values.

Derived defaults (field: rule):

- ``EvalConfig.k_list`` (``eval.*``, ``budget_eval.*``): the powers of 4 below ``n``, then ``n`` itself:
  n=8 -> [1, 4, 8], n=4 -> [1, 4], n=2 -> [1, 2], n=1 -> [1], n=32 -> [1, 4, 16, 32].
- ``GRPOConfig.budget_eval_every``: ``grpo.max_steps`` (a plain ``${.max_steps}`` interpolation).
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

K_LIST_RESOLVER = "rlvr.k_list"
# Relative to the section holding the field: each EvalConfig follows its own n.
K_LIST_DEFAULT = "${" + K_LIST_RESOLVER + ":${.n}}"


def default_k_list(n: int) -> list[int]:
    """pass@k / maj@k values for ``n`` samples: 1, 4, 16, ... below n, then n (n < 1 gives [1]; validation
    then reports n itself)."""
    n = int(n)
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 4
    return ks + [max(n, 1)]


def follow_n(before: Any, after: Any) -> bool:
    """``after`` is an eval section built from the resolved ``before`` and then given another ``n`` (a pipeline
    stage override): let its k_list follow the new n when it is still ``before``'s derived default. True if
    it changed. (Resolving at load fixes k_list, so a later change of n alone would otherwise contradict it.)"""
    if after.n == before.n or list(after.k_list) != list(before.k_list) or \
            list(before.k_list) != default_k_list(before.n):
        return False
    after.k_list = default_k_list(after.n)
    return True


def register_resolvers() -> None:
    """Idempotent; runs when ``rlvr.config`` is imported, before any config is built."""
    if not OmegaConf.has_resolver(K_LIST_RESOLVER):
        OmegaConf.register_new_resolver(K_LIST_RESOLVER, default_k_list)


register_resolvers()
