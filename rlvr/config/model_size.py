"""A model's parameter count from its configuration alone (no weights loaded, no torch, no network), and the size
class behind the size-based defaults (``rlvr.config.derived``: the ``rlvr.by_size`` resolver).

Where the count comes from, first match wins:

- ``model.name_or_path`` is a local folder with a ``config.json`` (a run's ``final/``, a downloaded model): the
  count from its architecture (``architecture_params``);
- a hub id whose ``config.json`` is already in the local Hugging Face cache: the same;
- ``model.name=tiny`` (no path): ``model.tiny``'s architecture; ``model.name=smollm2-135m``: SmolLM2-135M's;
- a size written in the name (``Qwen2.5-1.5B-Instruct`` -> 1.5e9, ``SmolLM2-135M`` -> 1.35e8);
- else unknown (None): the size-based defaults then treat the model as large, the cheap side.

The architecture count is the usual decoder-only one: embeddings (+ an untied output head), per layer q/k/v/o
projections (grouped-query k/v), a gated (3-matrix) or plain (2-matrix) MLP, norms. Within a few percent of
``sum(p.numel())``: SmolLM2-135M gives 134,515,008 (exact), the tiny model 1.05M.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

# Models at or below this many parameters are "small": they decode thousands of tokens/s on a CPU, so evals
# inside training cost seconds. The tiny model (~1M) is small; SmolLM2-135M and anything pretrained is large.
SMALL_MODEL_PARAMS = 20_000_000

# SmolLM2-135M-Instruct's config.json (the fields the count needs), for model=smollm2-135m before it is cached.
SMOLLM2_135M = {"model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30, "intermediate_size": 1536,
                "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
                "tie_word_embeddings": True}
_PLAIN_MLP = ("gpt2", "gpt_neox", "gptj", "opt", "bloom", "falcon", "phi", "bert", "gpt_bigcode")
_SIZE_IN_NAME = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)([MmBb])(?![a-zA-Z])")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def looks_like_hub_id(name: str) -> bool:
    """'org/name' or 'name' (what the hub accepts), not a path such as './x', '/x', '~/x' or 'runs/a/final'."""
    return bool(_HUB_ID.match(name)) and ".." not in name and not name.endswith((".gguf", ".safetensors"))


def _first(config: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return default


def architecture_params(config: Mapping[str, Any]) -> int | None:
    """Parameters of a decoder-only transformer described by a Hugging Face ``config.json`` dict (None when the
    sizes are missing). Text models only: a multimodal config's ``text_config`` is used when present."""
    config = config.get("text_config") or config
    hidden = _first(config, "hidden_size", "n_embd", "d_model")
    layers = _first(config, "num_hidden_layers", "n_layer", "num_layers")
    vocab = _first(config, "vocab_size")
    if not (hidden and layers and vocab):
        return None
    heads = _first(config, "num_attention_heads", "n_head", default=1)
    kv_heads = _first(config, "num_key_value_heads", "num_kv_heads", default=heads)
    head_dim = _first(config, "head_dim", default=hidden // heads)
    inter = _first(config, "intermediate_size", "n_inner", "ffn_dim", default=4 * hidden)
    mlp_mats = 2 if config.get("model_type") in _PLAIN_MLP else 3
    attn = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    per_layer = attn + mlp_mats * hidden * inter + 2 * hidden
    embed = vocab * hidden * (1 if config.get("tie_word_embeddings", True) else 2)
    return int(embed + layers * per_layer + hidden)


def tiny_params(tiny: Any) -> int:
    """Parameters of ``model=tiny`` from its ``model.tiny`` section (a Qwen2 with tied embeddings)."""
    return architecture_params({
        "model_type": "qwen2", "hidden_size": tiny.hidden_size, "num_hidden_layers": tiny.num_layers,
        "intermediate_size": tiny.intermediate_size, "num_attention_heads": tiny.num_heads,
        "num_key_value_heads": tiny.num_kv_heads, "vocab_size": tiny.vocab_size, "tie_word_embeddings": True})


def _folder_config(path: str) -> dict | None:
    folder = Path(path).expanduser()
    file = folder / "config.json" if folder.is_dir() else None
    if file is None or not file.is_file():
        if folder.exists() or not looks_like_hub_id(path):
            return None
        try:  # a hub id: its config.json only if already cached (never the network)
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(path, "config.json")
        except Exception:  # noqa: BLE001 - no hub library, or a malformed id
            return None
        if not isinstance(cached, str):
            return None
        file = Path(cached)
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        return None


def size_in_name(name: str | None) -> int | None:
    """A parameter count written in a model name: ``...-1.5B-...`` -> 1,500,000,000; None when there is none."""
    if not name:
        return None
    match = _SIZE_IN_NAME.search(str(name).rsplit("/", 1)[-1])
    if match is None:
        return None
    return int(float(match.group(1)) * (1e9 if match.group(2).lower() == "b" else 1e6))


def model_params(model_cfg: Any) -> int | None:
    """Parameter count of the configured model (the ``model`` section), or None when it cannot be told without
    loading it (module docstring)."""
    path = getattr(model_cfg, "name_or_path", None)
    name = getattr(model_cfg, "name", None)
    if path:
        config = _folder_config(str(path))
        if config is not None and (count := architecture_params(config)) is not None:
            return count
        return size_in_name(str(path))
    if name == "tiny":
        return tiny_params(model_cfg.tiny)
    if name == "smollm2-135m":
        return architecture_params(SMOLLM2_135M)
    return size_in_name(name)


def is_small(model_cfg: Any) -> bool:
    """True for a model of at most ``SMALL_MODEL_PARAMS`` parameters; an unknown size counts as large."""
    count = model_params(model_cfg)
    return count is not None and count <= SMALL_MODEL_PARAMS
