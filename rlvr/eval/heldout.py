"""Greedy held-out accuracy per split: the quick check printed after SFT.

Generation is batched HF ``generate`` with left padding; answers are scored by the ``math`` verifier (parse
then compare), or by the sample's own primary verifier where that is another one (code tasks, the code rows of a
``mix``), so SFT reports the same notion of "correct" that GRPO is rewarded with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from rlvr.tasks.base import Sample


@dataclass
class SplitResult:
    split: str
    n: int
    correct: int
    errors: int
    mean_completion_tokens: float
    examples: list[dict[str, Any]]

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0


def default_eval_splits(task) -> list[str]:
    """The task's own choice (a mix: each component's), else its per-difficulty held-out splits (arith:
    test_ops1..K), else its first non-train split."""
    own = getattr(task, "default_eval_splits", None)
    if callable(own):
        return list(own())
    per_difficulty = [s for s in task.splits if s.startswith("test_")]
    return per_difficulty or [s for s in task.splits if s != "train"][:1]


def greedy_generate(model, tokenizer, prompts: Sequence[list[dict[str, str]]], max_new_tokens: int,
                    batch_size: int = 64) -> list[tuple[str, int]]:
    """(completion text, completion token count) per prompt, greedy."""
    import torch

    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    out: list[tuple[str, int]] = []
    model.eval()
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else tokenizer.eos_token_id
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(model.device)
            generated = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                       eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
            completion_ids = generated[:, batch["input_ids"].shape[1]:]  # [B, T_new]
            for row in completion_ids:
                ids = row.tolist()
                n = ids.index(eos) + 1 if eos in ids else len([i for i in ids if i != tokenizer.pad_token_id])
                out.append((tokenizer.decode(ids[:n], skip_special_tokens=True), n))
    return out


def sample_verifier(sample: Sample, default, cache: dict[str, Any]):
    """``default`` (the math verifier) where the sample's primary verifier is that one, else the sample's own
    primary verifier (code tasks, a mix's code rows), so a held-out split is never judged by the wrong rule."""
    import json

    from rlvr.rewards.runtime import parse_spec

    specs = [parse_spec(s) for s in sample.verifiers]
    primary = next((s for s in specs if s.weight != 0), None)
    if primary is None or (primary.name == getattr(default, "name", None) and not primary.config):
        return default
    key = json.dumps({"name": primary.name, "config": dict(primary.config)}, sort_keys=True, default=str)
    if key not in cache:
        from rlvr.verifiers import load

        cache[key] = load(primary.name, **dict(primary.config))
    return cache[key]


def score_split(split: str, samples: list[Sample], completions: list[tuple[str, int]], verifier,
                keep_examples: int = 3) -> SplitResult:
    correct = errors = 0
    examples = []
    cache: dict[str, Any] = {}
    for sample, (text, _n) in zip(samples, completions):
        result = sample_verifier(sample, verifier, cache)(text, sample.answer, meta=sample.meta)
        errors += result.error is not None
        ok = result.error is None and (result.score or 0.0) >= 1.0
        correct += ok
        if len(examples) < keep_examples:
            examples.append({"prompt": sample.prompt[-1]["content"], "completion": text, "answer": sample.answer,
                             "correct": ok})
    mean_tokens = sum(n for _, n in completions) / max(len(completions), 1)
    return SplitResult(split, len(samples), correct, errors, mean_tokens, examples)


def evaluate_heldout(model, tokenizer, task, splits: Sequence[str], num_problems: int, max_new_tokens: int,
                     batch_size: int, verifier) -> list[SplitResult]:
    results = []
    for split in splits:
        samples = task.samples(split, limit=num_problems)
        completions = greedy_generate(model, tokenizer, [s.prompt for s in samples], max_new_tokens, batch_size)
        results.append(score_split(split, samples, completions, verifier))
    return results


def run_eval(model, tokenizer, task, cfg: Any, splits: list[str], out: Any, step: int, console: Any) -> dict:
    """The greedy held-out eval inside `rlvr grpo` at `step`: accuracy per split, printed and written to eval/."""
    from rlvr.train.sft import write_eval
    from rlvr.verifiers import load as load_verifier

    g = cfg.grpo
    results = evaluate_heldout(model, tokenizer, task, splits, g.eval_num_problems, g.eval_max_new_tokens,
                               g.eval_batch_size, load_verifier("math"))
    write_eval(out, results, step=step, name=f"grpo_step{step}")
    console.print(f"eval @ step {step}: " + "  ".join(f"{r.split} {100 * r.accuracy:.1f}%" for r in results))
    return {f"eval/{r.split}/accuracy": r.accuracy for r in results}
