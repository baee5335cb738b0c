"""Shared fixtures: a private model cache per test session and the project's benchmark data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def find_data_dir() -> Path | None:
    candidates = [os.environ.get("RLVR_DATA_DIR"), REPO.parent / "shared" / "data"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tests build the tiny model into their own cache, never the user's."""
    old = os.environ.get("RLVR_CACHE")
    os.environ["RLVR_CACHE"] = str(tmp_path_factory.mktemp("rlvr-cache"))
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    yield
    if old is None:
        os.environ.pop("RLVR_CACHE", None)
    else:
        os.environ["RLVR_CACHE"] = old


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = find_data_dir()
    if found is None:
        pytest.skip("benchmark data not found: set RLVR_DATA_DIR or place it in ../shared/data beside the repo")
    return found


@pytest.fixture(scope="session")
def tiny_model_dir():
    from rlvr.config import ModelConfig
    from rlvr.models import tiny_model_dir as build

    cfg = ModelConfig()
    return build(cfg.tiny, cfg.cache_dir)
