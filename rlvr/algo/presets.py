"""The GRPO-family presets (``resolve_algo``, ``PRESETS``) and ``validate_algo``; the knobs are ``AlgoConfig``
(rlvr.config.algo).

Papers (arXiv ids), cited again in each field's help:
- GRPO: DeepSeekMath, 2402.03300 — group-mean baseline, group-std scaling, per-sequence mean, k3 KL to a reference.
- Dr. GRPO: "Understanding R1-Zero-Like Training", 2503.20783 — no std scaling, constant length normaliser.
- DAPO: 2503.14476 — clip-higher, token-mean, dynamic sampling, soft overlong punishment, no KL.
- GSPO: Group Sequence Policy Optimization, 2507.18071 — sequence-level ratio (geometric mean), tiny clip range.
- CISPO: MiniMax-M1, 2506.13585 — clipped stop-gradient IS weight times log-prob; no token is dropped.
- TIS: Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL training" — truncated
  importance weight min(pi_trainer / pi_sampler, C) correcting the sampler/trainer mismatch.

``resolve_algo("dapo", clip_high=0.3)`` gives the DAPO knob set with one override. The presets have one source:
conf/algo/<name>.yaml, each the knobs it changes from ``AlgoConfig()`` (which is GRPO), the same files Hydra
composes for ``algo=<name>``. ``PRESETS`` is derived from them: preset name -> every knob any preset sets, with
that preset's value (a table to read and compare, not to edit). ``validate_algo`` returns every problem as one
message each (what, why, fix) so config validation can report them all at once.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rlvr.config.algo import AGGREGATIONS, LOSSES, OVERLONG, STD_SCALINGS, AlgoConfig, preset_knobs

_CHANGES = preset_knobs()  # name -> the knobs its YAML sets


def resolve_algo(preset: str = "grpo", **overrides: Any) -> AlgoConfig:
    """The ``AlgoConfig`` of ``preset`` with ``overrides`` applied on top; unknown presets/keys raise ValueError."""
    if preset not in _CHANGES:
        raise ValueError(f"unknown algo preset {preset!r}; choose one of {', '.join(_CHANGES)}")
    known = set(AlgoConfig.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown AlgoConfig fields {unknown}; valid fields: {', '.join(sorted(known))}")
    cfg = replace(AlgoConfig(), name=preset, **_CHANGES[preset])
    return replace(cfg, **overrides)


_KNOBS = list(dict.fromkeys(k for knobs in _CHANGES.values() for k in knobs))
PRESETS: dict[str, dict[str, Any]] = {
    name: {k: getattr(resolve_algo(name), k) for k in _KNOBS} for name in _CHANGES
}


def validate_algo(cfg: Any, prefix: str = "algo.") -> list[str]:
    """Every problem with ``cfg`` (an AlgoConfig or a DictConfig with its fields), one 'what, why, fix' line each."""
    errors = []

    def choice(key: str, allowed: tuple[str, ...]) -> None:
        value = getattr(cfg, key)
        if value not in allowed:
            errors.append(f"{prefix}{key}={value!r} is not one of {', '.join(allowed)}; set one of them")

    choice("loss", LOSSES)
    choice("aggregation", AGGREGATIONS)
    choice("std_scaling", STD_SCALINGS)
    choice("overlong", OVERLONG)
    if cfg.clip_low < 0 or cfg.clip_high < 0:
        errors.append(f"{prefix}clip_low={cfg.clip_low}, clip_high={cfg.clip_high}: clip ranges are epsilons around "
                      "ratio 1 and must be >= 0; use e.g. 0.2")
    if cfg.loss != "cispo" and cfg.clip_low >= 1:
        errors.append(f"{prefix}clip_low={cfg.clip_low} puts the ratio floor 1 - clip_low at or below 0, so the "
                      f"lower clip never acts for loss={cfg.loss!r}; use a value < 1 (0.2 is standard)")
    if cfg.kl_beta < 0:
        errors.append(f"{prefix}kl_beta={cfg.kl_beta} would reward moving away from the reference; use >= 0")
    if cfg.tis_cap <= 0:
        errors.append(f"{prefix}tis_cap={cfg.tis_cap} must be > 0 (Yao et al. use 2)")
    if not 0 <= cfg.negative_weight <= 1:
        errors.append(f"{prefix}negative_weight={cfg.negative_weight} must be in [0, 1]: 1 = GRPO, 0.1 = "
                      "W-REINFORCE (2506.01347), 0 = positive samples only; a negative or > 1 weight rewards failures "
                      "or lets them dominate")
    if cfg.process_weight < 0:
        errors.append(f"{prefix}process_weight={cfg.process_weight} must be >= 0: a negative weight rewards wrong "
                      "steps; use 1 (or 0 to switch the process term off)")
    if not 0 <= cfg.process_discount <= 1:
        errors.append(f"{prefix}process_discount={cfg.process_discount} must be in [0, 1]: 1 = return-to-go "
                      "(DeepSeekMath), 0 = each step its own score")
    if cfg.adv_eps < 0:
        errors.append(f"{prefix}adv_eps={cfg.adv_eps} must be >= 0")
    if cfg.norm_constant is not None and cfg.norm_constant < 1:
        errors.append(f"{prefix}norm_constant={cfg.norm_constant} must be a positive token count or null")
    if cfg.overlong_buffer is not None and cfg.overlong_buffer < 1:
        errors.append(f"{prefix}overlong_buffer={cfg.overlong_buffer} must be a positive token count or null")
    if cfg.max_sampling_rounds < 1:
        errors.append(f"{prefix}max_sampling_rounds={cfg.max_sampling_rounds} must be >= 1")
    return errors
