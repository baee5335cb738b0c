"""``rlvr grpo``: GRPO-family RL from verifiable rewards, one readable loop.

    rlvr grpo model.name_or_path=runs/sft/final task=arith algo=dapo grpo.max_steps=100 output_dir=runs/grpo
    rlvr grpo algo=grpo grpo.prompts_per_step=16 grpo.group_size=8 grpo.learning_rate=3e-4 ...
    rlvr grpo --help                                   # every knob, with what it trades off
    accelerate launch --multi_gpu --num_processes 8 -m rlvr.cli grpo ...   # one process per GPU (see "Processes")

The loop is a short story of step functions over typed containers (``run`` and ``train`` below):

    t = setup(cfg)                                   # rlvr.train.grpo_setup: Trainer (learner, source, run dir)
    batch = t.source.collect(step, timer)            # 1-3, rlvr.train.rollout_source: StepBatch
    metrics = update(t.learner, batch, algo, g, ...) # 4-6, rlvr.train.grpo_steps
    t.source.sync(t.learner.policy)                  # 7
    row, samples = measure(t, step, batch, ...)      # 8, rlvr.train.grpo_report (+ rlvr.train.step_metrics)
    row |= evaluate(t, step, row, timer); log_step(...); save(t, step)     # 9, 8, 10
    finish(t)                                        # final/, run card, done marker

The rollout side is one interface, ``RolloutSource`` (``collect``, ``sync``, ``position``); the in-process engine
is ``EngineSource``, and a remote or asynchronous source can replace it without touching the update
(``rollout=server server.max_staleness=K``: ``rlvr.train.async_source.AsyncSource`` samples up to K steps ahead;
its ``metrics()`` — staleness, ``sync/version`` — join the row in ``measure``).

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
   ``grpo.updates_per_batch > 1`` optimizer steps (otherwise on-policy: old = current, detached); ``time/logprob``
   is 0 on steps where neither runs;
6. update: policy loss (``rlvr.algo.loss``) over micro-batches whose losses add up to the full batch's, one
   backward each, gradient clipping, AdamW, LR schedule. Micro-batches are whole groups sorted by length, each
   cut to the columns its rows use (``rlvr.train.update.plan_chunks``: ~28% less forward/backward time at 16 x 16);
7. sync: push new weights to the rollout engine (a no-op for HF, which samples from the training model);
8. log one metrics.jsonl row (phase timings ``time/<phase>``, reward/accuracy/verifier stats, lengths, clip
   fractions, KL, entropy, grad norm, LR, tokens/s) and the first completions to samples.jsonl;
9. eval: greedy held-out accuracy per difficulty split every ``grpo.eval_every`` steps (``eval/<split>/accuracy``),
   and the accuracy-vs-thinking-budget sweep every ``grpo.budget_eval_every`` steps (``budget_eval/*``, files in
   ``eval/``, plots in ``plots/``); both also at the start (step 0) and the end;
10. checkpoint every ``grpo.save_every`` steps (``rlvr.train.checkpoint``: weights, optimizer, schedule, RNG,
   data position and the reward-hacking monitors' state); a restart resumes from the newest
   (``rlvr.runs.layout.RunDir``, which knows the run directory's layout).

Thinking budget (``rlvr.train.budgets``). ``grpo.train_budget.mode``: ``none`` samples freely up to
``grpo.max_new_tokens``; ``fixed`` budget-forces every rollout at B thinking tokens (s1: ``</think>`` is forced at B
and the answer gets ``answer_tokens``); ``sample`` draws B per prompt from ``choices``, seeded by (seed, step,
stream position), so a resume draws the same budgets. With ``state_in_prompt`` the prompt says its budget
("Think for 16 tokens." on a new line after the user message, ``prompt_template``) and the policy can learn to
condition on it (budget-conditioned RL, L1 2503.04697); the G completions of a prompt share its budget, and the
engine is called once per distinct budget with the prompt-major order restored. Forced tokens are context, not
trained on (``RolloutBatch.completion_mask``). Rows log ``budget/thinking_mean`` (mean B) and ``budget/forced_frac``
(rollouts cut at B); samples.jsonl rows carry ``budget``, ``thinking_tokens`` and ``budget_forced``. The sweep
(``grpo.budget_eval_every``, the ``budget_eval`` section = ``rlvr eval``'s settings) runs ``rlvr.eval.budget_sweep`` on the
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
- Dr. GRPO's constant normaliser (``aggregation=constant``) defaults to ``grpo.max_new_tokens``, the generation
  budget, as in the paper and TRL (``algo.norm_constant`` overrides it), not to the batch's padded width.

Processes (DDP). tests/integration/test_grpo_ddp.py runs 2 processes on CPU/gloo where one rank never keeps a
group, and checks the rules below: one metrics row per step, different prompts per rank, identical weights,
whole-batch metrics, and a re-launch that resumes from the checkpoint.

    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 -m rlvr.cli grpo ...   # CPU, gloo
    accelerate launch --multi_gpu --num_processes 8 -m rlvr.cli grpo ...                           # 8 GPUs, nccl

``accelerate launch --cpu`` starts a single process (several only through MPI). Without a GPU, ``--multi_gpu``
(torchrun) needs ``ACCELERATE_USE_CPU=true``, or accelerate would make every process a lone single-process run
writing into the same folder; the trainer compares ``WORLD_SIZE`` with accelerate's count and stops instead.
Each rule lives in the step it concerns: data and joint stopping in ``EngineSource.collect``, the idle rank and
global normalisers in ``update``, whole-batch metrics in ``rlvr.train.step_metrics`` (one path: one process
computes from its own tables, several from the gathered ones), checkpoints and fingerprints in ``save``/``finish``.
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
- Checkpoints hold every rank's RNG states; a resumed rank restores its own (``rlvr.train.checkpoint``).

Sharding (``grpo.sharding``: none | ddp | fsdp, ``rlvr.train.sharding``). ``fsdp`` keeps every rule above and
shards parameters, gradients and AdamW state over the processes (FSDP2 ``fully_shard`` per decoder layer); every
rank runs the same number of micro-batches (forwards are collectives), samples and evaluates from an unsharded
frozen copy of the policy that is refilled from the shards at step 7, and checkpoints are sharded
(``rlvr.train.sharded_checkpoint``, ``torch.distributed.checkpoint``) and resume at any world size, one process
included. tests/integration/test_grpo_fsdp.py checks FSDP against DDP and a SIGKILLed FSDP run resumed in one
process. Not covered: several processes feeding one vLLM engine (each rank runs its own).
"""

from __future__ import annotations

import time

from omegaconf import DictConfig

from rlvr.config.loading import run_command
from rlvr.train.grpo_report import close, evaluate, evaluate_start, finish, log_step, measure, save
from rlvr.train.grpo_setup import Trainer, setup
from rlvr.train.grpo_steps import dr_grpo_norm_constant, update
from rlvr.train.grpo_validation import validate
from rlvr.train.loop_parts import PhaseTimer

__all__ = ["dr_grpo_norm_constant", "main", "run", "train"]


def run(cfg: DictConfig) -> int:
    """``rlvr grpo`` with a composed, validated config: set up (or resume), train, finish."""
    t = setup(cfg)
    if t is None:  # final/ already holds a finished run of >= grpo.max_steps
        return 0
    try:
        evaluate_start(t)
        train(t)
    finally:
        close(t)
    finish(t)
    return 0


def train(t: Trainer) -> None:
    """Steps ``t.start_step + 1 .. grpo.max_steps``, each the numbered story of the module docstring."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    g = t.cfg.grpo
    progress = Progress(TextColumn("[bold]grpo"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.description}"), console=t.console, disable=not t.main)
    bar = progress.add_task("", total=g.max_steps, completed=t.start_step)
    with progress:
        for step in range(t.start_step + 1, g.max_steps + 1):
            step_start = time.perf_counter()
            timer = PhaseTimer(cuda=t.learner.accelerator.device.type == "cuda")
            batch = t.source.collect(step, timer)  # 1-3. rollout -> reward -> dynamic sampling
            update_metrics = update(t.learner, batch, t.algo, g, timer, t.piece_cache)  # 4-6. advantages .. update
            with timer("sync"):  # 7. the rollout engine gets the new weights (under FSDP: gathered first)
                t.learner.refresh_policy()
                t.source.sync(t.learner.policy)
            row, samples = measure(t, step, batch, update_metrics, timer, time.perf_counter() - step_start)  # 8.
            row |= evaluate(t, step, row, timer)  # 9.
            log_step(t, step, batch, row, samples, timer, step_start)
            progress.update(bar, advance=1, description=f"reward {row['reward/mean']:.3f}  acc {row['accuracy']:.3f}  "
                            f"groups {batch.batch_groups}/{g.prompts_per_step * t.world}  {row['time/step']:.1f}s/step")
            if g.save_every and step % g.save_every == 0:  # 10.
                save(t, step)


def main(argv: list[str]) -> int:
    return run_command("grpo", argv, validate, run)
