"""``AlgoConfig``: every knob of the GRPO family in one place, and the presets that set them together.

Papers (arXiv ids), cited again in each field's help:
- GRPO: DeepSeekMath, 2402.03300 — group-mean baseline, group-std scaling, per-sequence mean, k3 KL to a reference.
- Dr. GRPO: "Understanding R1-Zero-Like Training", 2503.20783 — no std scaling, constant length normaliser.
- DAPO: 2503.14476 — clip-higher, token-mean, dynamic sampling, soft overlong punishment, no KL.
- GSPO: Group Sequence Policy Optimization, 2507.18071 — sequence-level ratio (geometric mean), tiny clip range.
- CISPO: MiniMax-M1, 2506.13585 — clipped stop-gradient IS weight times log-prob; no token is dropped.
- TIS: Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL training" — truncated
  importance weight min(pi_trainer / pi_sampler, C) correcting the sampler/trainer mismatch.

``resolve_algo("dapo", clip_high=0.3)`` gives the DAPO knob set with one override; ``PRESETS`` is the table. The
lead registers ``AlgoConfig`` in ``rlvr/config/schema.py``; ``validate_algo`` returns every problem as one message each
(what, why, fix) so config validation can report them all at once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Optional

from rlvr.config.algo import AGGREGATIONS, LOSSES, OVERLONG, STD_SCALINGS, AlgoConfig

PRESETS: dict[str, dict[str, Any]] = {
    # DeepSeekMath 2402.03300: symmetric clip, per-sequence mean, group std, KL 0.04 to the reference.
    "grpo": dict(loss="clip", clip_low=0.2, clip_high=0.2, aggregation="sequence", std_scaling="group",
                 leave_one_out=False, kl_beta=0.04, dynamic_sampling=False, overlong="none"),
    # Dr. GRPO 2503.20783: remove the length bias (constant normaliser) and the difficulty bias (no std).
    "dr_grpo": dict(loss="clip", clip_low=0.2, clip_high=0.2, aggregation="constant", std_scaling="none",
                    leave_one_out=False, kl_beta=0.0, dynamic_sampling=False, overlong="none"),
    # DAPO 2503.14476: clip-higher 0.2/0.28, token-mean, dynamic sampling, soft overlong punishment, no KL.
    "dapo": dict(loss="clip", clip_low=0.2, clip_high=0.28, aggregation="token", std_scaling="group",
                 leave_one_out=False, kl_beta=0.0, dynamic_sampling=True, overlong="penalty"),
    # GSPO 2507.18071: sequence ratio with clip range 3e-4 / 4e-4, sequence-mean, no KL.
    "gspo": dict(loss="gspo", clip_low=3e-4, clip_high=4e-4, aggregation="sequence", std_scaling="group",
                 leave_one_out=False, kl_beta=0.0, dynamic_sampling=False, overlong="none"),
    # MiniMax-M1 2506.13585: no lower bound on the IS weight (clip_low=1 -> floor 0), only the cap is tuned (the
    # paper does not publish it; 0.28 mirrors DAPO's clip-higher), token-mean, no KL.
    "cispo": dict(loss="cispo", clip_low=1.0, clip_high=0.28, aggregation="token", std_scaling="group",
                  leave_one_out=False, kl_beta=0.0, dynamic_sampling=False, overlong="none"),
}


def resolve_algo(preset: str = "grpo", **overrides: Any) -> AlgoConfig:
    """The ``AlgoConfig`` of ``preset`` with ``overrides`` applied on top; unknown presets/keys raise ValueError."""
    if preset not in PRESETS:
        raise ValueError(f"unknown algo preset {preset!r}; choose one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(AlgoConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown AlgoConfig fields {unknown}; valid fields: {', '.join(sorted(known))}")
    cfg = replace(AlgoConfig(), name=preset, **PRESETS[preset])
    return replace(cfg, **overrides)


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
