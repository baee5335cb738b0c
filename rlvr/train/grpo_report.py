"""The steps of ``rlvr grpo`` after the update (8-10 of the story in ``rlvr.train.grpo``): measure and log a
step, evaluate, checkpoint; and the run's start (step-0 evals) and end (final model, run card, done marker).

DDP rules that live here (see "Processes" in ``rlvr.train.grpo``): ``measure`` is a collective (whole-batch
metrics, every rank's samples); rank 0 alone writes metrics.jsonl, samples.jsonl, checkpoints and evals and runs
the monitors; at every checkpoint and at the end the ranks compare weight fingerprints; a checkpoint holds
every rank's RNG states, and no rank runs ahead of (or exits before) a half-written save.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from rlvr.train.loop_parts import PhaseTimer
from rlvr.train.rollout_source import StepBatch

if TYPE_CHECKING:
    from rlvr.train.grpo_setup import Trainer


def evaluate_start(t: Trainer) -> None:
    """Step 0 of a fresh run (rank 0): the greedy held-out eval and the budget sweep, for before/after."""
    from rlvr.eval.heldout import run_eval

    g = t.cfg.grpo
    if t.start_step != 0 or not t.main:
        return
    policy = t.learner.policy
    if g.eval_every:
        before = run_eval(policy, t.learner.tokenizer, t.task, t.cfg, t.eval_splits, t.run.path, 0, t.console)
        t.tracker.summary({k.replace("eval/", "eval_start/"): v for k, v in before.items()})
        t.monitors.observe_heldout(0, before)
    if t.sweeper is not None:
        before = t.sweeper(policy, 0)
        t.tracker.summary({k.replace("budget_eval/", "budget_eval_start/"): v for k, v in before.items()})


def measure(t: Trainer, step: int, batch: StepBatch, update_metrics: dict[str, float], timer: PhaseTimer,
            step_seconds: float) -> tuple[dict[str, Any], list[dict]]:
    """(metrics row, samples.jsonl rows) of the step, before eval and timings. A collective."""
    from rlvr.train.step_metrics import step_row, step_samples

    acc, g = t.learner.accelerator, t.cfg.grpo
    row = step_row(batch, update_metrics, acc, budgets=t.budgets.active, lr=t.learner.scheduler.get_last_lr()[0],
                   position=t.source.position, step_seconds=step_seconds,
                   rollout_seconds=timer.seconds["rollout"])
    if hasattr(t.source, "metrics"):  # e.g. the async source: rollout/staleness_*, sync/version
        row |= t.source.metrics()
    return row, step_samples(step, batch, g.num_samples_to_log, acc, budgets=t.budgets.active)


def evaluate(t: Trainer, step: int, row: dict[str, Any], timer: PhaseTimer) -> dict[str, float]:
    """9. The greedy held-out eval every ``grpo.eval_every`` steps and the budget sweep when due (rank 0; timed,
    so its time is part of this step's row)."""
    from rlvr.eval.heldout import run_eval

    g, out = t.cfg.grpo, {}
    if g.eval_every and (step % g.eval_every == 0 or step == g.max_steps) and t.main:
        with timer("eval"):
            out |= run_eval(t.learner.policy, t.learner.tokenizer, t.task, t.cfg, t.eval_splits, t.run.path, step,
                            t.console)
    if t.main:  # later evals are timed by this step's own rollout throughput (HF engine only)
        from rlvr.eval.cost import observe_rollout

        observe_rollout(t.learner.policy, row, getattr(t.source, "engine", "remote"))
    if t.sweeper is not None:
        t.sweeper.trained(row.get("tokens"))
        if t.sweeper.due(step):
            with timer("eval"):
                out |= t.sweeper(t.learner.policy, step)
    return out


def log_step(t: Trainer, step: int, batch: StepBatch, row: dict[str, Any], samples: list[dict], timer: PhaseTimer,
             step_start: float) -> None:
    """Monitors (after the eval, which they compare with), phase timings, then one metrics.jsonl row and the
    samples (rank 0)."""
    if t.monitors is not None:
        row |= t.monitors.update_scored(step, batch.rounds,
                                        heldout={k: v for k, v in row.items() if k.startswith("eval/")})
    row |= {f"time/{p}": s for p, s in timer.seconds.items()}
    row["time/step"] = time.perf_counter() - step_start
    if t.main:
        t.tracker.log(row, step=step)
        for sample_row in samples:
            t.samples_file.write(json.dumps(sample_row) + "\n")


def save(t: Trainer, step: int) -> None:
    """10. A checkpoint (atomic; a kill mid-save keeps the previous one) with the monitors' state. A collective."""
    from accelerate.utils import gather_object

    from rlvr.train.checkpoint import TrainerState, rng_state, save_checkpoint
    from rlvr.train.distributed import replica_fingerprints
    from rlvr.train.sharded_checkpoint import save_sharded_checkpoint

    acc, learner = t.learner.accelerator, t.learner
    rng_states = None
    if t.world > 1:  # rank 0 writes, with every rank's RNG states; all check their weights agree
        rng_states = gather_object([rng_state()])
        replica_fingerprints(acc, learner.policy)
    state = TrainerState(step, t.source.position, t.monitors.state_dict() if t.main else None)  # rank 0's monitors
    keep = t.cfg.grpo.keep_checkpoints
    if learner.sharding == "fsdp":  # every rank writes its shards (dcp/), rank 0 the rest
        save_sharded_checkpoint(t.run.path, state, learner.model, learner.policy, learner.tokenizer,
                                learner.optimizer, learner.scheduler, main=t.main, keep=keep, rng_states=rng_states)
    elif t.main:
        save_checkpoint(t.run.path, state, learner.policy, learner.tokenizer, learner.optimizer, learner.scheduler,
                        keep=keep, rng_states=rng_states)
    acc.wait_for_everyone()


def close(t: Trainer) -> None:
    """Free the rollout source (engine, reward pool), the sweep's pool and samples.jsonl."""
    t.source.close()
    if t.sweeper is not None:
        t.sweeper.close()
    if t.samples_file is not None:
        t.samples_file.close()


def finish(t: Trainer) -> None:
    """The final model, summary, run card and (last) the done marker; every rank checks the weights agree."""
    from rlvr.runs.provenance import dataset_fingerprint, task_datasets, task_source, write_stage_card
    from rlvr.train.distributed import replica_fingerprints

    acc, g, run = t.learner.accelerator, t.cfg.grpo, t.run
    acc.wait_for_everyone()
    fingerprints = replica_fingerprints(acc, t.learner.policy) if t.world > 1 else None
    if not t.main:
        return
    from rlvr.model_lora import is_lora, save_final, trainable_parameter_count

    policy, lora = t.learner.policy, t.cfg.model.lora
    if is_lora(policy):  # final/adapter/ and, with model.lora.merge_final, the merged model in final/
        save_final(policy, t.learner.tokenizer, run.final, merge=lora.merge_final)
    else:
        policy.save_pretrained(run.final, safe_serialization=True)
        t.learner.tokenizer.save_pretrained(run.final)
    trainable, total = trainable_parameter_count(t.learner.trained)
    summary = {"grpo/wall_seconds": time.time() - t.started, "step": g.max_steps,
               "model/trainable_params": trainable, "model/params": total}
    if fingerprints is not None:  # every rank's, all equal (checked)
        summary |= {"processes": t.world, "weights/fingerprint_per_rank": fingerprints}
    t.tracker.summary(summary)
    last_eval = run.eval / f"grpo_step{g.max_steps}.json"
    write_stage_card(
        t.cfg, "grpo", run.path, tracker=t.tracker, final_dir=run.final, console=t.console,
        wall_seconds=summary["grpo/wall_seconds"], verifiers=t.task.verifier_specs(), monitors=t.monitors.summary(),
        datasets=[dataset_fingerprint(t.train_rows, source=task_source(t.task, g.train_split), split=g.train_split,
                                      role="train")]
        + task_datasets(t.task, dict.fromkeys(t.eval_splits, g.eval_num_problems), role="eval"),
        eval_table=json.loads(last_eval.read_text())["rows"] if last_eval.exists() else None)
    t.tracker.close()
    run.done_marker("grpo").write_text(json.dumps(summary, indent=2))  # written last: a crash before it redoes it
    t.console.print(f"done in {summary['grpo/wall_seconds']:.0f}s; model: {run.final}  metrics: {run.metrics}")
