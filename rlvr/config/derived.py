"""Derived defaults: a field whose default follows another field unless the user sets it.

A default written as a constant can contradict a value the user did set (``eval.n=4`` with a fixed
``k_list=[1, 4, 8]`` is an error the user never asked for). Such defaults are OmegaConf interpolations through
the resolvers registered here, so they follow their source wherever a config is built: Hydra composition,
``OmegaConf.structured`` + merge (the pipeline's stage configs), and stage overrides. ``rlvr.config.loading``
resolves them before validation, so a command body only ever sees concrete values.

Derived defaults (field: rule):

- ``EvalConfig.k_list`` (``eval.*``, ``budget_eval.*``): the powers of 4 below ``n``, then ``n`` itself:
  n=8 -> [1, 4, 8], n=4 -> [1, 4], n=2 -> [1, 2], n=1 -> [1], n=32 -> [1, 4, 16, 32].
- Size-based defaults (``${rlvr.by_size:${..model},<small>,<large>}``): one value for a small model (at most
  ``rlvr.config.model_size.SMALL_MODEL_PARAMS`` = 20M parameters, counted from the model's configuration: the
  tiny model is ~1M) and another for a large or unknown one (SmolLM2-135M and every pretrained model). The small
  value is what these fields always were, so tiny-model runs are unchanged:

  - ``GRPOConfig.budget_eval_every``: small ``grpo.max_steps`` (a sweep at the start and the end), large 0 (off);
  - ``GRPOConfig.eval_num_problems``: small 100, large 50;
  - ``SFTConfig.eval_num_problems``: small 200, large 100;
  - ``SFTConfig.learning_rate``: small 3e-3 (the tiny model learns from scratch), large 1e-5 (pretrained).
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

K_LIST_RESOLVER = "rlvr.k_list"
# Relative to the section holding the field: each EvalConfig follows its own n.
K_LIST_DEFAULT = "${" + K_LIST_RESOLVER + ":${.n}}"
BY_SIZE_RESOLVER = "rlvr.by_size"


def by_size(small: object, large: object) -> str:
    """The interpolation of a size-based default for a field of a section at the config's root (``grpo``,
    ``sft``): ``small`` for a small model, ``large`` otherwise. Either may itself be an interpolation."""
    return "${" + BY_SIZE_RESOLVER + ":${..model}," + f"{small},{large}" + "}"


def pick_by_size(model: Any, small: Any, large: Any) -> Any:
    """The ``rlvr.by_size`` resolver: ``small`` when ``model`` (the model section) is small, else ``large``."""
    from rlvr.config.model_size import is_small

    return small if is_small(model) else large


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
    if not OmegaConf.has_resolver(BY_SIZE_RESOLVER):
        OmegaConf.register_new_resolver(BY_SIZE_RESOLVER, pick_by_size)


register_resolvers()
