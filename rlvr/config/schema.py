"""Every default, once: one dataclass schema per command (``SCHEMAS``), registered in Hydra's ConfigStore.

The sections they are built from live in ``options`` (the ``opt`` field helper), ``sections``, ``algo``, ``grpo``
and ``stages``; derived defaults (a field that follows another unless set) in ``derived``. YAML under ``conf/``
only selects groups and overrides values (the algorithm presets, conf/algo/*.yaml, are the diffs from
``AlgoConfig``'s GRPO defaults). Each field's ``help`` says what it trades off. Composing a command's config from
Hydra overrides, validating it (every problem at once), ``--help``, ``--cfg job`` and ``--multirun`` are
``rlvr.config.loading``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from rlvr.config.algo import AlgoConfig
from rlvr.config.grpo import GRPOConfig, MonitorConfig, ServerConfig
from rlvr.config.options import opt
from rlvr.config.sections import LoggerConfig, ModelConfig, RewardsConfig, RunCardConfig, SFTConfig, TaskConfig
from rlvr.config.stages import ContaminationConfig, DistillConfig, EvalConfig, PipelineConfig


# ---------------------------------------------------------------------------------------- commands
@dataclass
class RunConfig:
    output_dir: Optional[str] = opt(None, "run directory; None = runs/<command>-<timestamp>")
    seed: int = opt(0, "seed for data order, init and sampling")
    data_dir: Optional[str] = opt("${oc.env:RLVR_DATA_DIR,null}", "folder with local benchmark files (math/, code/) "
                                                                 "that tasks read before trying the hub")
    model: ModelConfig = opt(factory=ModelConfig, help="which model")
    task: TaskConfig = opt(factory=TaskConfig, help="which task")
    logger: LoggerConfig = opt(factory=LoggerConfig, help="experiment tracking")
    run_card: RunCardConfig = opt(factory=RunCardConfig, help="what the run card (RUNCARD.md, provenance.json) "
                                                              "records beyond what is measured")


@dataclass
class SFTRunConfig(RunConfig):
    sft: SFTConfig = opt(factory=SFTConfig, help="cold-start SFT")
    rewards: RewardsConfig = opt(factory=RewardsConfig, help="verifier process pool of the held-out eval after "
                                                             "training: workers, timeouts (reports errors, never aborts)")


@dataclass
class TasksRunConfig(RunConfig):
    split: Optional[str] = opt(None, "split to render (default: the task's first)")
    index: int = opt(0, "which sample of the split to render")


SCHEMAS: dict[str, type] = {"sft": SFTRunConfig, "tasks": TasksRunConfig}


@dataclass
class GRPORunConfig(RunConfig):
    grpo: GRPOConfig = opt(factory=GRPOConfig, help="the GRPO loop: batch sizes, optimiser, sampling, eval, checkpoints")
    algo: AlgoConfig = opt(factory=AlgoConfig, help="GRPO-family knobs; set together by algo=<preset> "
                                                    "(grpo | dr_grpo | dapo | gspo | cispo), then override any")
    rewards: RewardsConfig = opt(factory=RewardsConfig, help="verifier process pool: workers, timeouts, abort rate")
    monitors: MonitorConfig = opt(factory=MonitorConfig, help="reward-hacking monitors: thresholds and windows")
    # EvalConfig is defined below with `rlvr eval`; the lambda looks it up when a config is built. Smaller than
    # `rlvr eval`'s defaults because it runs inside training (grpo.budget_eval_every).
    budget_eval: EvalConfig = opt(factory=lambda: EvalConfig(n=4, num_problems=25), help=(
        "the periodic thinking-budget sweep inside training (same fields as `rlvr eval`'s eval.*; checkpoints and "
        "tag are not used: each sweep is eval/budget_sweep_step<N>.json). Samples with HF generate on the policy"))
    rollout: str = opt("auto", "rollout engine: hf (transformers generate on the policy itself), vllm (a vLLM "
                               "engine colocated in the trainer, weights synced after each update: paged KV cache, "
                               "prefix sharing across a group; rlvr.rollout.vllm_engine), server (vLLM OpenAI "
                               "servers, launched on loopback or attached to: the server.* options; "
                               "rlvr.rollout.server_engine), or auto = vllm when CUDA is present and vllm "
                               "installed, else hf (the choice is logged)")
    server: ServerConfig = opt(factory=ServerConfig, help="rollout=server: which servers (launched or attached), "
                                                          "the weight transport, time-outs")


SCHEMAS["grpo"] = GRPORunConfig


@dataclass
class EvalRunConfig(RunConfig):
    eval: EvalConfig = opt(factory=EvalConfig, help="the thinking-budget sweep: budgets x splits x n samples")
    rewards: RewardsConfig = opt(factory=RewardsConfig, help="verifier process pool: workers, timeouts (an eval "
                                                             "reports verifier errors, it never aborts on them)")
    run_dir: Optional[str] = opt(None, "evaluate this run's checkpoints (eval.checkpoints) and write results into "
                                       "it; None = evaluate model.name_or_path (or model.name) alone")


SCHEMAS["eval"] = EvalRunConfig


@dataclass
class DistillRunConfig(RunConfig):
    distill: DistillConfig = opt(factory=DistillConfig, help="rejection sampling: sample, verify, keep correct traces")
    rewards: RewardsConfig = opt(factory=RewardsConfig, help="verifier process pool: workers, timeouts, abort rate")
    rollout: str = opt("auto", "sampling engine: hf, vllm, or auto (vllm with CUDA and vllm installed, else hf)")


SCHEMAS["distill"] = DistillRunConfig


@dataclass
class PipelineRunConfig(RunConfig):
    pipeline: PipelineConfig = opt(factory=PipelineConfig, help="which stages run, and per-stage overrides")
    distill: DistillConfig = opt(factory=DistillConfig, help="stage distill: rejection sampling (see `rlvr distill --help`)")
    sft: SFTConfig = opt(factory=SFTConfig, help="stage sft: cold-start SFT (see `rlvr sft --help`)")
    grpo: GRPOConfig = opt(factory=GRPOConfig, help="stage grpo: the GRPO loop (see `rlvr grpo --help`)")
    algo: AlgoConfig = opt(factory=AlgoConfig, help="stage grpo: GRPO-family knobs, set together by algo=<preset>")
    rewards: RewardsConfig = opt(factory=RewardsConfig, help="stages distill, sft (held-out eval) and grpo: the verifier process pool")
    rollout: str = opt("auto", "stages distill and grpo: rollout engine hf | vllm | auto")
    eval: EvalConfig = opt(factory=EvalConfig, help="stage eval: thinking-budget sweep of the SFT model and the GRPO "
                                                    "checkpoints (eval.checkpoints: final | all | newest)")
    contamination: ContaminationConfig = opt(factory=ContaminationConfig, help=(
        "checked before GRPO: n-gram overlap of GRPO's training prompts with these eval sets; the result goes into "
        "the GRPO and pipeline run cards"))


SCHEMAS["pipeline"] = PipelineRunConfig


# ------------------------------------------------------------------------------------- contamination
@dataclass
class ContaminationRunConfig(RunConfig):
    contamination: ContaminationConfig = opt(factory=ContaminationConfig, help="n-gram overlap check")


SCHEMAS["check-contamination"] = ContaminationRunConfig


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for command, schema in SCHEMAS.items():
        cs.store(name=f"{command}_schema", node=schema)
