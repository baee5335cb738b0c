"""LoRA on the tiny model (``rlvr.model_lora``): what trains, exact reference passes, merged weights, saving.

    python -m pytest -q tests/unit/test_lora.py

Every test wraps a fresh copy of the tiny model (peft injects its layers into the model it is given). One
optimizer step with a large LR makes the adapters' B matrices nonzero, so "merged equals LoRA" is not 0 == 0.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from rlvr.config.sections import LoraConfig
from rlvr import model_lora as L

IDS = torch.tensor([[1, 5, 9, 20, 33, 7, 101, 2]])


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def base(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids).logits


def one_step(model, lr=5e-2):
    """One AdamW step on a LM loss: every adapter tensor moves (B leaves zero)."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    model(input_ids=IDS, labels=IDS).loss.backward()
    opt.step()
    opt.zero_grad()
    model.eval()


@pytest.fixture
def trained(base):
    """(LoRA model after one step, logits of the base before wrapping)."""
    before = logits(base)
    model = L.apply_lora(base, LoraConfig(r=8), say=lambda _: None)
    one_step(model)
    return model, before


def test_import_is_cheap():
    code = "import sys, rlvr.model_lora; print(sorted(m for m in ('torch', 'peft') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_only_adapters_train_and_the_count_matches_the_shapes(base):
    cfg = base.config
    h, i, r = cfg.hidden_size, cfg.intermediate_size, 8
    kv = cfg.num_key_value_heads * (h // cfg.num_attention_heads)
    # r x (in + out) per linear layer: q, o (h->h), k, v (h->kv), gate, up (h->i), down (i->h); lm_head excluded
    per_layer = r * ((h + h) * 2 + (h + kv) * 2 + (h + i) * 3)
    expected = per_layer * cfg.num_hidden_layers
    assert expected == 90_112  # the tiny model's 4 x 128 shapes, by hand
    total_before = sum(p.numel() for p in base.parameters())
    lines = []
    model = L.apply_lora(base, LoraConfig(r=8, alpha=16), say=lines.append)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert L.trainable_parameter_count(model) == (expected, total_before + expected)
    assert L.is_lora(model) and len(L.lora_layers(model)) == 7 * cfg.num_hidden_layers
    assert lines == [f"LoRA r=8 alpha=16 on 28 modules: trainable 90,112 of {total_before + expected:,} parameters "
                     f"({100 * expected / (total_before + expected):.2f}%)"]
    assert not any("lm_head" in n for n in L.lora_layers(model))


def test_r0_returns_the_model_itself(base):
    assert L.apply_lora(base, LoraConfig(r=0)) is base
    assert not L.is_lora(base)
    assert L.generation_model(base) is base
    n = sum(p.numel() for p in base.parameters())
    assert L.trainable_parameter_count(base) == (n, n)


@pytest.mark.parametrize("kwargs, words", [
    ({"r": -1}, ["model.lora.r", "must be >= 0", "Fix"]),
    ({"alpha": 0}, ["model.lora.alpha", "alpha / r", "Fix"]),
    ({"dropout": 1.0}, ["model.lora.dropout", "[0, 1)", "Fix"]),
    ({"target_modules": []}, ["target_modules", "wrap nothing"]),
    ({"target_modules": ["all-linear", "q_proj"]}, ["cannot be combined"]),
    ({"target_modules": ["q_proj", "qproj"]}, ["['qproj'] match no module", "Fix", "'q_proj'", "'down_proj'"]),
    ({"target_modules": ["lm_head"]}, ["ties together", "Fix"]),
    ({"target_modules": ["embed_tokens"]}, ["ties together"]),
    ({"target_modules": ["norm"]}, ["peft refused", "Fix", "'q_proj'"]),
])
def test_bad_settings_raise_saying_what_why_and_the_fix(base, kwargs, words):
    with pytest.raises(ValueError) as err:
        L.apply_lora(base, LoraConfig(**({"r": 8} | kwargs)))
    for w in words:
        assert w in str(err.value), (w, str(err.value))
    assert not L.is_lora(base) and not any("lora_" in n for n, _ in base.named_parameters())


def test_lora_problems_are_config_problems():
    assert L.lora_problems(LoraConfig()) == []  # r=0: nothing to check
    keys = [p.key for p in L.lora_problems(LoraConfig(r=-2, alpha=-1, dropout=-0.1))]
    assert keys == ["model.lora.r", "model.lora.alpha", "model.lora.dropout"]


def test_adapters_disabled_is_the_base_model_exactly(trained, base):
    model, before = trained
    assert not torch.allclose(logits(model), before, atol=1e-3)  # the step changed the LoRA model
    with L.adapters_disabled(model):
        assert torch.equal(logits(model), before)
    assert not torch.allclose(logits(model), before, atol=1e-3)  # adapters back on afterwards


def test_adapters_disabled_refuses_a_plain_model(base):
    with pytest.raises(TypeError, match="needs a LoRA model"):
        with L.adapters_disabled(base):
            pass


def test_generation_model_keeps_the_adapters_active(trained):
    model, _ = trained
    plain = L.generation_model(model)
    assert type(plain).__name__ == "Qwen2ForCausalLM"
    assert torch.equal(logits(plain), logits(model))


def test_merged_weights_equal_the_lora_model_under_the_base_names(trained, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model, _ = trained
    lora_logits = logits(model)
    adapters = {n: p.detach().clone() for n, p in model.named_parameters()}
    base_keys = list(AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict())
    merged = L.merged_state_dict(model)
    assert list(merged) == base_keys
    assert all(torch.is_grad_enabled() for _ in L.iter_merged_weights(model))  # no no_grad leaking out of it
    copy = L.merged_copy(model)
    assert type(copy).__name__ == "Qwen2ForCausalLM" and not L.is_lora(copy)
    assert not any("lora_" in n for n in copy.state_dict())
    assert (logits(copy) - lora_logits).abs().max() < 1e-5
    assert all(torch.equal(copy.state_dict()[k], v) for k, v in merged.items())  # one merge, two routes
    # The trained model is untouched: same tensors, same outputs.
    assert all(torch.equal(p, adapters[n]) for n, p in model.named_parameters())
    assert torch.equal(logits(model), lora_logits)


def test_save_final_merged_loads_as_a_plain_model_and_generates_the_same(trained, tokenizer, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, _ = trained
    final = tmp_path / "final"
    marker = L.save_final(model, tokenizer, final, merge=True)
    assert marker["merged"] and (final / "adapter" / "adapter_config.json").exists()
    assert (final / "adapter" / "adapter_model.safetensors").exists()
    config = (final / "config.json").read_text()
    assert "peft" not in config and "lora" not in config.lower()
    plain = AutoModelForCausalLM.from_pretrained(final).eval()
    prompt = IDS[:, :4]
    kw = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    with torch.no_grad():
        ours = L.generation_model(model).generate(prompt, **kw)
        theirs = plain.generate(prompt, **kw)
    assert ours.tolist() == theirs.tolist()
    assert (logits(plain) - logits(model)).abs().max() < 1e-5
    base = AutoModelForCausalLM.from_pretrained(marker["base_model"]).eval()
    reloaded = PeftModel.from_pretrained(base, final / "adapter")
    assert torch.equal(logits(reloaded), logits(model))
    assert json.loads((final / "rlvr_lora.json").read_text())["r"] == 8


def test_save_final_without_merge_holds_the_adapter_and_says_how_to_load_it(trained, tokenizer, tmp_path):
    model, _ = trained
    final = tmp_path / "final"
    L.save_final(model, tokenizer, final, merge=True)
    L.save_final(model, tokenizer, final, merge=False)  # an older merged model must not linger
    assert not (final / "config.json").exists() and not list(final.glob("model*.safetensors"))
    assert "PeftModel.from_pretrained" in (final / "README.md").read_text()
    loaded, tok = L.load_lora_final(final)
    assert torch.equal(logits(loaded), logits(model)) and len(tok) == len(tokenizer)


def test_load_adapter_weights_round_trips_exactly(trained, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    model, _ = trained
    model.save_pretrained(tmp_path / "ckpt")
    fresh = L.apply_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=8), say=lambda _: None)
    held = {n: p for n, p in fresh.named_parameters()}
    L.load_adapter_weights(fresh, tmp_path / "ckpt")
    for name, p in model.named_parameters():
        assert torch.equal(dict(fresh.named_parameters())[name], p), name
        assert dict(fresh.named_parameters())[name] is held[name]  # in place: an optimizer keeps its tensors
    other = L.apply_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=4), say=lambda _: None)
    with pytest.raises(RuntimeError, match="does not fit|does not match"):
        L.load_adapter_weights(other, tmp_path / "ckpt")
    with pytest.raises(FileNotFoundError, match="no peft adapter"):
        L.load_adapter_weights(other, tmp_path)


def test_start_up_check_saves_reads_back_and_cleans_up(trained, tokenizer, tmp_path):
    model, _ = trained
    line = L.check_lora_savable(model, tokenizer, tmp_path)
    assert "read back exactly" in line and "51 merged tensors under the base model's names" in line
    assert list(tmp_path.iterdir()) == []


def test_added_thinking_tokens_train_their_rows_and_survive_merge_and_reload(base, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr.model_convert import add_think_tokens

    source = tokenizer
    tok = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    added = add_think_tokens(base, tok, ("<reason>", "</reason>"))  # the tiny vocabulary lacks these
    ids = L.new_token_ids(tok, source)
    assert len(added.added) == 2 and ids == [len(source), len(source) + 1]
    emb_before = base.get_input_embeddings().weight.detach().clone()
    lines = []
    model = L.apply_lora(base, LoraConfig(r=8), say=lines.append, train_token_ids=ids)
    assert "trainable_token_indices on embed_tokens, the tied output head follows" in lines[0]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("trainable_tokens_delta" in n for n in trainable)
    assert all("lora_" in n or "trainable_tokens_delta" in n for n in trainable)
    assert L.trainable_parameter_count(model)[0] == 90_112 + 2 * base.config.hidden_size
    head = L.generation_model(model).get_output_embeddings()
    assert head.bias is None  # TRL's fused LM head reads lm_head.weight and lm_head.bias
    new = torch.tensor([[ids[0], 5, ids[1], 9, ids[0]]])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    model(input_ids=new, labels=new).loss.backward()
    opt.step()
    merged = L.merged_state_dict(model)
    emb = merged["model.embed_tokens.weight"]
    assert not torch.equal(emb[ids], emb_before[ids])  # the new rows learned
    assert torch.equal(emb[: len(source)], emb_before[: len(source)])  # the others are frozen
    assert torch.equal(merged["lm_head.weight"], emb)  # still tied
    assert torch.equal(head.weight, emb)  # what TRL multiplies by: the trained rows included
    model.eval()
    L.save_final(model, tok, tmp_path / "merged", merge=True)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    assert plain.get_input_embeddings().weight.shape[0] == len(tok)
    assert (logits(plain, new) - logits(model, new)).abs().max() < 1e-5
    L.save_final(model, tok, tmp_path / "adapter_only", merge=False)
    loaded, _ = L.load_lora_final(tmp_path / "adapter_only")  # base resized to the trained vocabulary first
    assert torch.equal(logits(loaded, new), logits(model, new))
    assert "read back exactly" in L.check_lora_savable(model, tok, tmp_path / "check")
