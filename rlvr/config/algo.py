"""``AlgoConfig``: every knob of the GRPO family in one place. Its defaults are the GRPO preset (DeepSeekMath
2402.03300), so ``AlgoConfig()`` is what ``algo=grpo`` gives. The other presets are conf/algo/<name>.yaml, each
listing only the knobs it changes from GRPO: the single source of the preset table, read here for Python callers
(``rlvr.algo.presets.resolve_algo`` / ``PRESETS``) and composed by Hydra for the CLI, so the two cannot drift."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional

from rlvr.config.options import opt

LOSSES = ("clip", "gspo", "cispo")
AGGREGATIONS = ("token", "sequence", "constant")
STD_SCALINGS = ("group", "batch", "none")
OVERLONG = ("none", "mask", "penalty")


@dataclass
class AlgoConfig:
    name: str = opt("grpo", "preset this config was expanded from (grpo | dr_grpo | dapo | gspo | cispo); logged, "
                            "never read by the loss. AlgoConfig's own defaults are the grpo preset")
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
    norm_constant: Optional[int] = opt(None, "Dr. GRPO's constant denominator per sequence (tokens), used by "
                                             "aggregation=constant; None = grpo.max_new_tokens, the generation budget: "
                                             "a true constant, as in Dr. GRPO 2503.20783 and TRL (not the batch's "
                                             "padded width, which changes from step to step)")
    kl_beta: float = opt(0.04, "weight of the k3 KL estimate to a frozen reference model, added per token (GRPO "
                               "2402.03300 used 0.04, the default). > 0 costs a reference forward pass per step and "
                               "holds the policy near its start; DAPO/Dr. GRPO drop it for verifiable rewards")
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
                                                "(rlvr.algo.process). Credits a correct step even in a failed "
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


def preset_knobs(folder: Any = None) -> dict[str, dict[str, Any]]:
    """preset name -> the knobs its conf/algo/<name>.yaml changes from ``AlgoConfig()`` (``name`` excluded), in
    file order. ``folder``: another folder of preset files (tests). Raises ValueError for a file setting a key
    that is not an AlgoConfig field or naming another preset."""
    from importlib.resources import files

    from omegaconf import OmegaConf

    folder = files("rlvr.conf").joinpath("algo") if folder is None else folder
    known = {f.name for f in fields(AlgoConfig)}
    table: dict[str, dict[str, Any]] = {}
    for path in sorted((p for p in folder.iterdir() if p.name.endswith(".yaml")), key=lambda p: p.name):
        knobs = OmegaConf.to_container(OmegaConf.create(path.read_text())) or {}
        unknown = sorted(set(knobs) - known)
        if unknown:
            raise ValueError(f"conf/algo/{path.name} sets {unknown}, which are not AlgoConfig fields; fix the "
                             f"spelling (fields: {', '.join(sorted(known))})")
        stem = path.name[: -len(".yaml")]
        if knobs.pop("name", stem) != stem:
            raise ValueError(f"conf/algo/{path.name} names another preset; set `name: {stem}` (the file's name is "
                             "what algo=<preset> selects and what the run logs)")
        table[stem] = knobs
    return table
