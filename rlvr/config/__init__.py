"""Configuration: option fields (``options``), every section's dataclass (``sections``, ``algo``, ``grpo``,
``stages``), one schema per command (``schema``) and composing/validating from Hydra overrides (``loading``).

Import config classes from here: ``from rlvr.config import ModelConfig``.
"""

from rlvr.config.algo import AlgoConfig
from rlvr.config.grpo import BUDGET_STATEMENT, ROLLOUT_ENGINES, TRAIN_BUDGET_MODES, GRPOConfig, MonitorConfig, TrainBudgetConfig
from rlvr.config.options import MISSING, describe, opt
from rlvr.config.schema import (SCHEMAS, ContaminationRunConfig, DistillRunConfig, EvalRunConfig, GRPORunConfig,
                                PipelineRunConfig, RunConfig, SFTRunConfig, TasksRunConfig, register_configs)
from rlvr.config.sections import (ArithConfig, LoggerConfig, ModelConfig, RewardsConfig, RunCardConfig, SFTConfig,
                                  TaskConfig, TinyModelConfig)
from rlvr.config.stages import (PIPELINE_STAGES, ContaminationConfig, DistillConfig, EvalConfig, PipelineConfig,
                                StageOverrides)

__all__ = [
    "AlgoConfig", "ArithConfig", "ContaminationRunConfig", "DistillRunConfig", "EvalRunConfig", "GRPORunConfig",
    "PipelineRunConfig", "RunConfig", "SFTRunConfig", "TasksRunConfig", "BUDGET_STATEMENT", "ContaminationConfig", "DistillConfig", "EvalConfig",
    "GRPOConfig", "LoggerConfig", "MISSING", "ModelConfig", "MonitorConfig", "PIPELINE_STAGES", "PipelineConfig",
    "ROLLOUT_ENGINES", "RewardsConfig", "TRAIN_BUDGET_MODES", "RunCardConfig", "SCHEMAS", "SFTConfig", "StageOverrides", "TaskConfig",
    "TinyModelConfig", "TrainBudgetConfig", "describe", "opt", "register_configs",
]
