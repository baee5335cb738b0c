"""Capability probe and ``open_sandbox``: pick the strongest backend that actually works on this host.

Order: forkserver (root, unshare works) > bwrap (bubblewrap installed and able to create its namespaces, run
as the calling user — or, under root, as a slot uid) > subprocess (rlimits only; warns loudly, naming what is
not isolated). Naming a backend explicitly never falls back: it fails with the reason instead.
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import fields

from rlvr.sandboxes.base import Sandbox
from rlvr.sandboxes.config import SandboxConfig

log = logging.getLogger(__name__)
ORDER = ("forkserver", "bwrap", "subprocess")


@functools.lru_cache(maxsize=None)
def probe() -> dict[str, tuple[bool, str]]:
    """{backend: (works here, reason if not)}; cached for the life of the process."""
    from rlvr.sandboxes import bwrap, forkserver

    return {"forkserver": forkserver.available(), "bwrap": bwrap.available(), "subprocess": (True, "")}


def open_sandbox(backend: str = "auto", config: SandboxConfig | None = None, **limits) -> Sandbox:
    """Open a sandbox (a context manager). ``limits`` are SandboxConfig fields, e.g. timeout_s=2, workers=2."""
    known = {f.name for f in fields(SandboxConfig)}
    unknown = sorted(set(limits) - known)
    if unknown:
        raise TypeError(f"unknown sandbox option(s) {unknown}; known: {sorted(known)}")
    base = config if config is not None else SandboxConfig()
    cfg = SandboxConfig(**{**{f.name: getattr(base, f.name) for f in fields(SandboxConfig)}, **limits})
    if backend == "auto":
        backend = cfg.backend
    cfg.backend = backend
    cfg = cfg.resolved()
    if backend == "auto":
        caps = probe()
        backend = next(b for b in ORDER if caps[b][0])
        if backend != "forkserver":
            log.info("sandbox: forkserver unavailable (%s); using %s", caps["forkserver"][1], backend)
    if backend == "forkserver":
        from rlvr.sandboxes.forkserver import ForkServerSandbox

        return ForkServerSandbox(cfg)
    if backend == "bwrap":
        from rlvr.sandboxes.bwrap import BwrapSandbox

        return BwrapSandbox(cfg)
    from rlvr.sandboxes.subproc import SubprocessSandbox

    sb = SubprocessSandbox(cfg)
    msg = ("rlvr sandbox: running model code WITHOUT ISOLATION (subprocess backend, rlimits only). "
           "NOT isolated: " + sb.not_isolated)
    warnings.warn(msg, RuntimeWarning, stacklevel=2)
    log.warning(msg)
    return sb
