"""Weight sync from the trainer to rollout servers: one interface, a version counter, a checksum after every sync.

What
----
``WeightSync.push(policy, servers) -> seconds`` gives every server the policy's current weights as version
``self.version + 1``: for each server ``/pause?mode=keep`` (requests in flight freeze, they are not dropped) ->
update -> ``/reset_prefix_cache`` (cached KV blocks were computed with the old weights) -> ``/resume``. Transports
(``server.sync``):

- ``disk`` (``DiskSync``, works everywhere a folder is shared): the weights are written as one safetensors file
  into ``<sync_dir>/v<version>/``; the worker extension (``rlvr.rollout.server_worker``) streams that file through
  vLLM's in-place reload (``reload_weights(weights_iterator=..., is_checkpoint_format=True)``, the in-process
  engine's path, plus its CPU repack of the tied LM head). The previous version's folder is deleted afterwards.
- ``gloo`` (``rlvr.rollout.gloo_sync.GlooSync``, no shared folder needed): the trainer broadcasts each tensor to
  the server's workers over a gloo group of its own; the worker feeds them to the same reload as they arrive.
- ``nccl`` (vLLM's weight-transfer API, GPU): not built; validation refuses it (``IMPLEMENTED_TRANSPORTS``).

The checksum, and what it proves
--------------------------------
``tensor_checksum(t) = (float64 sum of t, float64 sum of |t|, numel)`` per checkpoint name. The trainer computes
it over the tensors it hands to the transport (``policy.named_parameters()``, or a LoRA model's merged weights,
under the checkpoint names vLLM's ``load_weights`` takes); the worker computes it over each tensor *as vLLM's
``load_weights`` consumes it* during the reload (the iterator it is given records them), and also reports the
engine parameters that ``load_weights`` did not write and the version it loaded. After every sync the trainer
requires, on every worker of every server: the reported version is the one pushed, the same set of names, the
same numel, sums equal to ``1e-9 * sum|t|`` (float64 reduction order differs between processes), and no engine
parameter left unwritten. A mismatch raises ``WeightSyncError`` and stops the run.

That catches: a reload that silently did nothing (no tensor passes through ``load_weights``: nothing reported),
a stale or torn file (a different folder, an older version, a partial write: sums differ), a lost tensor (a name
missing) and engine parameters no checkpoint tensor covers (they would keep random dummy weights). It does not
prove that the kernels compute with the loaded values (e.g. a packed copy that was not rebuilt): the vLLM-marked
test checks that end to end, the server's greedy output after a sync equal to the trainer's HF greedy output.

How to run the tests: ``python -m pytest -q -m vllm tests/integration/test_server_rollout.py``.
"""

from __future__ import annotations

import shutil
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch

from rlvr.rollout.server import Server, ServerError, request, rpc

IMPLEMENTED_TRANSPORTS = ("disk", "gloo")
REL_TOL = 1e-9  # float64 sums of the same fp32/bf16 values in another order differ by ~1e-16 * sqrt(n) * sum|t|

Checksum = tuple[float, float, int]  # (sum, sum of |t|, numel)


class WeightSyncError(RuntimeError):
    """The server's weights after a sync are not the trainer's: the run must stop."""


def tensor_checksum(t: torch.Tensor) -> Checksum:
    """(float64 sum, float64 sum of |t|, numel) of ``t``: the same function on the trainer and in the worker."""
    d = t.detach().to(torch.float64)
    return float(d.sum()), float(d.abs().sum()), t.numel()


def encode_checksum(c: Checksum) -> list:
    """JSON-safe and exact: float.hex() keeps every bit (and NaN/inf, which JSON itself cannot carry)."""
    return [c[0].hex(), c[1].hex(), c[2]]


def decode_checksum(c: Sequence) -> Checksum:
    return float.fromhex(c[0]), float.fromhex(c[1]), int(c[2])


def checksums(named: Iterable[tuple[str, torch.Tensor]]) -> dict[str, Checksum]:
    return {name: tensor_checksum(t) for name, t in named}


def compare(expected: Mapping[str, Checksum], report: Mapping[str, Any], *, version: int, where: str) -> None:
    """Raise ``WeightSyncError`` unless one worker's ``report`` matches the trainer's ``expected`` checksums."""
    problems = []
    if report.get("version") != version:
        problems.append(f"it reports version {report.get('version')!r}, the trainer pushed {version}")
    got = {name: decode_checksum(c) for name, c in (report.get("checksums") or {}).items()}
    if not got:
        problems.append("no tensor went through its load_weights (the reload did nothing)")
    lost, extra = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
    if got and lost:
        problems.append(f"{len(lost)} tensors were not loaded (e.g. {lost[:3]})")
    if extra:
        problems.append(f"{len(extra)} tensors the trainer did not send were loaded (e.g. {extra[:3]})")
    differ = []
    for name in sorted(expected.keys() & got.keys()):
        (s, a, n), (s2, _, n2) = expected[name], got[name]
        if n != n2 or not abs(s - s2) <= REL_TOL * a + 1e-30:
            differ.append(f"{name}: trainer sum {s!r} ({n} values), server {s2!r} ({n2})")
    if differ:
        problems.append(f"{len(differ)} tensors have other values than the trainer's: " + "; ".join(differ[:3]))
    if report.get("missing"):
        missing = report["missing"]
        problems.append(f"{len(missing)} engine parameters received no value (e.g. {missing[:3]}); they keep "
                        "stale or random weights")
    if problems:
        raise WeightSyncError(f"weight sync to version {version} failed its checksum on {where}: "
                              + "; ".join(problems) + ". The run stops rather than sample from weights that are "
                              "not the policy's. Is the sync folder shared with the server, and is the server "
                              "serving the policy's architecture?")


def named_weights(policy: Any) -> list[tuple[str, torch.Tensor]]:
    """(checkpoint name, tensor) for every weight a sync sends, in-process vLLM and servers alike: detached views
    of the live parameters (no copy until the engine writes them into its own storage), or a LoRA model's merged
    weights (new tensors, the base's names: ``rlvr.model_lora.iter_merged_weights``)."""
    from rlvr.model_lora import is_lora, iter_merged_weights

    if is_lora(policy):
        return [(name, w.detach()) for name, w in iter_merged_weights(policy)]
    return [(name, p.detach()) for name, p in policy.named_parameters()]


class WeightSync(ABC):
    """Pushes the policy's weights to servers; ``version`` counts completed pushes (0 = none yet)."""

    name: str = ""

    def __init__(self) -> None:
        self.version = 0

    @abstractmethod
    def push(self, policy: Any, servers: Sequence[Server]) -> float:
        """Give every server the policy's current weights as version ``version + 1``; returns seconds taken."""

    def close(self) -> None:
        """Release what the transport holds (files, process groups). Default: nothing."""


def paused(server: Server, update: Any, *, timeout: float) -> Any:
    """``/pause?mode=keep`` -> ``update()`` -> ``/reset_prefix_cache`` -> ``/resume`` (resumed even on failure)."""
    request(server, "POST", "/pause?mode=keep", timeout=timeout)
    try:
        result = update()
        request(server, "POST", "/reset_prefix_cache", timeout=timeout)  # KV blocks of the old weights
        return result
    finally:
        request(server, "POST", "/resume", timeout=timeout)


class DiskSync(WeightSync):
    """``disk``: a safetensors folder per version + the worker's reload RPC (see the module docstring)."""

    name = "disk"

    def __init__(self, sync_dir: str | Path, *, timeout_s: float = 600.0):
        super().__init__()
        self.sync_dir = Path(sync_dir)
        self.timeout_s = timeout_s
        self._current: Path | None = None

    def write(self, policy: Any, version: int) -> tuple[Path, dict[str, Checksum]]:
        """Write ``policy``'s weights as ``<sync_dir>/v<version>/model.safetensors``; (folder, their checksums)."""
        from safetensors.torch import save_file

        named = named_weights(policy)
        folder = self.sync_dir / f"v{version}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        tensors = {name: t.detach().contiguous().cpu() for name, t in named}
        expected = checksums(tensors.items())
        tmp = folder / "model.safetensors.tmp"
        save_file(tensors, str(tmp), metadata={"format": "pt", "rlvr_version": str(version)})
        tmp.rename(folder / "model.safetensors")  # the server never sees a half-written file under the real name
        return folder, expected

    def apply(self, folder: Path, expected: Mapping[str, Checksum], servers: Sequence[Server], version: int) -> None:
        """Reload ``folder`` as ``version`` on every server and check each worker's checksums."""
        for server in servers:
            reports = paused(server, lambda s=server: rpc(s, "rlvr_reload", str(folder), str(version),
                                                          timeout=self.timeout_s), timeout=self.timeout_s)
            for rank, report in enumerate(reports):
                if not isinstance(report, dict):
                    raise ServerError(f"rlvr_reload on {server.where()} returned {report!r}")
                compare(expected, report, version=version, where=f"{server.where()}, worker {rank}")

    def push(self, policy: Any, servers: Sequence[Server]) -> float:
        start = time.perf_counter()
        version = self.version + 1
        folder, expected = self.write(policy, version)
        self.apply(folder, expected, servers, version)
        self.version = version
        if self._current is not None and self._current != folder:
            shutil.rmtree(self._current, ignore_errors=True)  # every server now holds the new version
        self._current = folder
        return time.perf_counter() - start

    def close(self) -> None:
        """Delete the version folder(s) written here, and ``sync_dir`` if that leaves it empty (a user's folder
        keeps whatever else it holds)."""
        for folder in self.sync_dir.glob("v*"):
            if folder.is_dir() and folder.name[1:].isdigit() and int(folder.name[1:]) <= self.version + 1:
                shutil.rmtree(folder, ignore_errors=True)
        try:
            self.sync_dir.rmdir()
        except OSError:  # not empty, or already gone
            pass
