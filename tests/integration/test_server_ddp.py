"""``rollout=server`` with 2 trainer processes (``accelerate launch``, DDP over gloo on CPU) and 2 attached vLLM
servers, all on 127.0.0.1: the multi-node shape on one machine (trainer ranks from a launcher, servers anywhere
reachable by URL; docs/servers.md "Several trainer processes").

Checked: rank r samples from ``server.urls[r::2]`` only (each server's access log has the requests of exactly
one rank's groups, both servers are used), the ranks train on distinct prompts and end with equal weights, and
after the run *each* server serves the final model: its greedy output equals the trainer's ``final/`` under HF,
token for token (rank 1 synced its own server over gloo, rank 0 its own; a rank that skipped its sync would leave
its server a step behind).

The fixture launches both servers (a core each; 30-60 s) and stops them, and everything below them, even when a
test fails; the trainer launch is killed with its ranks on a timeout.
Run with ``python -m pytest -q -m vllm tests/integration/test_server_ddp.py``.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from server_fixtures import launched_servers

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                       reason="vllm is not installed (extra 'cpu' or 'vllm')"),
]

B, G, MAX_NEW = 2, 4, 16


@pytest.fixture(scope="module")
def two_servers(tiny_model_dir, tmp_path_factory):
    from rlvr.config import ModelConfig
    from rlvr.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)))
    with launched_servers(model.float().eval(), tok, tmp_path_factory.mktemp("servers"), num_servers=2) as eng:
        yield eng.servers


def _completion_requests(server) -> int:
    return server.log.read_text(errors="replace").count("POST /v1/completions")


def _server_greedy(server, policy, tok, samples, scratch):
    """Greedy completions from ``server`` as it is now (attached, no sync: ``sync_now=False``)."""
    from rlvr.rollout.base import SamplingParams
    from rlvr.rollout.server import attach_servers
    from rlvr.rollout.server_engine import ServerEngine
    from rlvr.rollout.weight_sync import DiskSync

    engine = ServerEngine(policy, tok, attach_servers([server.url], timeout_s=60), DiskSync(scratch), sync_now=False)
    try:
        out = engine.generate(samples, n=1, params=SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW))
        return [r.completion_ids for r in out]
    finally:
        engine.close()  # attached: the server keeps running


def test_two_trainer_ranks_each_sync_their_own_server(two_servers, tmp_path):
    from omegaconf import OmegaConf
    from test_grpo_ddp import launch

    from rlvr.config import ModelConfig, TaskConfig
    from rlvr.models import load_model_and_tokenizer
    from rlvr.rollout.hf import HFEngine
    from rlvr.rollout.base import SamplingParams
    from rlvr.runs.tracking import read_metrics
    from rlvr.tasks import build_task

    urls = ",".join(s.url for s in two_servers)
    before = [_completion_requests(s) for s in two_servers]
    run = tmp_path / "run"
    # test_grpo_ddp's run (DAPO + dynamic sampling, rank 1's completions all score 0, so both ranks sample every
    # round) with its rollouts from the servers, synced over gloo
    launch(run, "rollout=server", f"server.urls=[{urls}]", "server.sync=gloo", "grpo.max_steps=2",
           "grpo.save_every=0", "grpo.eval_every=0", "grpo.budget_eval_every=0", "grpo.train_budget.mode=none",
           f"grpo.max_new_tokens={MAX_NEW}")
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "reward/mean" in r]
    assert [r["step"] for r in rows] == [1, 2] and all(r["grad_norm"] > 0 for r in rows)

    # rank r's groups went to its own server, a request per group: B per round, on each server
    used = [_completion_requests(s) - b for s, b in zip(two_servers, before)]
    rounds = sum(r["batch/rounds"] for r in rows)
    assert used == [rounds * B, rounds * B], (used, rounds)
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    by_rank = {k: {s["prompt"] for s in samples if s["rank"] == k} for k in (0, 1)}
    assert by_rank[0] and by_rank[1] and not by_rank[0] & by_rank[1], "the ranks shared prompts"
    done = json.loads((run / "final" / "rlvr_grpo_done.json").read_text())
    assert done["processes"] == 2 and done["weights/fingerprint_per_rank"][0] == done["weights/fingerprint_per_rank"][1]

    final, tok = load_model_and_tokenizer(ModelConfig(name_or_path=str(run / "final")))
    final = final.float().eval()
    task = build_task(OmegaConf.structured(TaskConfig))
    probe = task.samples("test_ops1", limit=2) + task.samples("test_ops3", limit=1)
    want = [r.completion_ids for r in HFEngine(final, tok).generate(
        probe, n=1, params=SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW))]
    for i, server in enumerate(two_servers):
        got = _server_greedy(server, final, tok, probe, tmp_path / f"scratch{i}")
        assert got == want, f"server {i} ({server.url}) does not serve the final weights"
