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
lead registers ``AlgoConfig`` in ``rlvr/config.py``; ``validate_algo`` returns every problem as one message each
(what, why, fix) so config validation can report them all at once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Optional

from rlvr.config import opt

LOSSES = ("clip", "gspo", "cispo")
AGGREGATIONS = ("token", "sequence", "constant")
STD_SCALINGS = ("group", "batch", "none")
OVERLONG = ("none", "mask", "penalty")


@dataclass
class AlgoConfig:
    name: str = opt("grpo", "preset this config was expanded from (grpo | dr_grpo | dapo | gspo | cispo); logged, "
                            "never read by the loss")
    # ---------------------------------------------------------------------------------------------- loss
    loss: str = opt("clip", "policy objective. clip: PPO-style token-level clipped ratio (GRPO 2402.03300, DAPO "
                            "2503.14476); gspo: sequence-level ratio = geometric mean of token ratios, clipped per "
                            "sequence (GSPO 2507.18071); cispo: clipped stop-gradient IS weight times log-prob, so "
                            "clipped tokens still get gradient (MiniMax-M1 2506.13585)")
    clip_low: float = opt(0.2, "epsilon_low: ratio floor 1 - clip_low. PPO/GRPO use 0.2; GSPO ~3e-4 because its ratio "
                               "is a per-token geometric mean; CISPO 1.0 = no floor (MiniMax-M1 2506.13585)")
    clip_high: float = opt(0.2, "epsilon_high: ratio cap 1 + clip_high. > clip_low ('clip-higher', DAPO 2503.14476: "
                                "0.28) lets low-probability tokens grow and delays entropy collapse; GSPO ~4e-4")
    aggregation: str = opt("sequence", "how token losses become a scalar. sequence: mean per sequence then mean "
                                       "(GRPO 2402.03300; long wrong answers are under-penalised per token); token: "
                                       "mean over all tokens in the batch (DAPO 2503.14476); constant: sum / (N * "
                                       "norm_constant), unbiased in length (Dr. GRPO 2503.20783)")
    norm_constant: Optional[int] = opt(None, "Dr. GRPO's constant denominator per sequence (tokens); None = the padded "
                                             "completion width T, which is max_new_tokens when any completion hits it "
                                             "(2503.20783 uses the generation budget)")
    kl_beta: float = opt(0.0, "weight of the k3 KL estimate to a frozen reference model, added per token (GRPO "
                              "2402.03300 used 0.04). > 0 costs a reference forward pass per step and holds the policy "
                              "near its start; DAPO/Dr. GRPO drop it for verifiable rewards")
    tis: bool = opt(False, "truncated importance sampling: weight each token's policy-gradient term by "
                           "min(exp(old_logprob - sampler_logprob), tis_cap), correcting the gap between the rollout "
                           "engine's numerics (vLLM, bf16) and the trainer's (Yao et al. 2025, 'Your efficient RL "
                           "framework secretly brings you off-policy RL training')")
    tis_cap: float = opt(2.0, "C in min(ratio, C) for TIS (Yao et al. 2025 use 2); larger = less bias, more variance")
    # ------------------------------------------------------------------------------------------ advantages
    std_scaling: str = opt("group", "divide centred rewards by: group = each group's std (GRPO 2402.03300; "
                                    "up-weights near-solved and near-hopeless prompts); batch = the std of centred "
                                    "rewards over the batch (Lite PPO style, robust to tiny groups); none = no scaling "
                                    "(Dr. GRPO 2503.20783: removes that difficulty bias)")
    leave_one_out: bool = opt(False, "baseline = mean of the *other* completions of the prompt (RLOO, Ahmadian et al. "
                                     "2402.14740): unbiased, advantages scaled by G/(G-1) relative to the group mean")
    negative_weight: float = opt(1.0, "lambda: advantages below 0 are multiplied by this, so failed completions are "
                                      "pushed down lambda times as hard as correct ones are pulled up (W-REINFORCE, "
                                      "Zhu et al. 2025, 2506.01347, use 0.1: positive samples drive pass@1, negative "
                                      "ones keep pass@k). 1 = GRPO; 0 = positive samples only (on-policy rejection "
                                      "sampling), which narrows diversity fastest. On the tiny arith model 0.1 did "
                                      "no better than 1 (docs/experiments/grpo_tiny_arith.md)")
    process_verifier: Optional[str] = opt(None, "verifier key whose per-step scores (VerifyResult.steps, e.g. "
                                                "arith_steps) become token-level advantages added to the outcome "
                                                "advantage: process supervision, DeepSeekMath 2402.03300 sec. 4.1.3 "
                                                "(rlvr.grpo.process). Credits a correct step even in a failed "
                                                "completion; None = outcome advantages only. Tiny arith model, 32 x "
                                                "16 rollouts, 100 steps: 3-op +11 to +15 points in six runs "
                                                "(docs/experiments/grpo_tiny_arith.md)")
    process_weight: float = opt(1.0, "scale of the process advantage added to the outcome one (the paper uses "
                                     "process alone; here both: the outcome term still rewards the final answer)")
    process_discount: float = opt(1.0, "gamma: a token in step k gets sum_j>=k gamma^(j-k) of the normalised step "
                                       "scores. 1 = DeepSeekMath's return-to-go; 0 = each step its own score, right "
                                       "when steps are judged independently (arith_steps)")
    adv_eps: float = opt(1e-6, "added to the std before dividing; groups whose rewards are all equal get advantage 0 "
                               "exactly, whatever eps is")
    # ----------------------------------------------------------------------------------- sampling filters
    dynamic_sampling: bool = opt(False, "drop groups whose verifier accuracy is all 0 or all 1 (zero advantage, no "
                                        "gradient) and sample more prompts to refill the batch (DAPO 2503.14476). "
                                        "Costs extra rollouts; keeps the effective batch size constant")
    max_sampling_rounds: int = opt(3, "dynamic sampling: most rollout rounds per step before training on what was "
                                      "kept (DAPO samples until full; a cap keeps a step's time bounded)")
    overlong: str = opt("none", "truncated completions (hit max_new_tokens): none = scored like any other; mask = "
                                "excluded from the loss (DAPO's overlong filtering); penalty = soft length penalty "
                                "added to the reward over the last overlong_buffer tokens (DAPO 2503.14476)")
    overlong_buffer: Optional[int] = opt(None, "DAPO's L_cache in tokens: the penalty ramps from 0 to -1 over the last "
                                               "overlong_buffer tokens before max_new_tokens. None = 20% of "
                                               "max_new_tokens (DAPO: 4096 of 20480)")


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
