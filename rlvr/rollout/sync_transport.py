"""``server.sync``: the weight transport by name (``disk`` | ``gloo``), the one place that picks one.

Its own module because the gloo transport builds on ``rlvr.rollout.weight_sync`` (checksums, ``compare``) and the
chooser must see both without the two importing each other.
"""

from __future__ import annotations

from pathlib import Path

from rlvr.config.grpo import SYNC_TRANSPORTS
from rlvr.rollout.gloo_sync import GlooSync
from rlvr.rollout.weight_sync import IMPLEMENTED_TRANSPORTS, DiskSync, WeightSync


def build_sync(name: str, *, sync_dir: str | Path, host: str = "127.0.0.1", timeout_s: float = 600.0) -> WeightSync:
    """The transport ``name`` (``server.sync``): ``disk`` writes under ``sync_dir``, ``gloo`` serves its group's
    store on ``host``. Any other name is refused with the ones that exist."""
    if name == "disk":
        return DiskSync(sync_dir, timeout_s=timeout_s)
    if name == "gloo":
        return GlooSync(host=host, timeout_s=timeout_s)
    raise ValueError(f"weight sync transport {name!r} does not exist here; use one of "
                     f"{', '.join(IMPLEMENTED_TRANSPORTS)} (of {', '.join(SYNC_TRANSPORTS)})")
