"""Configuration: option fields (``options``), every section's dataclass (``sections``, ``algo``, ``grpo``,
``stages``), derived defaults (``derived``), one schema per command (``schema``), composing/validating from Hydra
overrides (``loading``), ``--help`` from the composed config (``help``) and ``--multirun`` sweeps (``sweep``).

Import config classes from here: ``from rlvr.config import ModelConfig``.
"""

from rlvr.config.algo import AlgoConfig
from rlvr.config.derived import default_k_list
from rlvr.config.grpo import (BUDGET_STATEMENT, GRPO_ROLLOUT_ENGINES, ROLLOUT_ENGINES, SYNC_TRANSPORTS,
                              TRAIN_BUDGET_MODES, GRPOConfig, MonitorConfig, ServerConfig, TrainBudgetConfig)
from rlvr.config.options import MISSING, opt
from rlvr.config.schema import (SCHEMAS, ContaminationRunConfig, DistillRunConfig, EvalRunConfig, GRPORunConfig,
                                PipelineRunConfig, RunConfig, SFTRunConfig, TasksRunConfig, register_configs)
from rlvr.config.sections import (ArithConfig, LoggerConfig, ModelConfig, RewardsConfig, RunCardConfig, SFTConfig,
                                  TaskConfig, TinyModelConfig)
from rlvr.config.stages import (PIPELINE_STAGES, ContaminationConfig, DistillConfig, EvalConfig, PipelineConfig,
                                StageOverrides)

__all__ = [
    "BUDGET_STATEMENT", "GRPO_ROLLOUT_ENGINES", "MISSING", "PIPELINE_STAGES", "ROLLOUT_ENGINES", "SCHEMAS",
    "SYNC_TRANSPORTS", "TRAIN_BUDGET_MODES", "AlgoConfig", "ArithConfig", "ContaminationConfig",
    "ContaminationRunConfig", "DistillConfig", "DistillRunConfig", "EvalConfig", "EvalRunConfig", "GRPOConfig",
    "GRPORunConfig", "LoggerConfig", "ModelConfig", "MonitorConfig", "PipelineConfig", "PipelineRunConfig",
    "RewardsConfig", "RunCardConfig", "RunConfig", "SFTConfig", "SFTRunConfig", "ServerConfig", "StageOverrides",
    "TaskConfig", "TasksRunConfig", "TinyModelConfig", "TrainBudgetConfig", "default_k_list", "opt",
    "register_configs",
]
