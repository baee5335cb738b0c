"""rlvr.train.sharding and rlvr.train.sharded_checkpoint in one process: the sharding choice, FSDP2 on a one-rank
group (the same code as N ranks, without the peers), the rollout copy's refresh and a DCP round trip into an
unsharded model. The 2-process behaviour is tests/integration/test_grpo_fsdp.py."""

from __future__ import annotations

import copy

import pytest
import torch

from rlvr.train.sharding import resolve_sharding


@pytest.mark.parametrize("requested,world,expected", [("auto", 1, "none"), ("auto", 4, "ddp"), ("ddp", 1, "ddp"),
                                                      ("fsdp", 1, "fsdp"), ("fsdp", 2, "fsdp"), ("none", 1, "none")])
def test_resolve_sharding(requested, world, expected):
    assert resolve_sharding(requested, world) == expected


def test_resolve_sharding_rejects_bad_choices():
    with pytest.raises(ValueError, match="auto, none, ddp, fsdp"):
        resolve_sharding("zero3", 2)
    with pytest.raises(ValueError, match="grpo.sharding=ddp"):
        resolve_sharding("none", 2)


@pytest.fixture
def one_rank_group():
    import torch.distributed as dist

    from rlvr.train.sharding import ensure_process_group

    assert not dist.is_initialized()
    ensure_process_group("cpu")
    yield
    dist.destroy_process_group()


def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


def test_fsdp_on_one_rank_trains_like_the_plain_model_and_refills_the_copy(one_rank_group, tiny_model_dir):
    from rlvr.train.sharding import decoder_layers, is_sharded, refresh_full_copy, shard_model

    plain = tiny(tiny_model_dir)
    sharded = copy.deepcopy(plain)
    rollout_copy = copy.deepcopy(plain).requires_grad_(False)
    layers = decoder_layers(sharded)
    assert len(layers) == plain.config.num_hidden_layers
    shard_model(sharded, "cpu")
    assert is_sharded(sharded) and all(is_sharded(layer) for layer in layers)
    x = torch.randint(0, plain.config.vocab_size, (2, 7))  # [2, 7]
    for model in (plain, sharded):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model(input_ids=x).logits.float().logsumexp(-1).mean().backward()
        opt.step()
    assert refresh_full_copy(sharded, rollout_copy) == len(list(plain.parameters()))
    for (name, a), (_, b) in zip(plain.named_parameters(), rollout_copy.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert any((a - b).abs().max() > 0 for a, b in zip(tiny(tiny_model_dir).parameters(), rollout_copy.parameters()))


def test_refresh_refuses_a_copy_of_another_shape(one_rank_group, tiny_model_dir):
    from rlvr.train.sharding import refresh_full_copy, shard_model

    sharded = shard_model(tiny(tiny_model_dir), "cpu")
    other = tiny(tiny_model_dir)
    other.resize_token_embeddings(other.config.vocab_size + 8)
    with pytest.raises(RuntimeError, match="gathered shape"):
        refresh_full_copy(sharded, other)


def test_sharded_checkpoint_round_trips_into_an_unsharded_process(tmp_path, tiny_model_dir):
    """Save from FSDP (one rank), then load with no process group at all: weights and AdamW state equal."""
    import torch.distributed as dist

    from rlvr.train.checkpoint import TrainerState
    from rlvr.train.sharded_checkpoint import has_sharded_state, load_sharded_state, save_sharded_checkpoint
    from rlvr.train.sharding import ensure_process_group, refresh_full_copy, shard_model

    ensure_process_group("cpu")
    try:
        sharded = shard_model(tiny(tiny_model_dir), "cpu")
        policy = tiny(tiny_model_dir).requires_grad_(False)
        opt = torch.optim.AdamW(sharded.parameters(), lr=1e-2)
        x = torch.randint(0, policy.config.vocab_size, (2, 5))  # [2, 5]
        sharded(input_ids=x).logits.float().logsumexp(-1).mean().backward()
        opt.step()
        refresh_full_copy(sharded, policy)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        from transformers import AutoTokenizer

        folder = save_sharded_checkpoint(tmp_path, TrainerState(3, 12), sharded, policy,
                                         AutoTokenizer.from_pretrained(tiny_model_dir), opt, sched, main=True)
        exp_avg = [opt.state[p]["exp_avg"].full_tensor() for p in sharded.parameters()]
    finally:
        dist.destroy_process_group()
    assert folder.name == "step_3" and has_sharded_state(folder) and not folder.with_name("step_3.tmp").exists()

    plain = tiny(tiny_model_dir)
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=1e-2)
    load_sharded_state(folder, plain, plain_opt)
    for (name, a), (_, b) in zip(plain.named_parameters(), policy.named_parameters()):
        assert torch.equal(a, b), name
    for p, expected in zip(plain.parameters(), exp_avg):
        assert torch.equal(plain_opt.state[p]["exp_avg"], expected)
