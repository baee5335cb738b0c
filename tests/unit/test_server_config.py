"""``rollout=server`` without a server: config composition and validation, checksum comparison, launch plumbing
(command line, environment, CPU shares), which transports exist. Fast; no vLLM needed."""

from __future__ import annotations

import pytest
import torch


def _cfg(*overrides):
    from rlvr.config.loading import compose_config

    return compose_config("grpo", ["rollout=server", *overrides])


def _problems(*overrides):
    from rlvr.train.grpo_validation import validate

    return {p.key: str(p) for p in validate(_cfg(*overrides))}


def test_rollout_server_composes_with_defaults():
    cfg = _cfg("server.urls=[http://127.0.0.1:8000]")
    assert cfg.rollout == "server"
    assert list(cfg.server.urls) == ["http://127.0.0.1:8000"] and cfg.server.sync == "disk"
    assert cfg.server.num_servers == 1 and cfg.server.startup_timeout_s > 0
    assert _problems("server.urls=[http://127.0.0.1:8000]") == {}


def test_bad_server_values_are_reported_together():
    problems = _problems("server.urls=[localhost:8000]", "server.num_servers=0", "server.startup_timeout_s=0",
                         "server.sync=carrier-pigeon", "server.max_model_len=8")
    assert "is not a server address" in problems["server.urls"]
    assert "must be >= 1" in problems["server.num_servers"]
    assert "must be > 0" in problems["server.startup_timeout_s"]
    assert "unknown transport" in problems["server.sync"]
    assert "no room for a prompt" in problems["server.max_model_len"]


def test_transports_gloo_is_built_and_nccl_is_refused_with_the_alternatives(tmp_path):
    from rlvr.rollout.gloo_sync import GlooSync
    from rlvr.rollout.sync_transport import build_sync
    from rlvr.rollout.weight_sync import DiskSync

    assert "server.sync" not in _problems("server.urls=[http://127.0.0.1:8000]", "server.sync=gloo")
    nccl = _problems("server.urls=[http://127.0.0.1:8000]", "server.sync=nccl")["server.sync"]
    assert "GPU" in nccl and "server.sync=gloo" in nccl
    assert isinstance(build_sync("disk", sync_dir=tmp_path), DiskSync)
    gloo = build_sync("gloo", sync_dir=tmp_path, host="127.0.0.1", timeout_s=5)
    assert isinstance(gloo, GlooSync) and gloo.host == "127.0.0.1" and gloo.version == 0
    with pytest.raises(ValueError, match="use one of disk, gloo"):
        build_sync("nccl", sync_dir=tmp_path)


def test_server_is_a_grpo_engine_only():
    from rlvr.config import GRPO_ROLLOUT_ENGINES, ROLLOUT_ENGINES
    from rlvr.rollout.engines import build_engine
    from rlvr.train.grpo_validation import choose_engine

    assert "server" in GRPO_ROLLOUT_ENGINES and "server" not in ROLLOUT_ENGINES  # distill samples in-process
    assert choose_engine("server") == ("server", "asked for")
    with pytest.raises(ValueError, match="needs the server.. options"):
        build_engine("server", None, None, seed=0, think_open="<think>", think_close="</think>", batch_size=1)


def test_checksum_compare_accepts_equal_and_names_what_differs():
    from rlvr.rollout.weight_sync import WeightSyncError, checksums, compare, encode_checksum

    named = [("a", torch.randn(4, 3)), ("b", torch.randn(5))]
    expected = checksums(named)
    report = {"version": 3, "checksums": {k: encode_checksum(v) for k, v in expected.items()}, "missing": []}
    compare(expected, report, version=3, where="the server at X")
    shuffled = {"a": encode_checksum(checksums([("a", named[0][1].flip(0))])["a"]), "b": report["checksums"]["b"]}
    compare(expected, {**report, "checksums": shuffled}, version=3, where="X")  # reduction order: within tolerance
    bad = {"a": encode_checksum(checksums([("a", named[0][1] + 1e-4)])["a"]), "b": report["checksums"]["b"]}
    cases = {
        "other values than the trainer's: a": {**report, "checksums": bad},
        "reports version 2": {**report, "version": 2},
        "did nothing": {**report, "checksums": {}},
        "1 tensors were not loaded": {**report, "checksums": {"a": report["checksums"]["a"]}},
        "received no value": {**report, "missing": ["model.norm.weight"]},
    }
    for message, broken in cases.items():
        with pytest.raises(WeightSyncError, match=message):
            compare(expected, broken, version=3, where="the server at X")


def test_checksum_encoding_is_exact_and_nan_safe():
    from rlvr.rollout.weight_sync import decode_checksum, encode_checksum, tensor_checksum

    c = tensor_checksum(torch.tensor([0.1, 0.2, float("nan")]))
    back = decode_checksum(encode_checksum(c))
    assert back[2] == 3 and all(x != x for x in back[:2])  # NaN survives (JSON itself cannot carry it)
    c = tensor_checksum(torch.tensor([0.1, 0.2, 0.3], dtype=torch.bfloat16))
    assert decode_checksum(encode_checksum(c)) == c


def test_launch_command_and_environment(monkeypatch):
    from rlvr.rollout.server import EXTENSION, LOOPBACK, cpu_shares, server_command, server_env

    cmd = server_command("/m", 1234, dtype="float32", seed=5, max_model_len=256, load_format="dummy",
                         extra_args=["--max-num-seqs", "8"])
    flags = dict(zip(cmd, cmd[1:]))
    assert flags["--host"] == LOOPBACK == "127.0.0.1" and flags["--port"] == "1234"
    assert flags["--worker-extension-cls"] == EXTENSION and flags["--logprobs-mode"] == "processed_logprobs"
    assert flags["--max-model-len"] == "256" and cmd[-2:] == ["--max-num-seqs", "8"]
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    env = server_env("0,1", None)
    assert env["VLLM_SERVER_DEV_MODE"] == "1" and env["VLLM_CPU_OMP_THREADS_BIND"] == "0,1"
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in env
    shares = cpu_shares(2)
    cpus = [c for share in shares for c in share.split(",")]
    assert len(shares) == 2 and len(cpus) == len(set(cpus))  # disjoint shares (or all CPUs for 1 core)


def test_requests_to_nothing_name_the_server(tmp_path):
    from rlvr.rollout.server import Server, ServerError, free_port, request

    server = Server(url=f"http://127.0.0.1:{free_port()}", log=tmp_path / "s.log")
    with pytest.raises(ServerError, match=rf"{server.url} \(log: .*s\.log\)"):
        request(server, "GET", "/v1/models", timeout=2)


def test_disk_sync_close_removes_only_its_versions(tmp_path):
    from rlvr.rollout.weight_sync import DiskSync

    model = torch.nn.Linear(3, 2)
    sync = DiskSync(tmp_path / "w")
    folder, expected = sync.write(model, 1)
    assert (folder / "model.safetensors").exists() and set(expected) == {"weight", "bias"}
    (tmp_path / "w" / "keep.txt").write_text("the user's")
    sync.close()
    assert not folder.exists() and (tmp_path / "w" / "keep.txt").exists()
    sync2 = DiskSync(tmp_path / "w2")
    sync2.write(model, 1)
    sync2.close()
    assert not (tmp_path / "w2").exists()


def test_several_trainer_processes_need_listed_servers_one_per_rank_and_k_zero(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    launched = _problems()
    assert "own node's loopback" in launched["server.urls"] and "urls[r::WORLD_SIZE]" in launched["server.urls"]
    too_few = _problems("server.urls=[http://127.0.0.1:8000]")
    assert "1 servers for 2 trainer processes" in too_few["server.urls"]
    async_ranks = _problems("server.urls=[http://127.0.0.1:8000,http://127.0.0.1:8001]", "server.max_staleness=1",
                            "algo.tis=true")
    assert set(async_ranks) == {"server.max_staleness"} and "race" in async_ranks["server.max_staleness"]
    assert _problems("server.urls=[http://127.0.0.1:8000,http://127.0.0.1:8001]") == {}
