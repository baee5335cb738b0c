"""GRPO-family algorithm core: advantages, policy losses, filtering, and the presets that combine them.

Each module is a set of plain functions over tensors so the trainer loop reads as the algorithm:
``advantages`` (rewards [B, G] -> advantages [B, G]), ``filtering`` (DAPO dynamic sampling, overlong
handling), ``logprobs`` (teacher-forced token log-probs and entropy), ``loss`` (clipped PG / GSPO / CISPO,
KL, TIS) and ``algo`` (``AlgoConfig`` and the ``grpo|dr_grpo|dapo|gspo|cispo`` presets). ``trainer`` is the
``rlvr grpo`` loop; ``checkpoint`` saves and restores its state.
"""

# rlvr.config registers AlgoConfig (from .algo) in GRPORunConfig, and .algo imports ``opt`` from rlvr.config.
# Importing rlvr.config first makes that cycle resolve whichever module a caller imports first.
import rlvr.config  # noqa: F401,E402
