"""Code-execution isolation for model-written programs (imported as ``rlvr.sandboxes``).

    with open_sandbox() as sb:                      # auto: strongest backend that works on this host
        r = sb.run("print(input())", stdin="hi\\n")  # ExecutionResult(status="ok", stdout="hi\\n", ...)
        rs = sb.run_many([Job(p) for p in programs])  # parallel across slots, input order
        print(sb.guarantees)                          # what is isolated here, and what is not

Backends (strongest first): ``forkserver`` (root: warm interpreters in Linux namespaces, per-slot uids),
``bwrap`` (bubblewrap, any user with user namespaces), ``subprocess`` (rlimits only — not isolation).
"""

from rlvr.sandboxes.base import STATUSES, ExecutionResult, Job, Sandbox
from rlvr.sandboxes.config import SandboxConfig
from rlvr.sandboxes.probe import open_sandbox, probe

__all__ = ["ExecutionResult", "Job", "Sandbox", "SandboxConfig", "STATUSES", "open_sandbox", "probe"]
