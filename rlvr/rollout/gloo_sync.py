"""``server.sync=gloo``: weights streamed from the trainer to each server's workers over a gloo process group.

What
----
No file is written: for each server, the trainer (rank 0) and that server's workers (ranks 1..W, W = its
tensor-parallel workers, 1 on CPU) form their own gloo group, separate from any group the trainer or vLLM already
use (a ``TCPStore`` served by the trainer on ``server.sync_host``, a bare ``ProcessGroupGloo`` on top; no
``init_process_group``, so neither side's default group is touched). The group is made on the first sync and kept.
A sync of one server is ``/pause?mode=keep`` -> the ``rlvr_gloo_receive`` RPC (the manifest: names, shapes, dtypes,
in order) running in a thread while the trainer broadcasts each tensor in that order -> ``/reset_prefix_cache`` ->
``/resume``. The worker feeds the tensors to vLLM's in-place reload as they arrive, one at a time (the disk sync's
reload path, so memory on the server side stays one tensor above the engine's own), and answers with the same
report the disk sync gets: the checksum of every tensor as ``load_weights`` consumed it, engine parameters left
unwritten, the version. The trainer compares it with its own checksums exactly as for ``disk``
(``rlvr.rollout.weight_sync.compare``); a mismatch raises ``WeightSyncError``.

Why a group per server: servers are paused, updated and resumed one at a time (the others keep sampling under
async GRPO), and a server that dies only takes its own group down. The cost: the trainer sends the weights once
per server (a broadcast tree over all servers would send them once; with 1-2 servers per trainer it does not
matter).

Network: the servers must reach ``sync_host:<port>`` (the store's port is picked free at the first sync and
logged). Each side's gloo device binds the address it reaches the other by (loopback for local servers; for a
remote server, the address of the interface the route to the trainer uses, found without sending a packet).

How to run the tests: ``python -m pytest -q -m vllm tests/integration/test_server_rollout.py -k gloo``.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from typing import Any, Mapping, Sequence

import torch

from rlvr.rollout.server import Server, ServerError, rpc
from rlvr.rollout.weight_sync import Checksum, WeightSync, checksums, compare, named_weights, paused

STORE_PREFIX = "rlvr-weight-sync"


def gloo_group(store: Any, rank: int, world_size: int, *, bind_address: str, timeout_s: float) -> Any:
    """A ``ProcessGroupGloo`` over ``store`` whose device binds ``bind_address`` (never a guessed interface)."""
    from torch.distributed import PrefixStore, ProcessGroupGloo

    options = ProcessGroupGloo._Options()
    options._timeout = datetime.timedelta(seconds=timeout_s)
    options._devices = [ProcessGroupGloo.create_device(hostname=bind_address)]
    return ProcessGroupGloo(PrefixStore(STORE_PREFIX, store), rank, world_size, options)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def manifest(named: Sequence[tuple[str, torch.Tensor]]) -> str:
    """JSON ``[[name, shape, dtype], ...]``: what the worker allocates, in the order the trainer broadcasts."""
    return json.dumps([[name, list(t.shape), dtype_name(t.dtype)] for name, t in named])


class _Link:
    """The trainer's side of one server's group: the server, the store, the group and its world size."""

    def __init__(self, server: Server, store: Any, group: Any, world_size: int):
        self.server, self.store, self.group, self.world_size = server, store, group, world_size


class GlooSync(WeightSync):
    """``gloo``: one gloo group per server, tensors broadcast by the trainer (see the module docstring)."""

    name = "gloo"

    def __init__(self, *, host: str = "127.0.0.1", timeout_s: float = 600.0):
        super().__init__()
        self.host = host
        self.timeout_s = timeout_s
        self._links: dict[str, _Link] = {}

    # ---------------------------------------------------------------------------------------- the groups
    def link(self, server: Server) -> _Link:
        """The group with ``server``'s workers, made on first use (the workers join through an RPC in a thread
        while the trainer joins here: a group forms only when every rank is in)."""
        if server.url in self._links:
            return self._links[server.url]
        from torch.distributed import TCPStore

        workers = rpc(server, "rlvr_info", timeout=self.timeout_s)
        world_size = 1 + len(workers)
        store = TCPStore(self.host, 0, None, True, datetime.timedelta(seconds=self.timeout_s),
                         wait_for_workers=False)
        call = _Call(lambda: rpc(server, "rlvr_gloo_init", self.host, str(store.port), str(world_size),
                                 str(self.timeout_s), timeout=self.timeout_s))
        try:
            group = gloo_group(store, 0, world_size, bind_address=self.host, timeout_s=self.timeout_s)
        except Exception as exc:
            raise ServerError(f"gloo weight sync: {server.where()} did not join the group at {self.host}:"
                              f"{store.port} within {self.timeout_s:.0f} s ({call.error_or(exc)}); can the server "
                              "reach server.sync_host? Or use server.sync=disk") from exc
        replies = call.result()
        if len(replies) != len(workers) or not all(isinstance(r, dict) and r.get("rank") for r in replies):
            raise ServerError(f"rlvr_gloo_init on {server.where()} returned {replies!r}")
        self._links[server.url] = link = _Link(server, store, group, world_size)
        return link

    # ---------------------------------------------------------------------------------------- a sync
    def push(self, policy: Any, servers: Sequence[Server]) -> float:
        start = time.perf_counter()
        version = self.version + 1
        named = [(name, t.contiguous().cpu()) for name, t in named_weights(policy)]
        self.apply(named, checksums(named), servers, version)
        self.version = version
        return time.perf_counter() - start

    def apply(self, named: Sequence[tuple[str, torch.Tensor]], expected: Mapping[str, Checksum],
              servers: Sequence[Server], version: int) -> None:
        """Stream ``named`` as ``version`` to every server and check each worker's report against ``expected``
        (the checksums of what the trainer means to send; a test passes other tensors to see it caught)."""
        plan = manifest(named)
        for server in servers:
            link = self.link(server)
            reports = paused(server, lambda s=server, g=link: self._stream(s, g, named, plan, version),
                             timeout=self.timeout_s)
            for rank, report in enumerate(reports):
                if not isinstance(report, dict):
                    raise ServerError(f"rlvr_gloo_receive on {server.where()} returned {report!r}")
                compare(expected, report, version=version, where=f"{server.where()}, worker {rank}")

    def _stream(self, server: Server, link: _Link, named: Sequence[tuple[str, torch.Tensor]], plan: str,
                version: int) -> list:
        call = _Call(lambda: rpc(server, "rlvr_gloo_receive", plan, str(version), timeout=self.timeout_s))
        for name, tensor in named:
            if call.done():  # the worker stopped receiving (its RPC failed): broadcasting on would block
                break
            link.group.broadcast(tensor, 0, datetime.timedelta(seconds=self.timeout_s)).wait()
        return call.result()

    def close(self) -> None:
        """Drop the groups, on the servers too (``rlvr_gloo_close``: an attached server keeps running and would
        otherwise hold a dead group); a server already stopped is fine. Idempotent."""
        while self._links:
            _, link = self._links.popitem()
            try:
                rpc(link.server, "rlvr_gloo_close", timeout=min(self.timeout_s, 30.0))
            except Exception:  # stopped with the run (launched servers are stopped first) or unreachable
                pass


class _Call:
    """``fn()`` in a daemon thread: an RPC that blocks on the server while the trainer talks gloo to it."""

    def __init__(self, fn: Any):
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True, name="rlvr-gloo-rpc")
        self._thread.start()

    def _run(self, fn: Any) -> None:
        try:
            self._value = fn()
        except BaseException as exc:  # re-raised in the caller's thread by result()
            self._error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def error_or(self, fallback: BaseException) -> str:
        self._thread.join(timeout=1.0)
        return str(self._error or fallback)

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value
