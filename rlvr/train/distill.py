"""``rlvr distill``: rejection sampling into an SFT data set — sample, verify, keep only correct traces.

    rlvr distill model.name_or_path=runs/demo/grpo/final task=arith distill.n=8 output_dir=runs/distill
    rlvr sft sft.train_file=runs/distill/data.jsonl ...      # train on the kept traces
    rlvr pipeline 'pipeline.stages=[distill,sft,grpo,eval,plot]' 'pipeline.stage_overrides={distill:[...]}'

This is how DeepSeek-R1 built its cold-start data (arXiv 2501.12948, sections 2.3.1 and 2.3.3): sample many
responses per prompt from a strong model, keep those whose final answer a rule checks as correct (and whose
format is readable), and fine-tune on them. Top to bottom:

1. the first ``distill.num_prompts`` prompts of ``distill.split``;
2. ``distill.n`` completions each from ``model`` (HF ``generate``, or vLLM: ``rollout=vllm|auto``);
3. each completion scored on the one scoring path (``rlvr.rewards.scoring.score``: its sample's verifiers in the
   reward runtime, per row, so a mixed task works); correct = the primary verifier's score >= ``distill.min_score``, not
   truncated, and — with ``distill.require_format`` — shaped ``<think>…</think>`` + answer (format verifier);
4. per prompt keep the shortest correct completion (``keep=one``) or every distinct one (``keep=all``);
5. write ``<out>/data.jsonl`` (``{"id", "task", "messages": [prompt..., assistant], "answer", "meta", ...}``, what
   ``sft.train_file`` reads) and ``<out>/summary.json`` (kept fraction overall and per task / operation count).

``summary.json`` is written last: it marks the stage done (a re-run with the same settings does nothing); a crash
before it redoes the sampling, which is one pass and cheap next to training.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from rlvr.config import ROLLOUT_ENGINES
from rlvr.config.loading import Problem, default_output_dir, positive, run_command

KEEP = ("one", "all")
DATA_FILE = "data.jsonl"
SUMMARY_FILE = "summary.json"


# ------------------------------------------------------------------------------------------------ validation
def validate(cfg: DictConfig) -> list[Problem]:
    d = cfg.distill
    problems = positive(cfg, "distill.n", "distill.max_new_tokens", "distill.batch_size", "rewards.timeout_s")
    if d.num_prompts is not None and d.num_prompts < 1:
        problems.append(Problem("distill.num_prompts", f"must be >= 1 or null, got {d.num_prompts}", "null = all"))
    if d.keep not in KEEP:
        problems.append(Problem("distill.keep", f"unknown value {d.keep!r}", "use one or all"))
    if not 0 < d.min_score <= 1:
        problems.append(Problem("distill.min_score", f"must be in (0, 1], got {d.min_score}", "1.0 = exactly right"))
    if d.temperature is None or d.temperature < 0 or not 0 < d.top_p <= 1:
        problems.append(Problem("distill.temperature/top_p", "need temperature >= 0 and 0 < top_p <= 1",
                                "e.g. distill.temperature=1.0 distill.top_p=1.0"))
    if cfg.rollout not in ROLLOUT_ENGINES:
        problems.append(Problem("rollout", f"unknown engine {cfg.rollout!r}", f"use {' | '.join(ROLLOUT_ENGINES)}"))
    return problems


# ------------------------------------------------------------------------------------------------ data
def read_sft_file(path: str | Path, limit: int | None = None) -> list:
    """Samples (prompt = every message but the last, solution = the last, an assistant turn) from a jsonl of
    ``{"messages": [...]}`` rows, the format :func:`run` writes."""
    from rlvr.tasks.base import Sample

    samples = []
    with Path(path).expanduser().open() as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            row = json.loads(line)
            messages = row.get("messages")
            if not messages or messages[-1].get("role") != "assistant":
                raise ValueError(f"{path}:{i + 1}: need 'messages' ending with an assistant turn")
            samples.append(Sample(id=str(row.get("id", f"{Path(path).stem}/{i}")), prompt=messages[:-1],
                                  answer=row.get("answer"), verifiers=(), meta=row.get("meta") or {},
                                  solution=messages[-1]["content"]))
            if limit is not None and len(samples) >= limit:
                break
    return samples


def group_label(sample: Any, task_name: str) -> str:
    """Which summary group a prompt counts in: its task (a mix's component) and, for arith, its operation count."""
    parts = [str(sample.meta.get("task") or task_name)]
    if "ops" in sample.meta:
        parts.append(f"ops{sample.meta['ops']}")
    return "/".join(parts)


def format_spec(task_cfg: Any) -> dict[str, Any]:
    """The verifier spec of the format check for ``require_format``: the task's thinking tags, ``\\boxed{}``
    answers when the task's answer template boxes them, else any non-empty answer (code blocks)."""
    answer = "boxed" if "boxed" in task_cfg.answer_template else "any"
    return {"name": "format", "think_open": task_cfg.think_open, "think_close": task_cfg.think_close,
            "answer": answer}


def select(samples: Sequence[Any], rollouts: Sequence[Any], correct: Sequence[bool], n: int, keep: str,
           task_name: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Rows to write and per-group counts. ``rollouts``/``correct`` are prompt-major: row i*n + j is completion j
    of prompt i."""
    rows: list[dict[str, Any]] = []
    groups: dict[str, dict[str, float]] = {}
    for i, sample in enumerate(samples):
        mine = [(rollouts[i * n + j], correct[i * n + j]) for j in range(n)]
        good = [r for r, ok in mine if ok]
        label = group_label(sample, task_name)
        g = groups.setdefault(label, {"prompts": 0, "kept_prompts": 0, "completions": 0, "correct": 0})
        g["prompts"] += 1
        g["completions"] += n
        g["correct"] += len(good)
        g["kept_prompts"] += bool(good)
        if keep == "one":
            good = sorted(good, key=lambda r: (r.num_tokens, r.index))[:1]
        seen = set()
        for r in good:
            if r.text in seen:
                continue
            seen.add(r.text)
            rows.append({"id": f"{sample.id}#{r.index}", "task": sample.meta.get("task") or task_name,
                         "messages": [*sample.prompt, {"role": "assistant", "content": r.text}],
                         "answer": sample.answer, "meta": dict(sample.meta), "tokens": r.num_tokens})
    for g in groups.values():
        g["kept_frac"] = g["kept_prompts"] / g["prompts"]
        g["correct_rate"] = g["correct"] / g["completions"]
    return rows, groups


def settings_of(cfg: DictConfig) -> dict[str, Any]:
    """What the data depends on; a finished stage with other settings is redone."""
    return {"distill": OmegaConf.to_container(cfg.distill, resolve=True),
            "model": cfg.model.name_or_path or cfg.model.name, "task": OmegaConf.to_container(cfg.task, resolve=True),
            "seed": cfg.seed}


def is_done(out: str | Path, cfg: DictConfig | None = None) -> bool:
    path = Path(out) / SUMMARY_FILE
    if not path.exists() or not (Path(out) / DATA_FILE).exists():
        return False
    if cfg is None:
        return True
    try:
        return json.loads(path.read_text()).get("settings") == json.loads(json.dumps(settings_of(cfg), default=str))
    except (json.JSONDecodeError, AttributeError):
        return False


def print_summary(summary: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"rejection sampling: {summary['rows']} rows kept from {summary['prompts']} prompts x "
                        f"{summary['n']}")
    for col in ("group", "prompts", "kept", "kept %", "correct %"):
        table.add_column(col, justify="right")
    for label, g in summary["groups"].items():
        table.add_row(label, str(g["prompts"]), str(g["kept_prompts"]), f"{100 * g['kept_frac']:.1f}",
                      f"{100 * g['correct_rate']:.1f}")
    console.print(table)


# ------------------------------------------------------------------------------------------------ the command
def run(cfg: DictConfig) -> int:
    import torch
    from rich.console import Console

    from rlvr.models import load_model_and_tokenizer
    from rlvr.rewards.runtime import RewardRuntime, RewardsConfig
    from rlvr.rewards.scoring import score
    from rlvr.rollout.base import SamplingParams
    from rlvr.rollout.engines import build_engine
    from rlvr.train.grpo_validation import choose_engine
    from rlvr.tasks import build_task

    console = Console()
    started = time.time()
    d = cfg.distill
    default_output_dir(cfg, "distill")
    out = Path(cfg.output_dir)
    if is_done(out, cfg):
        console.print(f"[yellow]{out / DATA_FILE} is complete for these settings; nothing to do[/yellow]")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (out / SUMMARY_FILE).unlink(missing_ok=True)  # the data is about to change

    task = build_task(cfg.task, data_dir=cfg.data_dir)
    samples = task.samples(d.split, limit=d.num_prompts)
    engine_name, why = choose_engine(cfg.rollout)
    console.print(f"[bold]rlvr distill[/bold]  model={cfg.model.name_or_path or cfg.model.name}  task={task.name}  "
                  f"prompts={len(samples)} x n={d.n}  rollout={engine_name} ({why})  out={out}")
    model, tokenizer = load_model_and_tokenizer(cfg.model)
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    engine = build_engine(engine_name, model, tokenizer, seed=cfg.seed, think_open=cfg.task.think_open,
                          think_close=cfg.task.think_close, batch_size=d.batch_size)
    runtime = RewardRuntime(RewardsConfig(**OmegaConf.to_container(cfg.rewards, resolve=True)))
    params = SamplingParams(temperature=d.temperature, top_p=d.top_p, max_new_tokens=d.max_new_tokens, seed=cfg.seed)
    try:
        rollouts = engine.generate(samples, n=d.n, params=params)  # [P*n] prompt-major
        scored = score(runtime, samples, rollouts, d.n)
        # the format check runs in the pool too: a pathological completion is cut at rewards.timeout_s
        shaped = runtime.score([r.text for r in rollouts], [None] * len(rollouts), [format_spec(cfg.task)]) \
            if d.require_format else None
    finally:
        runtime.close()
        if hasattr(engine, "close"):
            engine.close()
    correct, errors = [], 0
    for i, (rollout, r) in enumerate(zip(rollouts, scored.primary())):
        errors += r is not None and r.error is not None
        ok = r is not None and r.error is None and r.score is not None and r.score >= d.min_score
        ok = ok and not rollout.truncated
        if ok and shaped is not None:
            ok = (shaped.results[i]["format"].score or 0.0) >= 1.0  # an error has score None: not kept
        correct.append(ok)
    rows, groups = select(samples, rollouts, correct, d.n, d.keep, task.name)

    tmp = out / (DATA_FILE + ".tmp")
    with tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, default=str) + "\n")
    tmp.replace(out / DATA_FILE)
    kept = sum(g["kept_prompts"] for g in groups.values())
    summary = {
        "prompts": len(samples), "n": d.n, "completions": len(rollouts), "rows": len(rows),
        "kept_prompts": kept, "kept_frac": kept / max(len(samples), 1),
        "correct_rate": sum(correct) / max(len(correct), 1), "verifier_errors": errors,
        "mean_tokens_kept": (sum(r["tokens"] for r in rows) / len(rows)) if rows else math.nan,
        "groups": groups, "seconds": time.time() - started, "data": str(out / DATA_FILE),
        "settings": json.loads(json.dumps(settings_of(cfg), default=str)),
    }
    print_summary(summary, console)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str))  # last: marks the stage done
    if not rows:
        console.print("[yellow]no completion was verified correct: the model cannot solve these prompts yet. Fix: "
                      "sample from a stronger model (model.name_or_path=...), raise distill.n, or lower "
                      "distill.min_score[/yellow]")
    console.print(f"wrote {out / DATA_FILE} ({len(rows)} rows) in {summary['seconds']:.0f}s")
    return 0


def main(argv: list[str]) -> int:
    return run_command("distill", argv, validate, run)
