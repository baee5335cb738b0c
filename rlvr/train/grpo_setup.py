"""Set-up of ``rlvr grpo``: processes, the run directory, the learner, a resume, the rollout source, the
trackers; all of it in one typed ``Trainer`` that the loop's step functions take.

Order matters and is kept from the first version of the loop (a fixed-seed run gives the same metrics): the
seed is set before the task and models load; the rollout engine is built after the resume and
``torch.set_num_threads`` (vLLM copies the policy's current weights and ignores later thread-count changes).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlvr.runs.layout import RunDir
from rlvr.train.grpo_steps import Learner
from rlvr.train.rollout_source import RolloutSource


@dataclass
class Trainer:
    """Everything one ``rlvr grpo`` process holds while it trains."""

    cfg: DictConfig  # the composed run config
    algo: Any  # rlvr.config.algo.AlgoConfig, the preset resolved
    run: RunDir  # <output_dir>
    learner: Learner
    source: RolloutSource  # scored rollout groups (the in-process engine: rlvr.train.rollout_source.EngineSource)
    budgets: Any  # rlvr.train.budgets.TrainBudgets: the rollouts' thinking budgets
    task: Any
    eval_splits: list[str]
    train_rows: list  # [train prompts] the train split as loaded (the run card fingerprints it)
    start_step: int  # steps completed before this process started (a resume)
    console: Any  # rich Console, quiet on ranks > 0
    tracker: Any = None  # rlvr.runs.tracking.Tracker (rank 0)
    monitors: Any = None  # rlvr.train.monitors.RewardHackingMonitors (rank 0)
    sweeper: Any = None  # rlvr.eval.in_training.BudgetSweeper (rank 0, when grpo.budget_eval_every > 0)
    samples_file: Any = None  # samples.jsonl, open for appending (rank 0)
    piece_cache: dict[int, str] = field(default_factory=dict)  # token id -> text (process supervision)
    started: float = field(default_factory=time.time)

    @property
    def main(self) -> bool:
        return self.learner.accelerator.is_main_process

    @property
    def world(self) -> int:
        return self.learner.accelerator.num_processes


def start_processes(cfg: DictConfig) -> Any:
    """The Accelerator (one per process); refuses a launch where accelerate did not join the processes."""
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list

    from rlvr.config.loading import default_output_dir

    # The LR schedule counts optimizer steps; accelerate would otherwise step it once per process per step.
    accelerator = Accelerator(step_scheduler_with_optimizer=False, mixed_precision=cfg.grpo.mixed_precision)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:  # e.g. `accelerate launch --multi_gpu` without a GPU
        raise RuntimeError(f"{launched} processes were launched but accelerate set up {accelerator.num_processes}: "
                           "without a GPU, set ACCELERATE_USE_CPU=true for DDP over gloo on CPU "
                           "(see `rlvr.train.grpo`)")
    from rlvr.train.sharding import ensure_process_group, resolve_sharding

    cfg.grpo.sharding = resolve_sharding(cfg.grpo.sharding, accelerator.num_processes)  # the config says what ran
    if cfg.grpo.sharding == "fsdp":
        ensure_process_group(accelerator.device.type)
    default_output_dir(cfg, "grpo")
    if accelerator.num_processes > 1:  # a timestamped default differs per process: use rank 0's
        cfg.output_dir = broadcast_object_list([cfg.output_dir])[0]
    return accelerator


def prepare_run_dir(cfg: DictConfig, accelerator: Any, console: Any) -> RunDir | None:
    """The run directory, ready to train into; None when it already holds a finished run of >= max_steps."""
    g, run = cfg.grpo, RunDir(cfg.output_dir)
    done = run.read_done("grpo")
    if g.resume and done is not None and done.get("step", 0) >= g.max_steps:
        console.print(f"[yellow]{run.final} is complete; nothing to do (grpo.resume=false retrains)[/yellow]")
        return None
    accelerator.wait_for_everyone()  # every rank has read the run folder before rank 0 changes it
    if accelerator.is_main_process:
        run.path.mkdir(parents=True, exist_ok=True)
        run.config.write_text(OmegaConf.to_yaml(cfg))
        run.done_marker("grpo").unlink(missing_ok=True)  # final/ is about to be out of date
        if not g.resume and run.checkpoints.exists():  # a fresh run must never resume from stale state later
            console.print(f"[yellow]grpo.resume=false: removing the old {run.checkpoints}[/yellow]")
            shutil.rmtree(run.checkpoints)
    accelerator.wait_for_everyone()
    return run


def resume(run: RunDir, learner: Learner, enabled: bool, console: Any) -> Any:
    """Load the newest checkpoint into ``learner`` (weights, optimizer, schedule, this rank's RNG states);
    returns its ``TrainerState`` (step 0, position 0 without one)."""
    from rlvr.train.checkpoint import TrainerState, load_trainer_state, load_weights
    from rlvr.train.sharded_checkpoint import has_sharded_state, load_sharded_state

    folder = run.newest_checkpoint("grpo") if enabled else None
    if folder is None:
        return TrainerState(step=0, data_position=0)
    optimizer = learner.optimizer
    if has_sharded_state(folder):  # written by an FSDP run, at any world size: fills shards or a plain module
        load_sharded_state(folder, learner.trained, learner.optimizer)
        learner.refresh_policy()
        optimizer = None  # restored from dcp/ with the weights
    elif learner.sharding == "fsdp":
        raise RuntimeError(f"{folder} was written by an unsharded run (grpo.sharding=none or ddp): its optimizer "
                           "state is keyed by parameter index, which FSDP cannot map onto its shards. Resume it "
                           "with the sharding it was trained with, or start over with grpo.resume=false")
    else:
        load_weights(learner.policy, folder)
    state = load_trainer_state(folder, optimizer, learner.scheduler, rank=learner.accelerator.process_index)
    console.print(f"[yellow]resuming from {folder} (step {state.step})[/yellow]")
    return state


def build_source(cfg: DictConfig, algo: Any, stream: Any, learner: Learner, engine_name: str, budgets: Any,
                 start_step: int = 0) -> Any:
    """The rollout source: engine over the policy (in-process, or vLLM servers for ``rollout=server``: the same
    ``EngineSource``, whose ``sync`` then pushes weights to the servers with a checksum), reward runtime, the
    train ``stream`` (at the resumed position). With ``server.max_staleness=K > 0`` it is wrapped in
    ``rlvr.train.async_source.AsyncSource``, whose producer starts at step ``start_step + 1``."""
    from rlvr.rewards.runtime import RewardRuntime, RewardsConfig
    from rlvr.rollout.base import SamplingParams
    from rlvr.rollout.engines import build_engine
    from rlvr.train.rollout_source import EngineSource

    g = cfg.grpo
    engine = build_engine(engine_name, learner.policy, learner.tokenizer, seed=cfg.seed,
                          think_open=cfg.task.think_open, think_close=cfg.task.think_close,
                          batch_size=g.rollout_batch_size, server=cfg.get("server"), run_dir=cfg.output_dir,
                          rank=learner.accelerator.process_index, world_size=learner.accelerator.num_processes)
    runtime = RewardRuntime(RewardsConfig(**OmegaConf.to_container(cfg.rewards, resolve=True)))
    learner.pad_id = engine.pad_id  # the update pads rows as the engine does
    sampling = SamplingParams(temperature=g.temperature, top_p=g.top_p, max_new_tokens=g.max_new_tokens)
    source = EngineSource(engine, runtime, stream, budgets, sampling, algo, prompts_per_step=g.prompts_per_step,
                          group_size=g.group_size, max_new_tokens=g.max_new_tokens, seed=cfg.seed,
                          accelerator=learner.accelerator)
    staleness = cfg.server.max_staleness if engine_name == "server" and cfg.get("server") is not None else 0
    if not staleness:  # K = 0: the synchronous source itself, no thread
        return source
    from rlvr.train.async_source import AsyncSource

    return AsyncSource(source, staleness, start_step=start_step, max_steps=g.max_steps)


def setup(cfg: DictConfig) -> Trainer | None:
    """Everything step 1 needs, resumed from the newest checkpoint when there is one; None = nothing to do."""
    import torch
    from accelerate.utils import set_seed
    from rich.console import Console

    from rlvr.algo.presets import AlgoConfig
    from rlvr.runs.tracking import Tracker
    from rlvr.tasks import build_task
    from rlvr.train.budgets import TrainBudgets
    from rlvr.train.checkpoint import truncate_jsonl
    from rlvr.train.grpo_steps import build_learner
    from rlvr.train.grpo_validation import choose_engine
    from rlvr.train.rollout_source import stream_of

    g = cfg.grpo
    accelerator = start_processes(cfg)
    main_proc = accelerator.is_main_process
    console = Console(quiet=not main_proc)
    algo = AlgoConfig(**OmegaConf.to_container(cfg.algo, resolve=True))
    run = prepare_run_dir(cfg, accelerator, console)
    if run is None:
        return None
    if g.threads:
        torch.set_num_threads(g.threads)
    set_seed(cfg.seed)
    engine_name, why = choose_engine(cfg.rollout)
    console.print(f"[bold]rlvr grpo[/bold]  model={cfg.model.name_or_path or cfg.model.name}  task={cfg.task.name}  "
                  f"algo={algo.name}  rollout={engine_name} ({why})  B={g.prompts_per_step} G={g.group_size}  "
                  f"steps={g.max_steps}  out={run.path}")
    console.print("algo: " + "  ".join(f"{k}={v}" for k, v in asdict(algo).items()))  # the preset, resolved

    task = build_task(cfg.task, data_dir=cfg.data_dir)
    learner = build_learner(cfg, algo, accelerator, run.path, console.print)
    state = resume(run, learner, g.resume, console)
    budgets = TrainBudgets(g.train_budget, seed=cfg.seed)
    t = Trainer(cfg, algo, run, learner, None, budgets, task, list(g.eval_splits) or task.default_eval_splits(),
                [], state.step, console)
    if main_proc:
        from rlvr.eval.cost import grpo_plan

        for line in grpo_plan(cfg, t.eval_splits, list(cfg.budget_eval.splits), accelerator.device.type, state.step):
            console.print(line)  # what the evals will cost, before the first step
        keep = state.step or None  # rows of the resumed-from steps stay; a fresh start keeps none
        t.tracker = Tracker(run.path, cfg.logger, cfg, job_type="grpo", keep_until_step=keep)
        truncate_jsonl(run.samples, keep)
    # built after the resume and set_num_threads: vLLM copies the policy's current weights and ignores later
    # thread-count changes in this process
    stream = stream_of(task, g.train_split, g.max_train_prompts, cfg.seed, state.data_position, algo.process_verifier)
    t.source = build_source(cfg, algo, stream, learner, engine_name, budgets, start_step=state.step)
    t.train_rows = stream.samples
    if main_proc:
        from rlvr.train.monitors import RewardHackingMonitors

        if g.budget_eval_every:
            from rlvr.eval.in_training import BudgetSweeper

            t.sweeper = BudgetSweeper(cfg, task, learner.tokenizer, run.path, t.tracker, console,
                                      resumed_step=state.step)
        # reward-hacking monitors: rank 0 watches its own completions and the held-out evals
        t.monitors = RewardHackingMonitors(cfg, run.path, console=console)
        if state.monitors:  # a resumed run keeps its length baseline and reward history
            t.monitors.load_state_dict(state.monitors)
        t.samples_file = run.samples.open("a", buffering=1)
    return t
