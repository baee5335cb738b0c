"""Turning what transformers loads into a model every stage can train, save and serve.

- :func:`convert_gguf`: a GGUF file (the packaged SmolLM2, or any ``model.gguf_file``) is dequantised ONCE into a
  cached plain HF folder (float32 safetensors, no ``quantization_config``, tokenizer + chat template). Loaded with
  ``gguf_file=`` transformers keeps a GGUF quantizer attached although the weights are already dequantised: TRL
  refuses to fine-tune it, ``save_pretrained`` refuses to save it and vLLM has no "gguf" method. The folder is keyed by
  the GGUF file's name, size and mtime plus :data:`CONVERT_RECIPE_VERSION`, built in a scratch folder and renamed
  (atomic), under a file lock so two racing processes convert once.
- :func:`check_trainable_and_savable`: the start-up check the stages run before their first step, so a checkpoint
  is never the first thing to fail.
- :func:`add_think_tokens`: ``<think>`` / ``</think>`` as single added tokens, embeddings resized, choice reported
  (:func:`think_tags_as_text`: the line reported when they stay text, the default).

This module imports nothing from :mod:`rlvr.models` (which re-exports it): paths and cache roots come in as arguments.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# Bump when the conversion recipe changes (dtype, files written, tokenizer fix-ups): it is part of the cache key.
CONVERT_RECIPE_VERSION = 1
CONVERT_MARKER = "rlvr_converted.json"
THINK_TAGS = ("<think>", "</think>")
# Below this many weight bytes the start-up check saves the whole model (SmolLM2 fp32: 0.54 GB); above, a subset.
FULL_SAVE_CHECK_LIMIT = 1 << 30


class ModelNotTrainableError(RuntimeError):
    """The model cannot be trained or saved as loaded; the message lists every problem and its fix."""


# ------------------------------------------------------------------------------------------ GGUF -> plain folder
def gguf_cache_dir(gguf_path: Path, cache_root: Path) -> Path:
    """Cache folder for a GGUF file: keyed by its resolved path, size, mtime and the recipe version."""
    gguf_path = Path(gguf_path).resolve()
    st = gguf_path.stat()
    spec = {"path": str(gguf_path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "recipe": CONVERT_RECIPE_VERSION}
    return Path(cache_root) / f"gguf-{gguf_path.stem[:48]}-{cache_key(spec)}"


def cache_key(spec: dict) -> str:
    """12 hex digits naming a cache folder after everything its contents depend on (``spec``, JSON-able)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def is_converted(folder: Path) -> bool:
    return (Path(folder) / CONVERT_MARKER).exists()


@contextlib.contextmanager
def _file_lock(path: Path):
    """Exclusive advisory lock (POSIX flock); a no-op where flock does not exist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_once(folder: Path, build: Callable[[Path], None], done: Callable[[Path], bool]) -> bool:
    """Make the cache folder ``folder`` exist complete (``done``), building it with ``build(scratch)`` at most once
    across processes: under a lock, into a scratch folder that is renamed in whole, so a concurrent or killed build
    never leaves a half-written cache. True when this call built it."""
    folder = Path(folder)
    if done(folder):
        return False
    with _file_lock(folder.with_name(folder.name + ".lock")):
        if done(folder):  # another process built it while this one waited
            return False
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            build(tmp)
            if folder.exists():  # a stale, incomplete folder (killed before it was complete): replace it
                shutil.rmtree(folder)
            tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return True


def convert_gguf(gguf_path: Path, cache_root: Path, log=print) -> Path:
    """Plain HF folder for ``gguf_path``, converted on first use (~30 s for SmolLM2-135M on 2 cores), then cached."""
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file {gguf_path} does not exist")
    out = gguf_cache_dir(gguf_path, cache_root)

    def build(tmp: Path) -> None:
        if log:
            log(f"[rlvr] converting {gguf_path.name} once into a plain HF folder {out} (dequantised weights, "
                "no quantizer: trainable, savable, servable by vLLM) ...")
        seconds = _write_plain_folder(gguf_path, tmp)
        if log:
            log(f"[rlvr] converted in {seconds:.1f} s")

    build_once(out, build, is_converted)
    return out


def strip_quantizer(model) -> None:
    """Drop a quantizer whose weights are already dequantised (GGUF): afterwards the model is a plain one."""
    from transformers import PreTrainedModel

    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            if hasattr(module.config, "quantization_config"):
                del module.config.quantization_config
            module.config._is_quantized = False
            for attr in ("hf_quantizer", "quantization_method"):
                if attr in module.__dict__:
                    delattr(module, attr)
            module.is_quantized = False


def _write_plain_folder(gguf_path: Path, tmp: Path) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    kwargs = {"gguf_file": gguf_path.name}
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    strip_quantizer(model)
    if tokenizer.model_max_length > 10**9:  # GGUF metadata has none: the model's context is the honest limit
        tokenizer.model_max_length = model.config.max_position_embeddings
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    for f in tmp.iterdir():  # safetensors writes 0600; a shared cache should be readable like the rest
        f.chmod(0o644)
    config = json.loads((tmp / "config.json").read_text())
    if "quantization_config" in config:  # belt and braces: vLLM would look for a "gguf" method
        del config["quantization_config"]
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
    seconds = time.perf_counter() - start
    st = gguf_path.stat()
    marker = {"source": str(gguf_path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
              "recipe": CONVERT_RECIPE_VERSION, "dtype": "float32", "seconds": round(seconds, 2)}
    import transformers

    marker["transformers"] = transformers.__version__
    (tmp / CONVERT_MARKER).write_text(json.dumps(marker, indent=2))  # written last: its presence means complete
    return seconds


# ------------------------------------------------------------------------------------------ start-up check
@dataclass
class SaveCheck:
    """What :func:`check_trainable_and_savable` measured (for the caller to print)."""

    param_bytes: int
    need_bytes: int
    free_bytes: int
    save_mode: str  # "full" (whole model saved to a temp folder) or "subset" (config + a few tensors)
    seconds: float
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"model check: {self.param_bytes / 1e9:.2f} GB of weights, checkpoint needs ~{self.need_bytes / 1e9:.2f}"
                f" GB, {self.free_bytes / 1e9:.1f} GB free; test save ({self.save_mode}) ok in {self.seconds:.1f} s")


def _weight_bytes(model) -> tuple[int, int]:
    """(bytes, elements) of the parameters and buffers, each shared tensor counted once."""
    seen, total, numel = set(), 0, 0
    for t in list(model.parameters()) + list(model.buffers()):
        key = (t.device, t.data_ptr()) if t.device.type != "meta" else id(t)
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
        numel += t.numel()
    return total, numel


def _quantizer_problem(model) -> str | None:
    quantizer = getattr(model, "hf_quantizer", None)
    qconfig = getattr(getattr(model, "config", None), "quantization_config", None)
    if quantizer is None and not qconfig and not getattr(model, "is_quantized", False):
        return None
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None) or (
        qconfig.get("quant_method") if isinstance(qconfig, dict) else getattr(qconfig, "quant_method", "unknown"))
    method = getattr(method, "value", method)
    if str(method) == "gguf":
        return ("the model was loaded from a GGUF file and still has the GGUF quantizer attached: TRL refuses to "
                "fine-tune it and save_pretrained refuses to save it. Fix: load it through rlvr "
                "(model.name_or_path=<folder> model.gguf_file=<file.gguf>, or model=smollm2-135m), which converts the "
                "GGUF once into a plain HF folder, or call rlvr.model_convert.strip_quantizer(model)")
    return (f"the model is quantized ({method}): transformers cannot fully fine-tune it, and save_pretrained/vLLM may "
            "refuse it. Fix: train the unquantized original (model.name_or_path=<original checkpoint>); "
            "a quantized model is fine for `rlvr eval` only")


def _tensor_problems(model) -> list[str]:
    params = list(model.named_parameters())
    problems = []
    not_float = [n for n, p in params if not p.is_floating_point()]
    if not_float:
        problems.append(f"{len(not_float)} parameters are not floating point (e.g. {not_float[0]}): they cannot be "
                        "trained. Fix: load an unquantized checkpoint")
    meta = [n for n, p in params if p.device.type == "meta"]
    if meta:
        problems.append(f"{len(meta)} parameters are on the meta device (e.g. {meta[0]}): weights were never loaded. "
                        "Fix: load without device_map offloading")
    if params and not any(p.requires_grad for _, p in params):
        problems.append("no parameter requires grad. Fix: model.requires_grad_(True) before training")
    return problems


def _test_save(model, tokenizer, folder: Path, full: bool) -> None:
    """save_pretrained (whole model, or config + the smallest tensor) and tokenizer.save_pretrained into folder."""
    state_dict = None
    if not full:
        named = dict(model.named_parameters())
        smallest = min(named, key=lambda n: named[n].numel()) if named else None
        state_dict = {smallest: named[smallest].detach()} if smallest else {}
    model.save_pretrained(folder, state_dict=state_dict)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def check_trainable_and_savable(model, tokenizer, output_dir: str | os.PathLike, *, with_optimizer: bool = False,
                                full_save_limit: int = FULL_SAVE_CHECK_LIMIT) -> SaveCheck:
    """Raise :class:`ModelNotTrainableError` listing every reason this model cannot be trained and checkpointed.

    Checks: no quantizer attached, float non-meta parameters that require grad, output_dir writable with free disk
    for a checkpoint (weight bytes, plus 8 bytes/parameter of Adam state when ``with_optimizer``, plus 5% and 50 MB),
    and a real ``save_pretrained`` + tokenizer save into a temporary folder inside output_dir (same filesystem),
    deleted afterwards: the whole model when its weights are under ``full_save_limit`` bytes, else config and one
    tensor. Returns a :class:`SaveCheck` whose ``summary()`` the caller may print.
    """
    start = time.perf_counter()
    quantized = _quantizer_problem(model)
    problems = ([quantized] if quantized else []) + _tensor_problems(model)
    param_bytes, numel = _weight_bytes(model)
    need = int((param_bytes + (8 * numel if with_optimizer else 0)) * 1.05) + (50 << 20)
    out = Path(output_dir).expanduser()
    free, mode = 0, "skipped"
    try:
        out.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(out).free
        if free < need:
            problems.append(f"{out} has {free / 1e9:.2f} GB free but a checkpoint needs ~{need / 1e9:.2f} GB. "
                            "Fix: free disk or point the run's output_dir at a bigger filesystem")
        scratch = Path(tempfile.mkdtemp(prefix=".rlvr-savecheck-", dir=out))
    except OSError as exc:
        problems.append(f"output_dir {out} is not writable ({exc}). Fix: choose a writable output_dir")
        scratch = None
    if scratch is not None:
        try:
            if not quantized:  # with a quantizer attached the save fails anyway: already reported
                full = param_bytes <= full_save_limit and free >= need
                mode = "full" if full else "subset"
                _test_save(model, tokenizer, scratch, full)
        except Exception as exc:  # noqa: BLE001 - every failure is reported with its type
            problems.append(f"save_pretrained failed in a test save to {out}: {type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    check = SaveCheck(param_bytes, need, free, mode, time.perf_counter() - start, problems)
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise ModelNotTrainableError(f"the model cannot be trained and checkpointed as loaded:\n{listing}")
    return check


# ------------------------------------------------------------------------------------------ thinking tags
@dataclass
class ThinkTokens:
    """What :func:`add_think_tokens` did: ``added`` is empty when the tokenizer already had the tags."""

    added: list[str]
    old_vocab: int
    new_vocab: int
    tied: bool
    tags: tuple[str, ...] = THINK_TAGS  # the tags asked for (``task.think_open`` / ``task.think_close``)

    def summary(self) -> str:
        if not self.added:
            return f"thinking tags: {' and '.join(self.tags)} are already single tokens; nothing changed"
        return (f"thinking tags: added {', '.join(self.added)} as (non-special) tokens; embeddings resized "
                f"{self.old_vocab} -> {self.new_vocab} rows, new rows set to the mean of the old ones"
                + (" (input and output embeddings stay tied)" if self.tied else ""))


def _token_count(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False))


def _is_single_token(tokenizer, text: str) -> bool:
    return _token_count(tokenizer, text) == 1


def think_tags_as_text(tokenizer, tags: tuple[str, ...] = THINK_TAGS) -> str:
    """The choice made when ``model.add_think_tokens`` is off, in one line: how many tokens each tag takes."""
    counts = {t: _token_count(tokenizer, t) for t in tags}
    if all(n == 1 for n in counts.values()):
        return "thinking tags: already single tokens in this tokenizer"
    return ("thinking tags: written as text (" + ", ".join(f"{t} = {n} tokens" for t, n in counts.items())
            + "), vocabulary as shipped; model.add_think_tokens=true makes them single new tokens")


def add_think_tokens(model, tokenizer, tags: tuple[str, ...] = THINK_TAGS) -> ThinkTokens:
    """Make each tag a single (non-special) token, resizing the model's embeddings; a no-op where they already are.

    New rows (input embedding and, if untied, the output head) are the mean of the existing rows, so the model's
    outputs on text without the tags are unchanged and the new tokens start from an average, neutral embedding.
    """
    import torch
    from tokenizers import AddedToken

    old_rows = model.get_input_embeddings().weight.shape[0]
    missing = [t for t in tags if not _is_single_token(tokenizer, t)]
    if missing:
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in missing])
    tied = model.get_output_embeddings() is not None and (
        model.get_output_embeddings().weight is model.get_input_embeddings().weight)
    if len(tokenizer) <= old_rows:
        return ThinkTokens(missing, old_rows, old_rows, tied, tuple(tags))
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[old_rows:] = emb[:old_rows].mean(dim=0, keepdim=True)
        head = model.get_output_embeddings()
        if head is not None and head.weight is not emb:
            head.weight[old_rows:] = head.weight[:old_rows].mean(dim=0, keepdim=True)
            if getattr(head, "bias", None) is not None:
                head.bias[old_rows:] = head.bias[:old_rows].mean()
    new_rows = model.get_input_embeddings().weight.shape[0]
    return ThinkTokens(missing, old_rows, new_rows, tied, tuple(tags))
