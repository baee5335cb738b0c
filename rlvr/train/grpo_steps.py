"""The learning side of ``rlvr grpo``: the policy and its optimizer (``Learner``), and the update step (4-6 of the
story in ``rlvr.train.grpo``): a ``StepBatch``'s kept groups -> advantages (+ process supervision) -> reference
and old log-probs -> micro-batched policy loss -> optimizer step(s) -> the update's metrics.

DDP rules that live here (see "Processes" in ``rlvr.train.grpo``): a rank that kept no group while others did
trains on one group with an all-zero mask (zero loss and gradient), because DDP's all-reduce needs every rank;
only when no rank kept one do all skip the update. The loss normaliser is the whole batch's over every rank
(``rlvr.train.update.num_loss_items``), each rank runs one synchronised backward per optimizer step (the others
under ``no_sync``), and the update statistics are combined over ranks (``UpdateStats.combine_ranks``).

Under FSDP (``rlvr.train.sharding``) the same rules hold, and every forward is a collective: every rank runs as
many micro-batches as the rank with the most (its last one repeated, loss x 0, no statistics), and gradients are
reduce-scattered after each. ``Learner.model`` is the sharded policy, ``Learner.policy`` an unsharded frozen copy
for sampling, evals and ``final/``, refilled by ``refresh_policy`` after every update.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

import torch

from rlvr.rollout.types import RolloutBatch
from rlvr.train.loop_parts import PhaseTimer
from rlvr.train.rollout_source import StepBatch
from rlvr.train.update import Chunk


@dataclass
class Learner:
    """The trained model and what steps it."""

    accelerator: Any  # accelerate.Accelerator: device, DDP, gradient clipping, collectives
    model: Any  # the prepared policy (a DDP wrapper under several processes): forward and backward
    policy: Any  # the bare module: generate, save_pretrained, weight sync
    ref_model: Any | None  # the frozen starting policy (KL reference) when algo.kl_beta > 0, without LoRA
    tokenizer: Any
    optimizer: Any  # AdamW
    scheduler: Any  # the LR schedule, stepped once per optimizer step
    pad_id: int  # pads the rollout tensors (the rollout engine's, when there is one: ``EngineSource.pad_id``)
    sharding: str = "none"  # grpo.sharding as resolved: none | ddp | fsdp
    ref_from_base: bool = False  # LoRA with algo.kl_beta > 0: reference log-probs with the adapters switched off

    def reference(self) -> tuple[Any, Any]:
        """(module, context) for the KL reference's log-probs: the frozen copy, or under LoRA the trained model
        itself with its adapters off (the base: no second model in memory)."""
        if self.ref_from_base:
            from rlvr.model_lora import adapters_disabled

            return self.model, adapters_disabled(self.trained)
        return self.ref_model, nullcontext()

    @property
    def trained(self) -> Any:
        """The module the optimizer steps: the sharded model under FSDP, else the bare policy (what checkpoints
        load into)."""
        return self.model if self.sharding == "fsdp" else self.policy

    def refresh_policy(self) -> None:
        """Under FSDP, gather the shards into the unsharded ``policy`` copy (a collective); else nothing to do."""
        if self.sharding == "fsdp":
            from rlvr.train.sharding import refresh_full_copy

            refresh_full_copy(self.model, self.policy, self.accelerator.device)


def build_learner(cfg: Any, algo: Any, accelerator: Any, output_dir: Any, say: Any = print) -> Learner:
    """Policy (+ frozen reference), AdamW and the LR schedule, prepared by ``accelerator``; the model is checked up
    front to train and to save into ``output_dir`` (``rlvr.models.load_for_training``)."""
    import copy

    from transformers import get_scheduler

    from rlvr.models import load_for_training

    g, lora = cfg.grpo, cfg.model.lora
    model, tokenizer = load_for_training(cfg.model, cfg.task, output_dir, say)
    if lora.r > 0:  # only adapters train (+ rows of added thinking tokens); the frozen base is the KL reference
        from rlvr.model_lora import wrap_for_training
        from rlvr.models import load_tokenizer

        shipped = load_tokenizer(cfg.model) if cfg.model.add_think_tokens else None  # which token rows are new
        model = wrap_for_training(model, tokenizer, lora, output_dir, say, source_tokenizer=shipped)
    if g.activation_checkpointing:  # recompute each layer's activations in the backward: memory for ~1/3 more time
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    device, fsdp = accelerator.device, g.sharding == "fsdp"
    ref_model = rollout_copy = None
    if algo.kl_beta > 0 and lora.r == 0:  # the *starting* policy (thinking-tag rows included), also after a resume
        ref_model = copy.deepcopy(model).to(device).eval().requires_grad_(False)
    if fsdp:  # sampling, evals and final/ read whole weights: an unsharded frozen copy, refilled after each update
        from rlvr.train.sharding import shard_model

        rollout_copy = copy.deepcopy(model).to(device).eval().requires_grad_(False)
        model = shard_model(model.to(device), device.type, mixed_precision=g.mixed_precision,
                            cpu_offload=g.fsdp_cpu_offload)
        if ref_model is not None:  # frozen, sharded the same way: 1/world of its weights per rank
            ref_model = shard_model(ref_model, device.type, mixed_precision=g.mixed_precision,
                                    cpu_offload=g.fsdp_cpu_offload)
    trainable = [p for p in model.parameters() if p.requires_grad]  # all of them without LoRA
    optimizer = torch.optim.AdamW(trainable, lr=g.learning_rate, betas=(g.adam_beta1, g.adam_beta2),
                                  weight_decay=g.weight_decay)  # after sharding: it steps the shards
    scheduler = get_scheduler(g.lr_scheduler, optimizer, num_warmup_steps=g.warmup_steps,
                              num_training_steps=g.max_steps * g.updates_per_batch)
    if fsdp:  # accelerate would wrap the model in DDP (its FSDP plugin does not run on CPU): the model stays as is
        optimizer, scheduler = accelerator.prepare(optimizer, scheduler)
        policy = rollout_copy
    else:
        model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
        policy = accelerator.unwrap_model(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Learner(accelerator, model, policy, ref_model, tokenizer, optimizer, scheduler, pad_id, g.sharding,
                   ref_from_base=algo.kl_beta > 0 and lora.r > 0)


def dr_grpo_norm_constant(algo: Any, max_new_tokens: int) -> int:
    """C in Dr. GRPO's sum / (N * C): ``algo.norm_constant`` if set, else the generation budget (2503.20783, as
    TRL): a true constant, unlike the batch's padded width, which shrinks on steps where no completion reaches
    the cap."""
    return algo.norm_constant or max_new_tokens


@dataclass
class UpdateBatch:
    """The kept groups of a step as the loss sees them."""

    batch: RolloutBatch  # N = B' * G rows, on the learner's device
    advantages: torch.Tensor  # [N] per completion, or [N, T] with process supervision
    mask: torch.Tensor  # [N, T] loss mask: sampled tokens (DAPO's overlong filter applied; all 0 on an idle rank)
    chunks: list[Chunk]  # micro-batches of whole groups (rlvr.train.update.plan_chunks)
    idle: bool  # this rank kept no group but others did: it joins the all-reduce with a zero gradient
    metrics: dict[str, float]  # process/* when process supervision ran


def prepare_update(learner: Learner, step_batch: StepBatch, algo: Any, micro_batch_size: int,
                   piece_cache: dict[int, str]) -> UpdateBatch | None:
    """Advantages and masks of the kept groups; None when no rank kept a group (every rank skips the update)."""
    from rlvr.algo.advantages import compute_advantages
    from rlvr.algo.filtering import overlong_mask
    from rlvr.algo.process import round_process_advantages
    from rlvr.train.update import plan_chunks

    G, rounds = step_batch.group_size, step_batch.rounds
    rows = step_batch.rows()  # [B' * G] (round, row)
    idle = not rows and step_batch.batch_groups > 0
    if idle:  # any group stands in: its mask is zeroed below
        rows = [(0, j) for j in range(G)]
    if not rows:
        return None
    rewards = torch.stack([rounds[ri].rewards[i] for ri, i in rows]).view(-1, G)  # [B'*G] -> [B', G]
    advantages = compute_advantages(rewards, algo.std_scaling, algo.leave_one_out, algo.adv_eps, algo.negative_weight)
    rollouts = [rounds[ri].rollouts[i] for ri, i in rows]  # [N]
    batch = RolloutBatch.from_rollouts(rollouts, G, learner.pad_id).to(learner.accelerator.device)
    advantages = advantages.reshape(-1).to(learner.accelerator.device)  # [B', G] -> [N]
    mask = batch.completion_mask  # [N, T]
    metrics: dict[str, float] = {}
    if algo.process_verifier:  # process supervision: + token-level step advantages
        process, metrics = round_process_advantages(
            [rounds[ri].results[i] for ri, i in rows], rollouts, algo.process_verifier, learner.tokenizer, G,
            mask.shape[1], algo.process_discount, piece_cache)
        advantages = advantages.unsqueeze(1) + algo.process_weight * process.to(advantages)  # [N] -> [N, T]
    if algo.overlong == "mask":
        mask = overlong_mask(mask, batch.truncated)
    if idle:
        mask = torch.zeros_like(mask)
    chunks = plan_chunks(batch.attention_mask, batch.prompt_length, G, micro_batch_size)
    return UpdateBatch(batch, advantages, mask, chunks, idle, metrics)


def update(learner: Learner, step_batch: StepBatch, algo: Any, g: Any, timer: PhaseTimer,
           piece_cache: dict[int, str] | None = None) -> dict[str, float]:
    """Steps 4-6 on this rank's kept groups: ``g.updates_per_batch`` optimizer steps; returns the update's metrics
    (whole-batch under DDP; empty when every rank skips). ``g``: the ``grpo`` config section."""
    from rlvr.algo.logprobs import masked_mean, token_logprobs_and_entropy
    from rlvr.algo.loss import policy_loss
    from rlvr.train.update import UpdateStats, clip_gradients, frozen_logprobs, num_loss_items

    ub = prepare_update(learner, step_batch, algo, g.micro_batch_size, {} if piece_cache is None else piece_cache)
    if ub is None:
        return {}
    acc, model, batch, chunks, mask = learner.accelerator, learner.model, ub.batch, ub.chunks, ub.mask
    real_chunks, fsdp = len(chunks), learner.sharding == "fsdp"
    if fsdp:  # forwards are collectives: every rank runs the most micro-batches any rank has (repeats count 0)
        from rlvr.train.sharding import equal_chunk_count

        chunks = chunks + [chunks[-1]] * (equal_chunk_count(real_chunks, acc) - real_chunks)
    P, temp = batch.prompt_length, g.temperature if g.temperature > 0 else 1.0  # log-probs at the sampling T
    loss_cfg = replace(algo, norm_constant=dr_grpo_norm_constant(algo, g.max_new_tokens))

    # 5. reference log-probs (KL) and old log-probs (only when the batch is reused); time/logprob stays 0 without
    old_logprobs = ref_logprobs = None
    if g.updates_per_batch > 1:
        with timer("logprob"):
            old_logprobs = frozen_logprobs(model, batch, chunks, temp)  # [N, T]
    if learner.ref_model is not None or learner.ref_from_base:
        ref_model, context = learner.reference()
        with timer("logprob"), context:
            ref_logprobs = frozen_logprobs(ref_model, batch, chunks, temp)  # [N, T]

    # 6. micro-batch losses share the full batch's denominator, so their sum is the full-batch loss
    with timer("update"):
        items = num_loss_items(mask[:0] if ub.idle else mask, algo.aggregation, acc)  # an idle rank adds none
        stats = UpdateStats()
        for _ in range(g.updates_per_batch):
            learner.optimizer.zero_grad(set_to_none=True)
            for k, c in enumerate(chunks):
                last_or_sharded = fsdp or k == len(chunks) - 1  # FSDP reduce-scatters every micro-batch's gradient
                with nullcontext() if last_or_sharded else acc.no_sync(model):  # DDP: all-reduce once, at the end
                    logprobs, entropy = token_logprobs_and_entropy(
                        model, c.inputs(batch.input_ids, P), c.inputs(batch.attention_mask, P), P - c.start,
                        temp)  # [n, T_c] x2
                    loss, m = policy_loss(
                        logprobs, None if old_logprobs is None else c.completion(old_logprobs),
                        c.completion(batch.sampler_logprobs), c.completion(ub.advantages), c.completion(mask),
                        loss_cfg, ref_logprobs=None if ref_logprobs is None else c.completion(ref_logprobs),
                        num_items=items)
                    if k >= real_chunks:  # a repeat that only keeps the collectives in step
                        acc.backward(loss * 0.0)
                        continue
                    acc.backward(loss)
                chunk_mask = c.completion(mask)  # [n, T_c]
                m["loss"], m["entropy"] = loss.detach(), masked_mean(entropy.detach(), chunk_mask)
                stats.add(m, tokens=chunk_mask.sum().item())
            grad_norm = clip_gradients(acc, model, g.max_grad_norm)
            learner.optimizer.step()
            learner.scheduler.step()
            stats.add_pass(grad_norm)
        if acc.num_processes > 1:
            stats.combine_ranks(acc)
    return ub.metrics | stats.result()
