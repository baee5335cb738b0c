"""Fixtures shared by the unit tests: the embedded tiny model and the arith task (module scope: a test module may
change the model's mode or weights without touching another module's copy)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf


@pytest.fixture(scope="module")
def tiny():
    """(model, tokenizer) of the embedded 1M-parameter model."""
    from rlvr.config import ModelConfig
    from rlvr.models import load_model_and_tokenizer

    return load_model_and_tokenizer(ModelConfig())


@pytest.fixture(scope="module")
def task():
    """The default task (arith) as the commands build it."""
    from rlvr.config import TaskConfig
    from rlvr.tasks import build_task

    return build_task(OmegaConf.structured(TaskConfig))
