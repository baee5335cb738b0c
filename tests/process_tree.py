"""Stopping what a test launched, children included (tests/ is on sys.path through the rootdir conftest).

``torchrun``/``accelerate launch`` start every rank in a session of its own, so ``os.killpg`` on the launcher's
group misses the ranks: they keep training (and writing checkpoints) after the test believes it killed the run.
``kill_tree`` collects the launcher's descendants first, then kills them all.
"""

from __future__ import annotations

import subprocess


def kill_tree(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGKILL ``proc`` and every process below it; returns when all are gone (or ``timeout`` passed)."""
    import psutil

    try:
        root = psutil.Process(proc.pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=timeout)
    proc.wait(timeout=timeout)
