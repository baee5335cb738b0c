"""LoRA with peft: only low-rank adapters train, the base stays frozen and doubles as the KL reference.

What and why. ``model.lora.r > 0`` wraps the loaded model with peft's LoRA (``W x + (alpha / r) B A x`` on every
targeted linear layer, B = 0 at the start so the wrapped model starts equal to the base). Gradients and AdamW
state exist for the adapters only (~1-2% of SmolLM2's parameters at r=8 on all linear layers), and GRPO's
reference log-probs come from the same weights with the adapters switched off, so no second model is held.
Thinking tags added as new tokens (``model.add_think_tokens``) get their embedding rows trained too (peft's
``trainable_token_indices``: only those rows, with a tied output head following them), or the model could not
learn to emit them. Everything else the stages need (saving, resuming, merged weights for a rollout engine) is
here, so the loops stay plain. docs/lora.md has the user's view and measured figures.

API (``model`` is the unwrapped model: a ``peft.PeftModel`` after :func:`apply_lora`; DDP/accelerate wrappers
must be unwrapped by the caller first):

- :func:`lora_problems` (config check before any model loads), :func:`new_token_ids` (rows that must train);
- :func:`wrap_for_training` (apply + start-up check, the stages' one call), :func:`apply_lora` -> the PeftModel
  (or the model unchanged at r=0), :func:`is_lora`, :func:`lora_layers`,
  :func:`trainable_parameter_count`, :func:`check_lora_savable` (the start-up save check for the adapter);
- :func:`adapters_disabled` (a context manager: the base model's forward, for GRPO's reference log-probs;
  raises for a model without adapters, where the caller must keep its own reference);
- :func:`generation_model` -> the module to call ``generate()`` on (HF engine, held-out eval);
- :func:`iter_merged_weights` / :func:`merged_state_dict` -> base + adapters under the base model's parameter
  names, one layer merged at a time, the trained model untouched (a rollout engine's weight sync; vLLM's own LoRA
  path is not used); :func:`merged_copy` -> a plain transformers model;
- :func:`save_final` (``final/adapter/`` + optionally the merged model in ``final/``), :func:`save_adapter`,
  :func:`load_adapter_weights` (resume: exact), :func:`load_lora_final` (an adapter-only ``final/`` as a model).

How GRPO uses it (the lead's wiring; names as above)::

    source = load_tokenizer(cfg.model) if cfg.model.add_think_tokens else None   # rlvr.models
    model = wrap_for_training(model, tokenizer, cfg.model.lora, output_dir, say, source_tokenizer=source)
    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], ...)
    logp = token_logprobs(model(...))                       # policy: adapters on
    with torch.no_grad(), adapters_disabled(model):
        ref_logp = token_logprobs(model(...))               # reference: the frozen base, same tensors
    engine.load_weights(iter_merged_weights(model))         # vLLM sync: plain names, merged values
    HFEngine(generation_model(model), ...)                  # HF engine: adapters active
    save_adapter(model, ckpt)  /  load_adapter_weights(model, ckpt)    # checkpoints hold the adapter only
    save_final(model, tokenizer, final_dir, merge=cfg.model.lora.merge_final)

Sharded (FSDP) parameters must be gathered before :func:`iter_merged_weights` / :func:`save_final`: they read
whole tensors. Run the tests: ``python -m pytest -q tests/unit/test_lora.py`` (fast) and
``python -m pytest -q -m slow tests/integration/test_sft_lora.py`` (``rlvr sft`` with LoRA, resume, SmolLM2).
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

ADAPTER_DIR = "adapter"  # final/adapter/: adapter_config.json + adapter_model.safetensors
MARKER = "rlvr_lora.json"  # final/rlvr_lora.json: how final/ was made and how to load it
ALL_LINEAR = "all-linear"
# Parameter-name fragments that exist only inside peft's wrappers; a merged name holding one is a bug.
PEFT_NAME_PARTS = ("lora_", "base_layer", "base_model.model", "modules_to_save", "original_module", "token_adapter",
                   "trainable_tokens")


# ------------------------------------------------------------------------------------------ config checks
def lora_problems(lora_cfg: Any, key: str = "model.lora") -> list:
    """Every problem with a ``LoraConfig`` as ``rlvr.config`` Problems (what, why, fix); empty when fine or r=0.

    Checked before any model loads (the stages' ``validate``); :func:`apply_lora` checks again and raises."""
    from rlvr.config.compose import Problem

    r = lora_cfg.r
    if r == 0:
        return []
    problems = []
    if r < 0:
        problems.append(Problem(f"{key}.r", f"must be >= 0, got {r}", "0 turns LoRA off; 8-64 is the usual range"))
    if lora_cfg.alpha <= 0:
        problems.append(Problem(f"{key}.alpha", f"must be > 0, got {lora_cfg.alpha} (the update is scaled by "
                                "alpha / r)", "e.g. alpha = 2 x r (16 for r=8)"))
    if not 0 <= lora_cfg.dropout < 1:
        problems.append(Problem(f"{key}.dropout", f"must be in [0, 1), got {lora_cfg.dropout}",
                                "0 (deterministic log-probs for RL) or e.g. 0.05 for SFT"))
    targets = list(lora_cfg.target_modules)
    if not targets:
        problems.append(Problem(f"{key}.target_modules", "is empty: the adapters would wrap nothing",
                                f"['{ALL_LINEAR}'] or module names such as ['q_proj', 'v_proj']"))
    elif ALL_LINEAR in targets and len(targets) > 1:
        problems.append(Problem(f"{key}.target_modules", f"{targets}: '{ALL_LINEAR}' already covers every linear "
                                "layer but the output head and cannot be combined with names",
                                f"either ['{ALL_LINEAR}'] or an explicit list of names"))
    return problems


def new_token_ids(tokenizer: Any, source_tokenizer: Any) -> list[int]:
    """Ids the loaded ``tokenizer`` has beyond the one shipped with the model (``source_tokenizer``): tokens added
    at load time (``model.add_think_tokens``), whose embedding rows start untrained. Pass them to :func:`apply_lora`
    as ``train_token_ids``. Added tokens get the next free ids, so this is ``range(len(source), len(tokenizer))``
    (also right where the embedding was padded and not resized: those padding rows were never trained either)."""
    return list(range(len(source_tokenizer), len(tokenizer)))


# ------------------------------------------------------------------------------------------ wrapping
def _tied(model: Any) -> bool:
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    return out is not None and inp is not None and out.weight is inp.weight


def _module_names(model: Any) -> tuple[str | None, str | None]:
    """(input embedding, output head) module names, e.g. ('model.embed_tokens', 'lm_head')."""
    by_id = {id(m): n for n, m in model.named_modules()}
    out = model.get_output_embeddings()
    return by_id.get(id(model.get_input_embeddings())), by_id.get(id(out)) if out is not None else None


def _leaf_names(model: Any) -> list[str]:
    """Up to 12 distinct short names of the layers LoRA can wrap (for error messages): ['down_proj', ...]."""
    import torch

    layers = (torch.nn.Linear, torch.nn.Embedding)
    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, layers)})[:12]


def _check_targets(model: Any, targets: list[str]) -> None:
    """Each name must match a module (peft matches ``name`` or a ``.name`` suffix); with tied embeddings neither
    the embedding nor the head may carry LoRA (the merged model would untie them and reload wrong)."""
    if targets == [ALL_LINEAR]:
        return
    names = [n for n, _ in model.named_modules() if n]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise ValueError(f"model.lora.target_modules: {missing} match no module of this "
                         f"{type(model).__name__}, so no adapter would wrap them. Fix: use '{ALL_LINEAR}' or names "
                         f"that exist, e.g. {_leaf_names(model)}")
    emb, head = _module_names(model)
    tied_hits = [t for t in targets for full in (emb, head) if full and (full == t or full.endswith("." + t))]
    if tied_hits and _tied(model):
        raise ValueError(f"model.lora.target_modules: {sorted(set(tied_hits))} is the embedding / output head, which "
                         "this model ties together: LoRA on one would untie them and the merged model would reload "
                         f"differently. Fix: target the linear layers only (e.g. '{ALL_LINEAR}'); new tokens' rows "
                         "train through model.add_think_tokens")


def _token_targets(model: Any, ids: Sequence[int]) -> dict[str, list[int]] | None:
    """peft ``trainable_token_indices`` for rows that must train: the input embedding, plus an untied head (a tied
    head follows the embedding inside peft)."""
    if not ids:
        return None
    emb, head = _module_names(model)
    if getattr(model.get_output_embeddings(), "bias", None) is not None:  # peft's trainable tokens drop it
        raise ValueError("the output head has a bias, which peft's trainable tokens (the rows of added thinking "
                         "tags) would drop. Fix: model.add_think_tokens=false (the tags stay text)")
    targets = {emb.rsplit(".", 1)[-1]: sorted(ids)}
    if head and not _tied(model):
        targets[head.rsplit(".", 1)[-1]] = sorted(ids)
    return targets


def apply_lora(model: Any, lora_cfg: Any, say: Callable[[str], Any] = print, *,
               train_token_ids: Sequence[int] = ()) -> Any:
    """``model`` wrapped with LoRA adapters (a ``peft.PeftModelForCausalLM``), or ``model`` itself when r == 0.

    ``lora_cfg``: r, alpha, dropout, target_modules (``rlvr.config.sections.LoraConfig``). 'all-linear' is peft's:
    every linear layer but the output head. ``train_token_ids`` (:func:`new_token_ids`): embedding rows that train
    as well (peft ``trainable_token_indices``, only those rows; a tied head follows). Everything else is frozen.
    Raises ValueError (what, why, fix) for a bad config or target names that match nothing. ``say`` gets one line:
    'LoRA r=8 alpha=16 on N modules: trainable T of P parameters (x.xx%)'.
    """
    if lora_cfg.r == 0:
        return model
    problems = lora_problems(lora_cfg)
    if problems:
        raise ValueError("LoRA settings cannot work:\n" + "\n".join(f"  - {p}" for p in problems))
    targets = list(lora_cfg.target_modules)
    _check_targets(model, targets)
    from peft import LoraConfig, TaskType, get_peft_model

    tokens = _token_targets(model, train_token_ids)
    base_keys = list(model.state_dict())  # names only (no copies): what merged weights must be named
    tied = _tied(model)  # asked before wrapping: peft replaces the embedding module
    config = LoraConfig(r=int(lora_cfg.r), lora_alpha=lora_cfg.alpha, lora_dropout=float(lora_cfg.dropout),
                        target_modules=ALL_LINEAR if targets == [ALL_LINEAR] else targets, bias="none",
                        task_type=TaskType.CAUSAL_LM, trainable_token_indices=tokens)
    try:
        wrapped = get_peft_model(model, config)
    except ValueError as exc:  # e.g. a name that matches a norm or a whole block: not a layer LoRA can wrap
        raise ValueError(f"model.lora.target_modules={targets}: peft refused them ({exc}). Fix: name linear layers, "
                         f"e.g. {_leaf_names(model)}, or use '{ALL_LINEAR}'") from exc
    wrapped.rlvr_base_keys = base_keys  # read by check_lora_savable
    _expose_head_bias(wrapped)
    trainable, total = trainable_parameter_count(wrapped)
    line = (f"LoRA r={lora_cfg.r} alpha={lora_cfg.alpha} on {len(lora_layers(wrapped))} modules: trainable "
            f"{trainable:,} of {total:,} parameters ({100 * trainable / total:.2f}%)")
    if tokens:
        line += (f"; the embedding rows of the {len(train_token_ids)} added token(s) {sorted(train_token_ids)} train "
                 f"too (peft trainable_token_indices on {', '.join(tokens)}"
                 + (", the tied output head follows)" if tied else ")"))
    say(line)
    return wrapped


def wrap_for_training(model: Any, tokenizer: Any, lora_cfg: Any, output_dir: str | Path,
                      say: Callable[[str], Any] = print, *, source_tokenizer: Any = None) -> Any:
    """What a training stage does after ``rlvr.models.load_for_training``: :func:`apply_lora` (rows of the tokens
    ``tokenizer`` has beyond ``source_tokenizer`` train too; pass the shipped tokenizer when
    ``model.add_think_tokens`` may have added some), then :func:`check_lora_savable` into ``output_dir``.
    r == 0: ``model`` unchanged, nothing said."""
    if lora_cfg.r == 0:
        return model
    ids = new_token_ids(tokenizer, source_tokenizer) if source_tokenizer is not None else []
    model = apply_lora(model, lora_cfg, say, train_token_ids=ids)
    say(check_lora_savable(model, tokenizer, output_dir))
    return model


def _expose_head_bias(model: Any) -> None:
    """Give peft's trainable-tokens wrapper of the output head the head's ``bias`` attribute.

    TRL's SFTTrainer computes log-probs from ``lm_head.weight`` and ``lm_head.bias`` directly (its fused LM head).
    The wrapper answers ``.weight`` with the merged weights (trained rows included, differentiable) but has no
    ``.bias`` and raises. Stored in the instance dict (not registered), so state dicts and saving are unchanged.
    """
    import torch
    from peft.utils.other import TrainableTokensWrapper

    for module in model.modules():
        if isinstance(module, TrainableTokensWrapper):
            layer = module.token_adapter.get_base_layer()
            if isinstance(layer, torch.nn.Linear):  # a head; one with a bias was refused by _token_targets
                object.__setattr__(module, "bias", None)


def lora_layers(model: Any) -> list[str]:
    """Names of the modules that carry LoRA adapters (empty for a plain model)."""
    if not is_lora(model):
        return []
    from peft.tuners.lora import LoraLayer

    return [n for n, m in model.get_base_model().named_modules() if isinstance(m, LoraLayer)]


def is_lora(model: Any) -> bool:
    """True for a peft model (what :func:`apply_lora` returns at r > 0). Cheap: never imports peft itself."""
    if "peft" not in sys.modules:  # nothing imported peft, so nothing can be a PeftModel
        return False
    from peft import PeftModel

    return isinstance(model, PeftModel)


def trainable_parameter_count(model: Any) -> tuple[int, int]:
    """(parameters that require grad, all parameters), each shared (tied) tensor counted once."""
    params = list(model.parameters())  # deduplicated by torch
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def _require_lora(model: Any, what: str) -> None:
    if not is_lora(model):
        raise TypeError(f"{what} needs a LoRA model (apply_lora with model.lora.r > 0), got {type(model).__name__}. "
                        "A fully fine-tuned model has no frozen base inside it: keep a separate reference model, "
                        "or unwrap DDP/accelerate wrappers before calling")


@contextlib.contextmanager
def adapters_disabled(model: Any):
    """Inside, forward passes of ``model`` are the frozen base model's (adapters and trained token rows off):
    GRPO's reference log-probs with no second model in memory. Raises TypeError for a model without adapters,
    where the caller decides (a reference copy, or no KL). Wrap in ``torch.no_grad()`` for reference passes."""
    _require_lora(model, "adapters_disabled")
    with model.disable_adapter():
        yield model


def generation_model(model: Any) -> Any:
    """The module to call ``generate()`` on: for a LoRA model the wrapped transformers model, whose LoRA layers
    stay active (same logits as the PeftModel), with the model's own attributes (``generation_config``, ``device``)
    and no peft wrapper in between; a plain model is returned as is. (``PeftModel.generate`` works too: it copies
    the wrapper's generation config onto the base model on every call.)"""
    return model.get_base_model() if is_lora(model) else model


# ------------------------------------------------------------------------------------------ merged weights
def _walk(module: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """state_dict order and names of the plain model, with each peft wrapper replaced by its merged base layer."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils.other import ModulesToSaveWrapper, TrainableTokensWrapper

    if isinstance(module, TrainableTokensWrapper):
        yield from _walk(module.token_adapter, prefix)
        return
    if isinstance(module, ModulesToSaveWrapper):
        active = module.active_adapters
        yield from _walk(module.modules_to_save[active[0]] if active else module.original_module, prefix)
        return
    if isinstance(module, BaseTunerLayer):
        yield from _merged_layer(module, prefix)
        return
    persistent = [(n, b) for n, b in module._buffers.items() if n not in module._non_persistent_buffers_set]
    for name, tensor in [*module._parameters.items(), *persistent]:
        if tensor is not None:
            yield prefix + name, tensor.detach()
    for name, child in module._modules.items():
        if child is not None:
            yield from _walk(child, prefix + name + ".")


def _merged_layer(layer: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """The base layer's tensors with the active adapters merged in, the trained layer left as it is."""
    import torch
    from peft.tuners.trainable_tokens import TrainableTokensLayer

    # Computed first, yielded after: a no_grad block held open across a yield would leak into the caller's code.
    with torch.no_grad():
        if isinstance(layer, TrainableTokensLayer):
            # Replaced rows, out of place; a copy of the layer would drag in the tied embedding it points to.
            weight = layer.get_merged_weights([a for a in layer.active_adapters if a not in layer.merged_adapters])
            items = [(n, weight if n == prefix + "weight" else t)
                     for n, t in layer.get_base_layer().state_dict(prefix=prefix).items()]
        else:
            # LoRA (and any other tuner): peft's own merge, on a copy of this one layer (one weight matrix at a
            # time), so the result is bit for bit what merge_and_unload writes and the trained layer is untouched.
            merged = copy.deepcopy(layer)
            merged.merge()
            items = list(merged.get_base_layer().state_dict(prefix=prefix).items())
    yield from items


def iter_merged_weights(model: Any) -> Iterator[tuple[str, Any]]:
    """(name, tensor) of base + adapters for every entry of the base model's ``state_dict``, in its order and under
    its names (``AutoModelForCausalLM.from_pretrained(base).state_dict()``'s keys, tied ``lm_head.weight``
    included): what a rollout engine's weight sync loads. Targeted layers are merged one at a time into new
    tensors; every other tensor is the model's own (detached, shared: read it, do not write to it). The trained
    model is not changed. Raises TypeError for a model without adapters (its own ``state_dict`` is the answer)."""
    _require_lora(model, "iter_merged_weights")
    yield from _walk(model.get_base_model(), "")


def merged_state_dict(model: Any) -> dict[str, Any]:
    """:func:`iter_merged_weights` as a dict (holds every merged matrix at once; prefer the iterator to stream)."""
    return dict(iter_merged_weights(model))


def merged_copy(model: Any) -> Any:
    """A plain transformers model (the base class, normal parameter names, no peft inside) equal to ``model``
    with its adapters merged. Costs a full second copy while it lives; ``model`` is not changed."""
    _require_lora(model, "merged_copy")
    return copy.deepcopy(model).merge_and_unload()


# ------------------------------------------------------------------------------------------ saving and loading
def _drop_stale_merged(final: Path) -> None:
    """A final/ re-saved without merging must not keep an older run's merged weights next to the new adapter."""
    for pattern in ("model*.safetensors", "model.safetensors.index.json", "config.json", "generation_config.json"):
        for f in final.glob(pattern):
            f.unlink()


def _marker(model: Any, merge: bool) -> dict[str, Any]:
    cfg = model.peft_config[model.active_adapter]
    targets = cfg.target_modules
    return {
        "base_model": cfg.base_model_name_or_path,
        "adapter": ADAPTER_DIR,
        "merged": merge,
        "r": cfg.r, "alpha": cfg.lora_alpha, "dropout": cfg.lora_dropout,
        "target_modules": sorted(targets) if isinstance(targets, (set, list)) else targets,
        "trainable_token_indices": cfg.trainable_token_indices,
        "vocab_rows": model.get_input_embeddings().weight.shape[0],
        "load": ("AutoModelForCausalLM.from_pretrained(final_dir)" if merge else
                 "rlvr.model_lora.load_lora_final(final_dir), or: base = AutoModelForCausalLM.from_pretrained("
                 "base_model); base.resize_token_embeddings(vocab_rows) if the row counts differ; "
                 "PeftModel.from_pretrained(base, final_dir/'adapter')"),
    }


def save_adapter(model: Any, folder: str | Path) -> None:
    """``folder``/adapter_config.json + adapter_model.safetensors: the adapters and trained token rows only.

    peft's default (``save_embedding_layers="auto"``) adds the whole embedding and head whenever the vocabulary was
    resized (236 MB for SmolLM2 instead of 10 MB); the added tokens' rows are in the adapter already, so that copy
    only matters to a loader that does not resize the base first, and :func:`load_lora_final` does. Checkpoints
    written by ``model.save_pretrained`` (TRL's included) keep peft's default; both load the same way."""
    model.save_pretrained(folder, save_embedding_layers=False)


def save_final(model: Any, tokenizer: Any, final_dir: str | Path, merge: bool) -> dict[str, Any]:
    """Write a stage's final model: ``final_dir/adapter/`` (peft: adapter_config.json + adapter_model.safetensors),
    the tokenizer and ``rlvr_lora.json`` (base model, settings, how to load) in ``final_dir``, and with ``merge``
    the merged plain HF model in ``final_dir`` itself (``AutoModelForCausalLM.from_pretrained(final_dir)`` and
    vLLM load it; its config.json knows nothing of peft). Without ``merge`` a README.md says how to load the
    adapter (:func:`load_lora_final`). The merged weights are streamed from the trained model, which stays as it
    is (no copy of the peft model). Returns what was written to ``rlvr_lora.json``."""
    _require_lora(model, "save_final")
    final = Path(final_dir)
    final.mkdir(parents=True, exist_ok=True)
    save_adapter(model, final / ADAPTER_DIR)
    tokenizer.save_pretrained(final)
    if merge:
        # The wrapped transformers model writes config, generation config and (tied keys dropped, sharded) the
        # merged tensors exactly as a plain model's save_pretrained would.
        model.get_base_model().save_pretrained(final, state_dict=merged_state_dict(model))
    else:
        _drop_stale_merged(final)
    marker = _marker(model, merge)
    (final / MARKER).write_text(json.dumps(marker, indent=2))
    if not merge:
        (final / "README.md").write_text(
            f"# LoRA adapter (not merged)\n\nBase model `{marker['base_model']}`, adapter in `{ADAPTER_DIR}/`, "
            f"tokenizer here. Load: `rlvr.model_lora.load_lora_final('{final}')`, or by hand: "
            f"`base = AutoModelForCausalLM.from_pretrained(...)`; if its embedding has fewer than "
            f"{marker['vocab_rows']} rows, `base.resize_token_embeddings({marker['vocab_rows']})`; then "
            f"`PeftModel.from_pretrained(base, '{final / ADAPTER_DIR}')`. model.lora.merge_final=true also writes "
            "the merged plain HF model here (what vLLM serves).\n")
    return marker


def load_adapter_weights(model: Any, folder: str | Path) -> None:
    """Copy the adapter weights saved in ``folder`` (``model.save_pretrained`` of a LoRA model: a checkpoint, or
    ``final/adapter``) into ``model``, in place and exactly (the optimizer keeps pointing at the same tensors).
    Raises when the folder holds no adapter or it does not fit ``model`` (other r, targets or rows)."""
    _require_lora(model, "load_adapter_weights")
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    folder = Path(folder)
    if not any((folder / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
        raise FileNotFoundError(f"{folder} holds no peft adapter (adapter_model.safetensors). Fix: point at a "
                                "checkpoint of a LoRA run, or at final/adapter")
    device = next(model.parameters()).device
    try:
        result = set_peft_model_state_dict(model, load_peft_weights(str(folder), device=str(device)),
                                           adapter_name=model.active_adapter)
    except RuntimeError as exc:  # shape mismatch: other r / targets / vocabulary
        raise RuntimeError(f"the adapter in {folder} does not fit this model ({exc}). Fix: resume with the "
                           "model.lora settings (r, target_modules) and tokens the run was started with") from exc
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(k for k in result.missing_keys if k in trainable)
    if missing or result.unexpected_keys:
        raise RuntimeError(f"the adapter in {folder} does not match this model: missing {missing[:5]}, unexpected "
                           f"{list(result.unexpected_keys)[:5]}. Fix: resume with the model.lora settings the run "
                           "was started with")


def load_lora_final(folder: str | Path, dtype: Any = None) -> tuple[Any, Any]:
    """(PeftModel in eval mode, tokenizer) from a ``final/`` that :func:`save_final` wrote (merged or not): the base
    named in ``rlvr_lora.json``, resized to the trained vocabulary when tokens were added, plus ``adapter/``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    if not (folder / MARKER).is_file():
        raise FileNotFoundError(f"{folder} has no {MARKER}: not a LoRA final/ written by rlvr. Fix: load a plain "
                                "model folder with AutoModelForCausalLM.from_pretrained")
    marker = json.loads((folder / MARKER).read_text())
    base = AutoModelForCausalLM.from_pretrained(marker["base_model"], dtype=dtype or torch.float32)
    if base.get_input_embeddings().weight.shape[0] != marker["vocab_rows"]:
        base.resize_token_embeddings(marker["vocab_rows"], mean_resizing=False)  # the adapter holds the new rows
    model = PeftModel.from_pretrained(base, str(folder / marker["adapter"]))
    return model.eval(), AutoTokenizer.from_pretrained(folder)


# ------------------------------------------------------------------------------------------ start-up check
def check_lora_savable(model: Any, tokenizer: Any, output_dir: str | Path) -> str:
    """Prove at start-up what the end of the run needs: the adapter saves into ``output_dir`` (temporary folder,
    deleted) and reads back bit for bit, and the merged weights come out under the base model's names. Raises
    ``ModelNotTrainableError`` naming the problem; returns a one-line summary to print."""
    import torch
    from peft.utils import get_peft_model_state_dict, load_peft_weights

    from rlvr.model_convert import ModelNotTrainableError

    _require_lora(model, "check_lora_savable")
    start = time.perf_counter()
    out = Path(output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".rlvr-lora-savecheck-", dir=out))
    try:
        save_adapter(model, scratch / ADAPTER_DIR)
        tokenizer.save_pretrained(scratch)
        saved = load_peft_weights(str(scratch / ADAPTER_DIR), device="cpu")
        size = sum(f.stat().st_size for f in (scratch / ADAPTER_DIR).iterdir())
    except Exception as exc:  # noqa: BLE001 - every failure is reported with its type
        raise ModelNotTrainableError(f"the LoRA adapter cannot be saved to {out}: {type(exc).__name__}: {exc}. "
                                     "Fix: a writable output_dir with free disk") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    expected = get_peft_model_state_dict(model, save_embedding_layers=False)
    differ = [k for k in expected if k not in saved or not torch.equal(saved[k], expected[k].detach().cpu())]
    names = [name for name, _ in iter_merged_weights(model)]  # each merged matrix is dropped as soon as named
    bad = [n for n in names if any(part in n for part in PEFT_NAME_PARTS)]
    base_keys = getattr(model, "rlvr_base_keys", None)  # set by apply_lora
    if base_keys is not None and names != base_keys:
        bad += sorted(set(names) ^ set(base_keys)) or ["(same names, other order)"]
    if differ or bad:
        raise ModelNotTrainableError(f"LoRA save check failed: adapter tensors that did not read back {differ[:5]}; "
                                     f"merged names that differ from the base model's {bad[:5]}. Fix: report it "
                                     "with the peft version; meanwhile train without LoRA (model.lora.r=0)")
    return (f"LoRA check: adapter ({len(expected)} tensors, {size / 1e6:.1f} MB) saved and read back exactly, "
            f"{len(names)} merged tensors under the base model's names, in {time.perf_counter() - start:.1f} s")
