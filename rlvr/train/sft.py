"""Cold-start SFT: teach a model the response format (and, on arith, the arithmetic) from reasoning traces.

    rlvr sft model=tiny task=arith output_dir=runs/sft            # defaults: ~5 min on 2 CPU cores
    rlvr sft sft.max_steps=1200 sft.stop_fraction=0.667 ...       # stop mid-schedule: a cold start for GRPO
    rlvr sft model.name_or_path=<folder|hub id> task=gsm8k sft.learning_rate=1e-5 ...

The algorithm, top to bottom:
1. compose + validate the config (every error at once, before any model loads);
2. load the model and tokenizer (model=tiny is built and cached on first use);
3. render each training sample as chat: prompt messages, then the task's worked solution as the assistant turn,
   and pre-tokenize it here into ``input_ids`` + ``labels`` with the prompt masked (-100), so the loss is on
   the assistant turn only and TRL skips its own (slower) dataset preparation;
4. train with TRL's ``SFTTrainer`` (fp32 on CPU, cosine schedule, checkpoints under ``checkpoints/``,
   resumed automatically from the newest one);
5. save ``final/`` (model + tokenizer; with LoRA, ``model.lora.r > 0``: the adapter in ``final/adapter/`` and,
   by default, the merged plain model: ``rlvr.model_lora.save_final``), then decode greedily on the held-out
   splits and report exact-answer accuracy as judged by each sample's primary verifier (``rlvr.eval.heldout``: in
   the reward runtime's pool, ``rewards.*``), per split, to the console, ``metrics.jsonl``, ``eval/`` and wandb.

LoRA (``model.lora.r=8 ...``, docs/lora.md): the model is wrapped with peft adapters after loading, so only the
adapters (and the rows of thinking tags added as new tokens) train; TRL's checkpoints then hold the adapter, and
the resume above loads it back.

Departures from the usual recipe: sequences are not packed (they are short and similar in length, so padding
costs little and packing would leak attention across samples without flash-attention varlen on CPU).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rlvr.config.loading import Problem, default_output_dir, positive, run_command
from rlvr.model_lora import lora_problems


def validate(cfg: DictConfig) -> list[Problem]:
    problems = positive(cfg, "sft.max_steps", "sft.learning_rate", "sft.batch_size", "sft.max_length",
                        "sft.gradient_accumulation_steps", "sft.eval_batch_size", "sft.eval_max_new_tokens")
    if cfg.sft.eval_num_problems < 0:
        problems.append(Problem("sft.eval_num_problems", "must be >= 0", "0 skips the held-out evaluation"))
    if not 0 <= cfg.sft.warmup_ratio < 1:
        problems.append(Problem("sft.warmup_ratio", f"must be in [0, 1), got {cfg.sft.warmup_ratio}", "e.g. 0.02"))
    if cfg.sft.train_file and not Path(cfg.sft.train_file).expanduser().is_file():
        problems.append(Problem("sft.train_file", f"{cfg.sft.train_file!r} is not a file",
                                "point it at a jsonl of {'messages': [...]} rows (rlvr distill writes one), "
                                "or unset it"))
    if not 0 < cfg.sft.stop_fraction <= 1:
        problems.append(Problem("sft.stop_fraction", f"must be in (0, 1], got {cfg.sft.stop_fraction}",
                                "1.0 runs the whole schedule; e.g. 0.667 stops at step 800 of 1,200"))
    return problems + lora_problems(cfg.model.lora)


def stop_step(s) -> int:
    """The optimizer step the stage ends at: ``stop_fraction`` of the ``max_steps`` schedule, at least 1."""
    return max(1, min(s.max_steps, round(s.max_steps * s.stop_fraction)))


def tokenize_for_sft(samples, tokenizer, max_length: int) -> list[dict[str, list[int]]]:
    """input_ids = chat(prompt) + solution + <|im_end|>; labels mask the prompt with -100.

    Prompt and completion are encoded separately (in batches, in Rust) and concatenated: the chat template ends
    the prompt with a newline, a pre-tokenizer boundary, so this equals encoding the whole conversation.
    """
    end = tokenizer.eos_token or "<|im_end|>"
    prompts = [tokenizer.apply_chat_template(s.prompt, add_generation_prompt=True, tokenize=False) for s in samples]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer([s.solution + end for s in samples], add_special_tokens=False)["input_ids"]
    return [
        {"input_ids": (p + c)[:max_length], "labels": ([-100] * len(p) + c)[:max_length]}
        for p, c in zip(prompt_ids, completion_ids)
    ]


def newest_checkpoint(folder: Path) -> str | None:
    ckpts = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    ckpts = [c for c in ckpts if (c / "trainer_state.json").exists()]  # a half-written one has no state yet
    return str(ckpts[-1]) if ckpts else None


def trl_args(cfg: DictConfig, out: Path):
    import torch
    from trl import SFTConfig as TRLSFTConfig

    s = cfg.sft
    return TRLSFTConfig(
        output_dir=str(out / "checkpoints"),
        max_steps=s.max_steps,
        per_device_train_batch_size=s.batch_size,
        gradient_accumulation_steps=s.gradient_accumulation_steps,
        learning_rate=s.learning_rate,
        lr_scheduler_type=s.lr_scheduler,
        warmup_steps=int(s.warmup_ratio * s.max_steps),
        weight_decay=s.weight_decay,
        adam_beta2=s.adam_beta2,
        logging_steps=s.logging_steps,
        save_strategy="steps" if s.save_steps else "no",
        save_steps=s.save_steps or s.max_steps,
        save_total_limit=2,
        report_to=[],  # our Tracker logs to metrics.jsonl and wandb with the project's metric names
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and cfg.model.dtype == "bfloat16",  # fp32 is fastest on CPU
        seed=cfg.seed,
        data_seed=cfg.seed,
        max_length=s.max_length,
        gradient_checkpointing=s.gradient_checkpointing,
        dataset_kwargs={"skip_prepare_dataset": True},  # tokenized and masked above
        dataloader_num_workers=0,
    )


def write_eval(output_dir: Path, results, step: int, name: str = "sft_heldout") -> Path:
    """The held-out eval files (``rlvr.eval.heldout.write_eval``; imported there lazily: no torch at import)."""
    from rlvr.eval.heldout import write_eval as write

    return write(output_dir, results, step, name)


def heldout_eval(cfg: DictConfig, model, tokenizer, task, splits: list[str], out: Path, tracker, console) -> list:
    """Greedy held-out accuracy after training (``rlvr.eval.heldout``): printed, written to eval/ and logged."""
    from rlvr.eval.heldout import evaluate_heldout, print_results, write_eval
    from rlvr.rewards.runtime import eval_runtime

    if not splits:
        return []
    s = cfg.sft
    runtime = eval_runtime(cfg.rewards)
    try:
        results = evaluate_heldout(model, tokenizer, task, splits, s.eval_num_problems, s.eval_max_new_tokens,
                                   s.eval_batch_size, runtime, console=console, what="held-out eval after SFT")
    finally:
        runtime.close()
    print_results(results, console, s.num_examples_to_print)
    write_eval(out, results, step=s.max_steps)
    tracker.log({f"heldout/{r.split}/accuracy": r.accuracy for r in results}, step=s.max_steps)
    tracker.log_table("heldout/accuracy", ["split", "n", "accuracy", "mean_tokens"],
                      [[r.split, r.n, r.accuracy, r.mean_completion_tokens] for r in results])
    return results


def load_model(cfg: DictConfig, out: Path, console):
    """(model, tokenizer) for training: ``rlvr.models.load_for_training``, then LoRA adapters when
    ``model.lora.r > 0`` (rows of thinking tags added as new tokens train too) with their start-up save check."""
    from rlvr.model_lora import wrap_for_training
    from rlvr.models import load_for_training, load_tokenizer

    model, tokenizer = load_for_training(cfg.model, cfg.task, out, console.print)
    # The shipped tokenizer tells which tokens load_for_training added (their embedding rows start untrained).
    source = load_tokenizer(cfg.model) if cfg.model.lora.r and cfg.model.add_think_tokens else None
    return wrap_for_training(model, tokenizer, cfg.model.lora, out, console.print, source_tokenizer=source), tokenizer


def save_final_model(cfg: DictConfig, trainer, tokenizer, final_dir: Path):
    """final/: the trained model + tokenizer; a LoRA model as adapter (+ merged model, ``model.lora.merge_final``)."""
    from rlvr.model_lora import is_lora, save_final

    model = trainer.model
    if is_lora(model):
        save_final(model, tokenizer, final_dir, merge=cfg.model.lora.merge_final)
    else:
        trainer.save_model(str(final_dir))
        tokenizer.save_pretrained(str(final_dir))
    return model


def run(cfg: DictConfig) -> int:
    import torch
    from datasets import Dataset
    from rich.console import Console
    from transformers import TrainerCallback, set_seed
    from trl import SFTTrainer

    from rlvr.model_lora import generation_model, trainable_parameter_count
    from rlvr.runs.provenance import dataset_fingerprint, task_datasets, task_source, write_stage_card
    from rlvr.tasks import build_task
    from rlvr.runs.tracking import Tracker

    console = Console()
    started = time.time()
    default_output_dir(cfg, "sft")
    out = Path(cfg.output_dir)
    final_dir = out / "final"
    done_marker = final_dir / "rlvr_sft_done.json"
    s = cfg.sft
    if s.resume and done_marker.exists():
        console.print(f"[yellow]{final_dir} is complete; nothing to do (sft.resume=false retrains)[/yellow]")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    if s.threads:
        torch.set_num_threads(s.threads)
    set_seed(cfg.seed)

    # 1. data: the task's worked solutions, rendered as chat and pre-tokenized with the prompt masked
    task = build_task(cfg.task, data_dir=cfg.data_dir)
    console.print(f"[bold]rlvr sft[/bold]  model={cfg.model.name_or_path or cfg.model.name}  task={task.name}  "
                  f"steps={s.max_steps}  out={out}")
    model, tokenizer = load_model(cfg, out, console)
    if s.train_file:  # e.g. rejection-sampled traces (rlvr distill); the held-out eval below still uses the task
        from rlvr.train.distill import read_sft_file

        samples = read_sft_file(s.train_file, limit=s.max_train_samples)
        source = s.train_file
    else:
        samples = [x for x in task.samples(s.train_split, limit=s.max_train_samples) if x.solution]
        source = f"task {task.name!r} split {s.train_split!r}"
    if not samples:
        console.print(f"[red]{source} has no worked solutions to train on. Fix: pick a task with solutions, set "
                      f"task.solution_column, or give sft.train_file a non-empty jsonl[/red]")
        return 2
    train = Dataset.from_list(tokenize_for_sft(samples, tokenizer, s.max_length))
    trainable, params = trainable_parameter_count(model)
    console.print(f"{len(train)} training sequences, {params / 1e6:.2f}M parameters, {trainable / 1e6:.3f}M of them "
                  "trainable")

    # 2. train, resuming from the newest complete checkpoint of an interrupted run
    resume_from = newest_checkpoint(out / "checkpoints") if s.resume else None
    tracker = Tracker(out, cfg.logger, cfg, job_type="sft",
                      keep_until_step=int(resume_from.rsplit("-", 1)[-1]) if resume_from else None)

    class MetricsCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                tracker.log({"train/loss": logs["loss"], "train/learning_rate": logs.get("learning_rate"),
                             "train/grad_norm": logs.get("grad_norm"),
                             "train/mean_token_accuracy": logs.get("mean_token_accuracy"),
                             "time/elapsed": time.time() - started}, step=state.global_step)

    stop_at = stop_step(s)

    class StopAtStep(TrainerCallback):  # leaves the LR schedule mid-way (sft.stop_fraction)
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= stop_at:
                control.should_training_stop = True

    trainer = SFTTrainer(model=model, args=trl_args(cfg, out), train_dataset=train, processing_class=tokenizer,
                         callbacks=[MetricsCallback(), StopAtStep()])
    if resume_from:
        console.print(f"[yellow]resuming from {resume_from}[/yellow]")
    trainer.train(resume_from_checkpoint=resume_from)
    model = save_final_model(cfg, trainer, tokenizer, final_dir)
    train_seconds = time.time() - started
    console.print(f"saved {final_dir}  ({train_seconds:.0f}s)")

    # 3. held-out greedy accuracy, judged by each sample's primary verifier
    summary: dict[str, float] = {"sft/train_seconds": train_seconds, "sft/trainable_params": trainable}
    splits = (list(s.eval_splits) or task.default_eval_splits()) if s.eval_num_problems > 0 else []
    # A LoRA model is evaluated as trained (adapters active, not the merged copy on disk).
    results = heldout_eval(cfg, generation_model(model), tokenizer, task, splits, out, tracker, console)
    summary |= {f"heldout/{r.split}/accuracy": r.accuracy for r in results}
    summary["sft/wall_seconds"] = time.time() - started
    # 4. run card (provenance.json + RUNCARD.md) in the run dir and next to the weights, + a wandb artifact
    write_stage_card(cfg, "sft", out, tracker=tracker, final_dir=final_dir, console=console,
                     wall_seconds=summary["sft/wall_seconds"], verifiers=task.verifier_specs(),
                     datasets=[dataset_fingerprint(samples, source=s.train_file or task_source(task, s.train_split),
                                                   split=None if s.train_file else s.train_split, role="train")]
                     + task_datasets(task, dict.fromkeys(splits, s.eval_num_problems), role="eval"),
                     eval_table=[{"split": r.split, "n": r.n, "accuracy": r.accuracy, "errors": r.errors,
                                  "mean_completion_tokens": r.mean_completion_tokens} for r in results])
    tracker.summary(summary)
    tracker.close()
    done_marker.write_text(json.dumps(summary, indent=2))  # written last: a crash before here redoes the stage
    console.print(f"done in {summary['sft/wall_seconds']:.0f}s; model: {final_dir}  metrics: {out / 'metrics.jsonl'}")
    return 0


def main(argv: list[str]) -> int:
    return run_command("sft", argv, validate, run)
