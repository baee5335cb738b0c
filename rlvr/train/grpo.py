"""``rlvr grpo``: GRPO-family RL from verifiable rewards, one readable loop.

    rlvr grpo model.name_or_path=runs/sft/final task=arith algo=dapo grpo.max_steps=100 output_dir=runs/grpo
    rlvr grpo algo=grpo grpo.prompts_per_step=16 grpo.group_size=8 grpo.learning_rate=3e-4 ...
    rlvr grpo --help                                   # every knob, with what it trades off
    accelerate launch --multi_gpu --num_processes 8 -m rlvr.cli grpo ...   # one process per GPU (see "Processes")

Each step, top to bottom:
1. rollout: take the next B prompts of the task's train split (a shuffled stream whose position is part of the
   checkpoint), give each its thinking budget (``grpo.train_budget``, see "Thinking budget") and sample G
   completions each with the rollout engine (HF ``generate``; the seed of every rollout call is derived from
   (seed, step, round, rank), so a resumed run samples exactly the same);
2. reward: score every completion with the sample's verifiers in the reward runtime's process pool
   (``rlvr.rewards.runtime``: hard timeouts, a broken verifier is an error, never a silent 0); accuracy = the primary
   verifier's score (see ``rlvr.rewards.scoring``); DAPO's soft overlong penalty is added to the reward if enabled;
3. dynamic sampling (if the preset enables it, DAPO 2503.14476): drop groups whose accuracy is all equal
   (no gradient) and repeat 1-2 with fresh prompts, up to ``algo.max_sampling_rounds`` rounds, until B
   informative groups are kept; then train on the first B kept (or on fewer if the cap was hit);
4. advantages: group-relative, (r - baseline) / scale per ``algo`` (``rlvr.algo.advantages``); with
   ``algo.process_verifier`` plus token-level advantages from that verifier's per-step scores (process
   supervision, ``rlvr.algo.process``), so the advantage becomes [N, T];
5. logprob: reference-model log-probs when ``algo.kl_beta > 0``; "old" log-probs when the batch is reused for
   ``grpo.updates_per_batch > 1`` optimizer steps (otherwise on-policy: old = current, detached);
6. update: policy loss (``rlvr.algo.loss``) over micro-batches whose losses add up to the full batch's, one
   backward each, gradient clipping, AdamW, LR schedule. Micro-batches are whole groups sorted by length, each
   cut to the columns its rows use (``rlvr.train.update.plan_chunks``: ~28% less forward/backward time at 16 x 16);
7. sync: push new weights to the rollout engine (a no-op for HF, which samples from the training model);
8. log one metrics.jsonl row (phase timings ``time/<phase>``, reward/accuracy/verifier stats, lengths, clip
   fractions, KL, entropy, grad norm, LR, tokens/s) and the first completions to samples.jsonl;
9. eval: greedy held-out accuracy per difficulty split every ``grpo.eval_every`` steps (``eval/<split>/accuracy``),
   and the accuracy-vs-thinking-budget sweep every ``grpo.budget_eval_every`` steps (``budget_eval/*``, files in
   ``eval/``, plots in ``plots/``); both also at the start (step 0) and the end;
10. checkpoint every ``grpo.save_every`` steps (``rlvr.train.checkpoint``); a restart resumes from the newest.

Thinking budget (``rlvr.train.budgets``). ``grpo.train_budget.mode``: ``none`` samples freely up to
``grpo.max_new_tokens``; ``fixed`` budget-forces every rollout at B thinking tokens (s1: ``</think>`` is forced at B
and the answer gets ``answer_tokens``); ``sample`` draws B per prompt from ``choices``, seeded by (seed, step,
stream position), so a resume draws the same budgets. With ``state_in_prompt`` the prompt says its budget
("Think for 16 tokens." on a new line after the user message, ``prompt_template``) and the policy can learn to
condition on it (budget-conditioned RL, L1 2503.04697); the G completions of a prompt share its budget, and the
engine is called once per distinct budget with the prompt-major order restored. Forced tokens are context, not
trained on (``RolloutBatch.completion_mask``). Rows log ``budget/thinking_mean`` (mean B) and ``budget/forced_frac``
(rollouts cut at B); samples.jsonl rows carry ``budget``, ``thinking_tokens`` and ``budget_forced``. The sweep
(``grpo.budget_eval_every``, the ``budget_eval`` section = ``rlvr eval``'s settings) runs ``rlvr.eval.sweep`` on the
policy as checkpoint "step N" with its cumulative train tokens (the starting model's SFT tokens included) into
``eval/budget_sweep_step<N>.json``, redraws ``plots/`` (what ``rlvr plot <run>`` reproduces) and logs the charts to
wandb; when training states budgets, the sweep states each swept budget the same way. The greedy held-out eval
(``grpo.eval_every``) keeps plain prompts: no statement, no cap.

Where it departs from the papers:
- Rewards and accuracy are logged over *every* completion sampled in the step (all dynamic-sampling rounds),
  which estimates the policy's success rate without the filter's selection bias; the loss only sees kept groups.
- Dynamic sampling is capped (``algo.max_sampling_rounds``) rather than sampling until the batch is full, so a
  step's time is bounded when almost every group is solved (or hopeless); if no group is informative the update
  is skipped (no optimizer or scheduler step) and the row says ``batch/groups = 0``.
- "Old" log-probs are recomputed by the trainer rather than taken from the sampler: the sampler's log-probs are
  only used for the mismatch/TIS diagnostics (``mismatch/*``), as in verl. With one update per batch the ratio
  is exactly 1 (DAPO's clip-higher then only matters for ``updates_per_batch > 1``).
- Log-probs are at the sampling temperature (verl's convention; ``rlvr.algo.logprobs``).

Processes (DDP). tests/integration/test_grpo_ddp.py runs 2 processes on CPU/gloo where one rank never keeps a
group, and checks the rules below: one metrics row per step, different prompts per rank, identical weights,
whole-batch metrics, and a re-launch that resumes from the checkpoint.

    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 -m rlvr.cli grpo ...   # CPU, gloo
    accelerate launch --multi_gpu --num_processes 8 -m rlvr.cli grpo ...                           # 8 GPUs, nccl

``accelerate launch --cpu`` starts a single process (several only through MPI). Without a GPU, ``--multi_gpu``
(torchrun) needs ``ACCELERATE_USE_CPU=true``, or accelerate would make every process a lone single-process run
writing into the same folder; the trainer compares ``WORLD_SIZE`` with accelerate's count and stops instead.
- Data: every round, each rank takes the next B x world prompts of the shared stream and keeps the rank-th
  slice of B; rollout seeds include the rank. The stream position is the same on every rank, so a checkpoint
  stores it once. A step's batch is B x world prompts.
- Dynamic sampling is decided jointly: after each round the ranks gather their kept-group counts and stop only
  when *every* rank has B groups (or the round cap is hit), so all ranks sample the same number of rounds and
  their streams stay in step. A rank that still keeps no group joins the update anyway with one masked-out
  group (zero loss and gradient), because DDP's all-reduce needs every rank; only when no rank kept a group do
  all skip the update together. Every rank runs one synchronised backward per optimizer step (the others
  under ``no_sync``), whatever its micro-batch count.
- Loss normalisers are global: the token (or sequence, or row) count is summed over ranks and each rank divides
  by sum / world, so DDP's gradient average is the gradient of one token-mean (DAPO) over the whole batch.
- Weights: DDP keeps the replicas identical; at every checkpoint and at the end the ranks compare a fingerprint
  of their weights and stop with an error if they differ (the final one goes into ``final/rlvr_grpo_done.json``).
- Metrics: rank 0 writes metrics.jsonl, samples.jsonl, checkpoints and eval (the greedy eval and the budget
  sweep); the others wait at their next collective, so eval must finish within torch's process-group timeout
  (30 min for gloo, 10 for NCCL). Training budgets are drawn by stream position, so ranks draw independently.
  Whole-batch values (every rank's completions): ``reward/mean|std|none_rate``, ``accuracy``, ``groups/*``,
  ``filter/kept_frac``, ``completion/*``, ``perf/*tokens_per_s``, ``batch/groups`` and the update statistics
  (``loss``, ``loss/pg``, ``kl/ref``, ``tokens``; token-weighted ``entropy``, ``ratio/mean``, ``clip/*``, ...;
  maxima) and ``budget/*``. ``verifier/*`` and ``time/*`` are rank 0's; ``grad_norm``, ``lr`` and ``data/position``
  are the same on every rank. samples.jsonl holds every rank's first completions, each with a ``rank`` field.
- Checkpoints hold every rank's RNG states; a resumed rank restores its own (checkpoint.py).
Not covered: FSDP (sharded parameters need sharded checkpoint saving) and multi-process vLLM rollouts.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rlvr.config.loading import default_output_dir, run_command
from rlvr.eval.heldout import run_eval
from rlvr.train.loop_parts import PhaseTimer, PromptStream, rollout_seed, sync_weights
from rlvr.train.grpo_validation import choose_engine, validate


# ------------------------------------------------------------------------------------------------ the loop
def run(cfg: DictConfig) -> int:
    import torch
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list, gather_object, set_seed
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from transformers import get_scheduler

    from rlvr.algo.advantages import compute_advantages, zero_variance_fraction
    from rlvr.algo.presets import AlgoConfig
    from rlvr.eval.in_training import BudgetSweeper
    from rlvr.train.budgets import TrainBudgets
    from rlvr.train.distributed import replica_fingerprints, whole_batch_metrics
    from rlvr.train.checkpoint import (TrainerState, checkpoint_dir, load_trainer_state, load_weights,
                                      newest_checkpoint, rng_state, save_checkpoint, truncate_jsonl)
    from rlvr.algo.filtering import dynamic_sampling_filter, overlong_mask
    from rlvr.algo.logprobs import masked_mean, token_logprobs_and_entropy
    from rlvr.algo.loss import policy_loss
    from rlvr.algo.process import check_process_verifier, round_process_advantages
    from rlvr.rewards.scoring import completion_metrics, reward_metrics, sample_rows, score_round
    from rlvr.train.monitors import RewardHackingMonitors
    from rlvr.train.update import UpdateStats, clip_gradients, frozen_logprobs, num_loss_items, plan_chunks
    from rlvr.models import load_model, load_model_and_tokenizer
    from rlvr.rewards.runtime import RewardRuntime, RewardsConfig
    from rlvr.rollout.base import SamplingParams, build_engine
    from rlvr.rollout.types import RolloutBatch
    from rlvr.eval.heldout import default_eval_splits
    from rlvr.tasks import build_task
    from rlvr.runs.provenance import dataset_fingerprint, task_datasets, task_source, write_stage_card
    from rlvr.runs.tracking import Tracker

    started = time.time()
    g = cfg.grpo
    # The LR schedule counts optimizer steps; accelerate would otherwise step it once per process per step.
    accelerator = Accelerator(step_scheduler_with_optimizer=False, mixed_precision=g.mixed_precision)
    main_proc, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != world:  # e.g. `accelerate launch --multi_gpu` without a GPU: every process would run alone
        raise RuntimeError(f"{launched} processes were launched but accelerate set up {world}: without a GPU, "
                           "set ACCELERATE_USE_CPU=true for DDP over gloo on CPU (see `rlvr.train.grpo`)")
    console = Console(quiet=not main_proc)
    default_output_dir(cfg, "grpo")
    if world > 1:  # a timestamped default differs per process: use rank 0's
        cfg.output_dir = broadcast_object_list([cfg.output_dir])[0]
    out = Path(cfg.output_dir)
    algo = AlgoConfig(**OmegaConf.to_container(cfg.algo, resolve=True))
    final_dir = out / "final"
    done_marker = final_dir / "rlvr_grpo_done.json"
    if g.resume and done_marker.exists() and json.loads(done_marker.read_text()).get("step", 0) >= g.max_steps:
        console.print(f"[yellow]{final_dir} is complete; nothing to do (grpo.resume=false retrains)[/yellow]")
        return 0
    accelerator.wait_for_everyone()  # every rank has read the run folder before rank 0 changes it
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        done_marker.unlink(missing_ok=True)  # final/ is about to be out of date
        if not g.resume and checkpoint_dir(out).exists():  # a fresh run must never resume from stale state later
            console.print(f"[yellow]grpo.resume=false: removing the old {checkpoint_dir(out)}[/yellow]")
            shutil.rmtree(checkpoint_dir(out))
    accelerator.wait_for_everyone()
    if g.threads:
        torch.set_num_threads(g.threads)
    set_seed(cfg.seed)
    engine_name, why = choose_engine(cfg.rollout)
    console.print(f"[bold]rlvr grpo[/bold]  model={cfg.model.name_or_path or cfg.model.name}  task={cfg.task.name}  "
                  f"algo={algo.name}  rollout={engine_name} ({why})  B={g.prompts_per_step} G={g.group_size}  "
                  f"steps={g.max_steps}  out={out}")
    console.print("algo: " + "  ".join(f"{k}={v}" for k, v in asdict(algo).items()))  # the preset, resolved

    # -- set-up: task, policy (+ frozen reference), optimiser, schedule, then resume -------------------------
    task = build_task(cfg.task, data_dir=cfg.data_dir)
    model, tokenizer = load_model_and_tokenizer(cfg.model)
    model.train()
    ref_model = None
    if algo.kl_beta > 0:  # the reference is the *starting* policy, also after a resume
        ref_model = load_model(cfg.model).to(accelerator.device).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=g.learning_rate, betas=(g.adam_beta1, g.adam_beta2),
                                  weight_decay=g.weight_decay)
    scheduler = get_scheduler(g.lr_scheduler, optimizer, num_warmup_steps=g.warmup_steps,
                              num_training_steps=g.max_steps * g.updates_per_batch)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    policy = accelerator.unwrap_model(model)  # the bare module: generate, save_pretrained

    state = TrainerState(step=0, data_position=0)
    resume_from = newest_checkpoint(out) if g.resume else None
    if resume_from is not None:
        load_weights(policy, resume_from)
        state = load_trainer_state(resume_from, optimizer, scheduler, rank=rank)
        console.print(f"[yellow]resuming from {resume_from} (step {state.step})[/yellow]")
    tracker = None
    if main_proc:
        keep = state.step if resume_from is not None else None
        tracker = Tracker(out, cfg.logger, cfg, job_type="grpo", keep_until_step=keep)
        truncate_jsonl(out / "samples.jsonl", keep)
    # Created after the resume and set_num_threads: vLLM copies the policy's current weights and ignores later
    # thread-count changes in this process.
    engine = build_engine(engine_name, policy, tokenizer, seed=cfg.seed, think_open=cfg.task.think_open,
                          think_close=cfg.task.think_close, batch_size=g.rollout_batch_size)
    runtime = RewardRuntime(RewardsConfig(**OmegaConf.to_container(cfg.rewards, resolve=True)))
    stream = PromptStream(task.samples(g.train_split, limit=g.max_train_prompts), seed=cfg.seed,
                          position=state.data_position)
    if algo.process_verifier:
        check_process_verifier(algo.process_verifier, stream.samples)
    piece_cache: dict[int, str] = {}  # token id -> decoded text, for mapping step offsets to tokens
    sampling = SamplingParams(temperature=g.temperature, top_p=g.top_p, max_new_tokens=g.max_new_tokens)
    eval_splits = list(g.eval_splits) or default_eval_splits(task)
    B, G = g.prompts_per_step, g.group_size
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else engine.pad_id
    train_budget = TrainBudgets(g.train_budget, seed=cfg.seed)  # the rollouts' thinking budgets (module docstring)
    sweeper = None  # the accuracy-vs-budget sweep, rank 0 only
    if g.budget_eval_every and main_proc:
        sweeper = BudgetSweeper(cfg, task, tokenizer, out, tracker, console, resumed_step=state.step)

    # reward-hacking monitors (rlvr.train.monitors): rank 0 watches its own completions and the held-out evals
    monitors = RewardHackingMonitors(cfg, out, console=console) if main_proc else None
    if monitors is not None and state.monitors:  # a resumed run keeps its length baseline and reward history
        monitors.load_state_dict(state.monitors)
    if state.step == 0 and g.eval_every and main_proc:  # the starting point, for before/after comparisons
        before = run_eval(policy, tokenizer, task, cfg, eval_splits, out, 0, console)
        tracker.summary({k.replace("eval/", "eval_start/"): v for k, v in before.items()})
        monitors.observe_heldout(0, before)
    if state.step == 0 and sweeper is not None:
        before = sweeper(policy, 0)
        tracker.summary({k.replace("budget_eval/", "budget_eval_start/"): v for k, v in before.items()})

    progress = Progress(TextColumn("[bold]grpo"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.description}"), console=console, disable=not main_proc)
    bar = progress.add_task("", total=g.max_steps, completed=state.step)
    samples_file = (out / "samples.jsonl").open("a", buffering=1) if main_proc else None
    try:
        with progress:
            for step in range(state.step + 1, g.max_steps + 1):
                step_start = time.perf_counter()
                timer = PhaseTimer(cuda=accelerator.device.type == "cuda")

                # 1-3. rollout -> reward -> dynamic sampling, refilling with fresh prompts up to the round cap
                rounds, kept_groups = [], []  # kept_groups: (round index, group index) of informative groups
                filter_keep = []  # [rounds] x [B] bool
                round_budgets = []  # [rounds] x [B] thinking budget per prompt (None = no cap)
                for round_ in range(algo.max_sampling_rounds if algo.dynamic_sampling else 1):
                    first = stream.position + rank * B  # stream position of this rank's first prompt
                    samples = stream.take(B * world)[rank * B:(rank + 1) * B]  # every rank advances the stream
                    samples, prompt_budgets = train_budget.assign(samples, step, first)  # stated if asked
                    round_budgets.append(prompt_budgets)
                    params = replace(sampling, seed=rollout_seed(cfg.seed, step, round_, rank))
                    with timer("rollout"):
                        rollouts = train_budget.generate(engine, samples, prompt_budgets, G, params)  # [B*G]
                    with timer("reward"):
                        scored = score_round(runtime, samples, rollouts, G, algo, g.max_new_tokens)
                    rounds.append(scored)
                    if algo.dynamic_sampling:
                        keep, _ = dynamic_sampling_filter(scored.accuracy.view(B, G))  # [B*G] -> [B, G]
                    else:
                        keep = torch.ones(B, dtype=torch.bool)
                    filter_keep.append(keep)
                    kept_groups += [(len(rounds) - 1, b) for b in keep.nonzero().squeeze(1).tolist()]
                    # all ranks stop together, once every one has B groups, so they sample the same rounds
                    counts = accelerator.gather(torch.tensor([len(kept_groups)], device=accelerator.device))
                    if counts.min() >= B:  # counts: [world] groups kept so far per rank
                        break
                kept_groups = kept_groups[:B]
                batch_groups = counts.clamp(max=B).sum().item()  # the whole batch's, over all ranks
                all_rollouts = [r for s in rounds for r in s.rollouts]

                # 4. advantages over the kept groups: rewards [B', G] -> advantages [B', G]
                rows = [(ri, b * G + j) for ri, b in kept_groups for j in range(G)]  # [B'*G] (round, row)
                # a rank with no kept group while others have some still joins DDP's all-reduce: it trains on
                # one group with an all-zero mask (zero loss and gradient); if no rank kept one, all skip
                idle = not rows and batch_groups > 0
                if idle:
                    rows = [(0, j) for j in range(G)]
                update_metrics: dict[str, float] = {}
                if rows:
                    rewards = torch.stack([rounds[ri].rewards[i] for ri, i in rows]).view(-1, G)  # [B'*G] -> [B', G]
                    advantages = compute_advantages(rewards, algo.std_scaling, algo.leave_one_out, algo.adv_eps,
                                                    algo.negative_weight)
                    batch = RolloutBatch.from_rollouts([rounds[ri].rollouts[i] for ri, i in rows], G, pad_id)
                    batch = batch.to(accelerator.device)
                    advantages = advantages.reshape(-1).to(accelerator.device)  # [B', G] -> [N]
                    mask = batch.completion_mask  # [N, T]
                    if algo.process_verifier:  # process supervision: + token-level step advantages
                        process, m = round_process_advantages(
                            [rounds[ri].results[i] for ri, i in rows], [rounds[ri].rollouts[i] for ri, i in rows],
                            algo.process_verifier, tokenizer, G, mask.shape[1], algo.process_discount, piece_cache)
                        advantages = advantages.unsqueeze(1) + algo.process_weight * process.to(advantages)  # [N, T]
                        update_metrics |= m
                    if algo.overlong == "mask":
                        mask = overlong_mask(mask, batch.truncated)
                    if idle:
                        mask = torch.zeros_like(mask)
                    P, temp = batch.prompt_length, sampling.logprob_temperature
                    # micro-batches of whole groups, each cut to the columns its rows use (rlvr.train.update)
                    chunks = plan_chunks(batch.attention_mask, P, G, g.micro_batch_size)
                    # Dr. GRPO's constant normaliser is the generation budget (2503.20783, as TRL): a true constant,
                    # unlike the batch's padded width, which shrinks on steps where no completion reaches the cap
                    loss_cfg = replace(algo, norm_constant=dr_grpo_norm_constant(algo, g.max_new_tokens))

                    # 5. reference log-probs (KL) and old log-probs (only when the batch is reused)
                    old_logprobs = ref_logprobs = None
                    with timer("logprob"):
                        if g.updates_per_batch > 1:
                            old_logprobs = frozen_logprobs(model, batch, chunks, temp)  # [N, T]
                        if ref_model is not None:
                            ref_logprobs = frozen_logprobs(ref_model, batch, chunks, temp)  # [N, T]

                    # 6. policy update: micro-batch losses share the full batch's denominator, so their sum is
                    #    the full-batch loss; one optimizer step per pass over the batch
                    with timer("update"):
                        # the whole batch's denominator, over all ranks (an idle rank adds no items)
                        items = num_loss_items(mask[:0] if idle else mask, algo.aggregation, accelerator)
                        stats = UpdateStats()
                        for _ in range(g.updates_per_batch):
                            optimizer.zero_grad(set_to_none=True)
                            for k, c in enumerate(chunks):
                                # DDP: all-reduce gradients once, on the last micro-batch
                                with nullcontext() if k == len(chunks) - 1 else accelerator.no_sync(model):
                                    logprobs, entropy = token_logprobs_and_entropy(
                                        model, c.inputs(batch.input_ids, P), c.inputs(batch.attention_mask, P),
                                        P - c.start, temp)  # [n, T_c] x2
                                    loss, m = policy_loss(
                                        logprobs, None if old_logprobs is None else c.completion(old_logprobs),
                                        c.completion(batch.sampler_logprobs), c.completion(advantages),
                                        c.completion(mask), loss_cfg,
                                        ref_logprobs=None if ref_logprobs is None else c.completion(ref_logprobs),
                                        num_items=items)
                                    accelerator.backward(loss)
                                chunk_mask = c.completion(mask)  # [n, T_c]
                                m["loss"], m["entropy"] = loss.detach(), masked_mean(entropy.detach(), chunk_mask)
                                stats.add(m, tokens=chunk_mask.sum().item())
                            grad_norm = clip_gradients(accelerator, model, g.max_grad_norm)
                            optimizer.step()
                            scheduler.step()
                            stats.add_pass(grad_norm)
                        if world > 1:
                            stats.combine_ranks(accelerator)
                        update_metrics |= stats.result()

                # 7. sync the rollout engine's weights (no-op for HF)
                with timer("sync"):
                    sync_weights(engine, policy)

                # 8. log the step
                step_seconds = time.perf_counter() - step_start
                generated = sum(r.num_tokens for r in all_rollouts)
                all_acc = torch.cat([s.accuracy for s in rounds]).view(-1, G)  # [rounds*B*G] -> [rounds*B, G]
                all_rew = torch.cat([s.rewards for s in rounds]).view(-1, G)  # [rounds*B*G] -> [rounds*B, G]
                _, groups = dynamic_sampling_filter(all_acc)  # how every sampled group turned out
                row = reward_metrics(rounds) | completion_metrics(all_rollouts) | update_metrics | {
                    "groups/zero_std_frac": zero_variance_fraction(all_rew),
                    "groups/all_correct_frac": groups["filter/all_correct_frac"],
                    "groups/all_wrong_frac": groups["filter/all_wrong_frac"],
                    "filter/kept_frac": torch.cat(filter_keep).float().mean().item(),
                    "batch/groups": batch_groups,
                    "batch/rounds": len(rounds),
                    "lr": scheduler.get_last_lr()[0],
                    "perf/tokens_per_s": generated / step_seconds,
                    "perf/rollout_tokens_per_s": generated / max(timer.seconds["rollout"], 1e-9),
                    "data/position": stream.position,
                }
                if world > 1:  # the whole batch's values (see "Processes")
                    row |= whole_batch_metrics(accelerator, rounds, filter_keep, G, step_seconds,
                                               timer.seconds["rollout"])
                logged_samples = sample_rows(step, rounds[0], g.num_samples_to_log)
                if train_budget.active:  # budget/* over every prompt of the step (a collective under DDP)
                    row |= train_budget.metrics([b for bs in round_budgets for b in bs], all_rollouts, accelerator)
                    train_budget.annotate(logged_samples, rounds[0].rollouts, round_budgets[0], G)
                if world > 1:  # every rank's first completions (a collective)
                    logged_samples = [r | {"rank": k} for k, rows_k in enumerate(gather_object([logged_samples]))
                                      for r in rows_k]

                # 9. held-out eval (timed; its time is part of this step's row)
                if g.eval_every and (step % g.eval_every == 0 or step == g.max_steps) and main_proc:
                    with timer("eval"):
                        row |= run_eval(policy, tokenizer, task, cfg, eval_splits, out, step, console)
                if sweeper is not None:
                    sweeper.trained(row.get("tokens"))
                    if sweeper.due(step):
                        with timer("eval"):
                            row |= sweeper(policy, step)
                if main_proc:
                    row |= monitors.update_scored(
                        step, rounds, heldout={k: v for k, v in row.items() if k.startswith("eval/")})
                row |= {f"time/{p}": s for p, s in timer.seconds.items()}
                row["time/step"] = time.perf_counter() - step_start
                if main_proc:
                    tracker.log(row, step=step)
                    for sample_row in logged_samples:
                        samples_file.write(json.dumps(sample_row) + "\n")
                progress.update(bar, advance=1, description=f"reward {row['reward/mean']:.3f}  "
                                f"acc {row['accuracy']:.3f}  groups {batch_groups}/{B * world}  "
                                f"{row['time/step']:.1f}s/step")

                # 10. checkpoint (atomic; a kill mid-save keeps the previous one)
                if g.save_every and step % g.save_every == 0:
                    rng_states = None
                    if world > 1:  # rank 0 writes, with every rank's RNG states; all check their weights agree
                        rng_states = gather_object([rng_state()])
                        replica_fingerprints(accelerator, policy)
                    if main_proc:
                        save_checkpoint(out, TrainerState(step, stream.position, monitors.state_dict()), policy,
                                        tokenizer, optimizer, scheduler, keep=g.keep_checkpoints,
                                        rng_states=rng_states)
                    accelerator.wait_for_everyone()  # no rank runs ahead of (or exits before) a half-written save
    finally:
        runtime.close()
        if sweeper is not None:
            sweeper.close()
        if hasattr(engine, "close"):
            engine.close()  # frees vLLM's engine and its process group, so a later engine can start here
        if samples_file is not None:
            samples_file.close()

    # -- final model --------------------------------------------------------------------------------------------
    accelerator.wait_for_everyone()
    fingerprints = replica_fingerprints(accelerator, policy) if world > 1 else None
    if main_proc:
        policy.save_pretrained(final_dir, safe_serialization=True)
        tokenizer.save_pretrained(final_dir)
        summary = {"grpo/wall_seconds": time.time() - started, "step": g.max_steps}
        if fingerprints is not None:  # every rank's, all equal (checked)
            summary |= {"processes": world, "weights/fingerprint_per_rank": fingerprints}
        tracker.summary(summary)
        last_eval = out / "eval" / f"grpo_step{g.max_steps}.json"
        write_stage_card(
            cfg, "grpo", out, tracker=tracker, final_dir=final_dir, console=console,
            wall_seconds=summary["grpo/wall_seconds"], verifiers=task.verifier_specs(), monitors=monitors.summary(),
            datasets=[dataset_fingerprint(stream.samples, source=task_source(task, g.train_split),
                                          split=g.train_split, role="train")]
            + task_datasets(task, dict.fromkeys(eval_splits, g.eval_num_problems), role="eval"),
            eval_table=json.loads(last_eval.read_text())["rows"] if last_eval.exists() else None)
        tracker.close()
        done_marker.write_text(json.dumps(summary, indent=2))  # written last: a crash before it redoes the save
        console.print(f"done in {summary['grpo/wall_seconds']:.0f}s; model: {final_dir}  "
                      f"metrics: {out / 'metrics.jsonl'}")
    return 0


def dr_grpo_norm_constant(algo, max_new_tokens: int) -> int:
    """C in Dr. GRPO's sum / (N * C): ``algo.norm_constant`` if set, else the generation budget."""
    return algo.norm_constant or max_new_tokens


def main(argv: list[str]) -> int:
    return run_command("grpo", argv, validate, run)
