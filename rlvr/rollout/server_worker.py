"""rlvr's vLLM worker extension (``--worker-extension-cls rlvr.rollout.server_worker.RlvrWorkerExtension``).

What
----
vLLM mixes this class into each of its GPU/CPU workers; its methods are then callable by name through the
server's ``POST /collective_rpc`` (``VLLM_SERVER_DEV_MODE=1``), once per worker, with string arguments:

- ``rlvr_info()``: ``{"extension": "rlvr", "version": <weights version>, "pid": ...}``; the trainer calls it when
  it launches or attaches to a server, to fail early when the extension is missing.
- ``rlvr_reload(folder, version)``: in-place reload of every ``*.safetensors`` file in ``folder`` (``disk`` sync,
  ``rlvr.rollout.weight_sync``), returning the checksum of each tensor as ``load_weights`` consumed it, the engine
  parameters nothing wrote and the version now held.
- ``rlvr_gloo_init(host, port, world_size, timeout_s)`` / ``rlvr_gloo_receive(manifest, version)`` /
  ``rlvr_gloo_close()``: the ``gloo`` sync (``rlvr.rollout.gloo_sync``): join the trainer's group for this server
  (rank 1 + this worker's rank), then receive the manifest's tensors by broadcast, one at a time, into the same
  reload and the same report as ``rlvr_reload``.

Guarantees
----------
The reload is the in-process engine's (``rlvr.rollout.vllm_engine``): ``worker.reload_weights(weights_iterator=...,
is_checkpoint_format=True)`` restores each layer's checkpoint-format parameters, loads and re-runs
``process_weights_after_loading``; on CPU the tied embedding / LM-head GEMM handle is repacked afterwards
(``_repack_cpu_kept_weights``), which vLLM's reload alone leaves computing with the old weight. What the checksum
proves is in ``rlvr.rollout.weight_sync``. The version is only advanced when the reload returned; a reload that
raises leaves the previous version reported, and the error reaches the trainer as the RPC's HTTP error.

How to run the tests: ``python -m pytest -q -m vllm tests/integration/test_server_rollout.py``.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from rlvr.rollout.weight_sync import encode_checksum, tensor_checksum


class RlvrWorkerExtension:
    """Methods vLLM adds to its worker class (``self`` is the worker: ``get_model``, ``reload_weights``...)."""

    def rlvr_info(self) -> dict:
        return {"extension": "rlvr", "version": getattr(self, "_rlvr_version", 0), "pid": os.getpid()}

    def rlvr_reload(self, folder: str, version: str) -> dict:
        from safetensors import safe_open

        files = sorted(Path(folder).glob("*.safetensors"))

        def tensors() -> Iterator[tuple[str, torch.Tensor]]:
            for path in files:
                with safe_open(str(path), framework="pt", device="cpu") as f:
                    for name in f.keys():
                        yield name, f.get_tensor(name)

        return self._rlvr_load(tensors(), version) | {"files": [p.name for p in files]}

    def rlvr_gloo_init(self, host: str, port: str, world_size: str, timeout_s: str) -> dict:
        from torch.distributed import TCPStore

        from rlvr.rollout.gloo_sync import gloo_group

        timeout = float(timeout_s)
        rank = 1 + int(getattr(self, "rank", 0) or 0)
        store = TCPStore(host, int(port), None, False, datetime.timedelta(seconds=timeout))
        address = _address_towards(host, int(port))
        self._rlvr_gloo = gloo_group(store, rank, int(world_size), bind_address=address, timeout_s=timeout)
        self._rlvr_gloo_store = store
        return {"rank": rank, "address": address}

    def rlvr_gloo_receive(self, manifest: str, version: str) -> dict:
        group = getattr(self, "_rlvr_gloo", None)
        if group is None:
            raise RuntimeError("rlvr_gloo_receive before rlvr_gloo_init: this worker is in no gloo group")

        def tensors() -> Iterator[tuple[str, torch.Tensor]]:
            for name, shape, dtype in json.loads(manifest):
                t = torch.empty(shape, dtype=getattr(torch, dtype))
                group.broadcast(t, 0).wait()
                yield name, t

        return self._rlvr_load(tensors(), version) | {"transport": "gloo"}

    def rlvr_gloo_close(self) -> dict:
        self._rlvr_gloo = self._rlvr_gloo_store = None
        return {"closed": True}

    def _rlvr_load(self, source: Iterator[tuple[str, torch.Tensor]], version: str) -> dict:
        """Reload from ``source`` in place, recording each tensor's checksum as ``load_weights`` takes it."""
        from rlvr.rollout.vllm_engine import _repack_cpu_kept_weights

        start = time.perf_counter()
        model = self.get_model()
        expected = {name for name, _ in model.named_parameters()}
        loaded: set[str] = set()  # engine parameters load_weights reports as written
        sums: dict[str, list] = {}  # checkpoint name -> checksum of the tensor as load_weights received it

        def recorded() -> Iterator[tuple[str, torch.Tensor]]:
            for name, t in source:
                sums[name] = encode_checksum(tensor_checksum(t))
                yield name, t

        original = model.load_weights

        def recording_load_weights(weights: Any) -> Any:
            result = original(weights)
            loaded.update(result or ())
            return result

        model.load_weights = recording_load_weights  # an instance attribute shadows the method for this call
        try:
            with torch.no_grad():
                self.reload_weights(weights_iterator=recorded(), is_checkpoint_format=True)
        finally:
            del model.load_weights
            for _ in source:  # a stream must be drained (the sender blocks otherwise); these were not loaded
                pass
        _repack_cpu_kept_weights(self, model)
        self._rlvr_version = int(version)
        return {"version": self._rlvr_version, "checksums": sums, "missing": sorted(expected - loaded),
                "seconds": time.perf_counter() - start}


def _address_towards(host: str, port: int) -> str:
    """The local address the route to ``host`` leaves from (a UDP connect sends nothing; loopback stays loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        return s.getsockname()[0]
