"""``rlvr grpo`` beside TRL's ``GRPOTrainer``: step time (``--mode speed``) and learning (``--mode accuracy``).

    # step time, both rollout engines, K=3 alternating rounds of 6 steps (first step of each run = warm-up)
    OMP_NUM_THREADS=2 python scripts/bench_grpo_vs_trl.py --mode speed [--engines hf,vllm] [--rounds 3] [--steps 6]
        [--model runs/sft/final | smollm2-135m | tiny] [--prompts 8 --group 8 --max-new-tokens 256]
        [--out runs/bench_grpo_vs_trl]
    # learning: both from one SFT checkpoint, same budget, then greedy held-out accuracy per operation count
    OMP_NUM_THREADS=2 python scripts/bench_grpo_vs_trl.py --mode accuracy --model runs/sft/final [--steps 100]
        [--lr 3e-5] [--trl-lr 3e-5] [--eval-problems 200]

What runs
---------
Every run is a fresh subprocess (so runs cannot share warm caches, allocator state or a vLLM engine):
- ours: ``python -m rlvr.cli grpo ...`` (the real command line; the overrides are in ``ours_overrides``);
- TRL: this script with ``--worker trl`` -> ``trl.GRPOTrainer`` (``trl_config_kwargs``), the same prompts in the
  same order, a reward function that calls the same reward runtime (``rlvr.rewards.runtime.RewardRuntime``: our ``math``
  verifier in its process pool, ``rewards.num_workers`` = ``--reward-workers`` on both sides).

Identical on both sides: the model folder (default: the embedded tiny model built by ``rlvr.models``; or
``--model``: a folder, or ``tiny`` / ``smollm2-135m`` resolved by ``rlvr.models.resolve_model_source`` as
``model=<name>`` is, SmolLM2's packaged GGUF converted once into a cached plain HF folder), fp32 on CPU, the
tokenizer and its chat template, the ``arith`` train prompts in our PromptStream order (TRL with
``shuffle_dataset=False``), B prompts x G completions per optimizer step (TRL: ``per_device_train_batch_size =
B*G``, ``num_generations = G``, ``gradient_accumulation_steps = 1``), one
generation round and one optimizer step per batch (``num_iterations = 1`` / ``updates_per_batch = 1``; our dynamic
sampling off), max new tokens, temperature 1.0 / top-p 1 / no top-k, no KL (beta 0, no reference model),
constant LR (same value), AdamW(0.9, 0.99, eps 1e-8, no weight decay, torch implementation), grad clip 1.0, the
whole batch in one forward/backward (our ``grpo.micro_batch_size = B*G``), no gradient checkpointing (TRL turns it
on by default), seed 0, the same torch thread count (``--threads``; default ``$OMP_NUM_THREADS`` or every CPU this
process may use) and, with vLLM, the same engine settings (``enforce_eager``, fp32, prefix caching,
``VLLM_CPU_KVCACHE_SPACE=1``, OMP threads bound to the first ``--threads`` CPUs, engine core in-process).

The loss: TRL 1.16's default ``loss_type="dapo"`` (token-mean over the batch, symmetric clip eps 0.2, group-std
scaling, no KL) is our ``algo=dapo`` preset with ``algo.clip_high=0.2 algo.dynamic_sampling=false
algo.overlong=none``: the closest preset, with every knob that differs set to TRL's value. With one update per
batch the ratio is 1 and the clip never acts, so the two objectives give the same gradient up to the
std convention below.

What is timed (``--mode speed``)
--------------------------------
A step = take the prompts, sample B*G completions, score them, advantages, forward/backward, clip, AdamW step,
weight sync to the rollout engine (vLLM), build the step's metrics. Ours: ``time/step`` from the run's
metrics.jsonl (``perf_counter`` from the top of the loop body to the end of the metrics row, before it is written).
TRL: a ``TrainerCallback`` from ``on_step_begin`` to ``on_step_end`` (``perf_counter``), which spans
``training_step`` (generation, the vLLM weight sync, rewards, loss, backward) plus clipping, ``optimizer.step``
and the scheduler; the Trainer's logging after ``on_step_end`` is not counted, as our metrics.jsonl write is not.
TRL's own ``step_time`` metric (``training_step`` only, without the optimizer step) is recorded beside it.
Each run's first ``--warmup`` steps are dropped (first-call costs: kernel selection, vLLM's first batch). A
system's figure is the median over its rounds of each run's median step time; ``ours/TRL`` is that ratio, and
the per-round paired ratios are reported too (runs of a round are adjacent in time, so they share the machine's
load). Rounds alternate the order (ours first in even rounds, TRL first in odd: A B B A ...) so a drifting load
does not favour one side. Phases: ours from ``time/<phase>``; TRL by timing ``_generate_single_turn``
(rollout), ``vllm_generation.sync_weights`` (sync) and ``_calculate_rewards`` (reward) in the worker.

Throughput (``--mode speed``), per step, then like step times (warm-up dropped, median per run, median over rounds):
- rollout tokens/s: generated (completion) tokens / rollout seconds. Tokens: mean completion length x B*G (ours
  ``completion/length_mean``, TRL ``completions/mean_length``); seconds: the rollout phase above (TRL's without
  its weight sync).
- update FLOP/s: 6 x trainable parameters x (prompt + completion tokens of the step's B*G sequences) / update
  seconds (``bench_report.FLOPS_FORMULA``): the dense matmuls' forward (2 FLOPs per parameter per token) and
  backward (4), LM head included, tied embeddings counted once. It ignores attention's score/value FLOPs,
  padding (both sides pad; ours cuts micro-batches to length) and recompute (none here: no gradient
  checkpointing), and counts each prompt G times although ours runs a group's shared prompt once
  (``rlvr.algo.logprobs``): the same nominal work on both sides, so a higher figure = the same batch done faster.
  Update seconds: ours ``time/update`` (zero_grad, forward, backward, clip, AdamW, scheduler); TRL from
  ``_prepare_inputs`` returning to ``on_step_end`` (``compute_loss``, backward, clip, AdamW, scheduler, zero_grad).
  Prompt tokens: both sides' prompt order tokenised with our chat template (``step_prompt_tokens``); TRL's own count
  (differences of its cumulative ``num_tokens`` minus completion tokens) is kept as ``prompt_tokens_trl``.
- the machine's ceiling: ``scripts/bench_peak_flops.py`` (fp32 ``torch.matmul`` 2048x2048, same threads and
  environment, median of 9 calls) in a fresh subprocess before and after the runs; the report gives their median in
  GFLOP/s and each update's share of it.

``--mode accuracy``
-------------------
One run each (``--steps``, default 100) from ``--model``, then greedy held-out accuracy per operation count
(``rlvr.eval.heldout.evaluate_heldout`` on ``default_eval_splits``: test_ops1..4, the same ``--eval-problems``
problems, ``--eval-max-new-tokens``, judged by the ``math`` verifier) for the start model and both results. Also
the fraction of zero-reward-std groups per step: TRL's logged ``frac_reward_zero_std``, our
``groups/zero_std_frac``, and mean reward per step.

Output (``--out``, default runs/bench_grpo_vs_trl/; written by scripts/bench_report.py): ``speed.json`` /
``accuracy.json`` (everything, including per-step times and errors), ``speed.md`` / ``accuracy.md`` (tables),
``speed.png`` / ``accuracy.png``, and ``logs/`` with every subprocess's output, ``runs/`` with the run directories.

Differences that remain (by construction)
-----------------------------------------
- Advantage std: ours divides by the population std (+eps 1e-6), TRL by the n-1 std (+1e-4): TRL's advantages are
  sqrt((G-1)/G) = 0.94x ours for G=8; with AdamW this barely changes the update.
- Random streams differ (sampling seeds, vLLM seed), so completions differ; completion lengths, and so rollout
  time, are equal only in distribution. Medians over several steps and rounds absorb this.
- HF engine: ours records the sampler's log-prob of every sampled token (a logits processor: one log-softmax
  per decoding step, for the sampler/trainer mismatch metrics); TRL's HF path records none. That cost is ours.
- TRL on vLLM: its default importance-sampling correction (an extra no-grad forward pass per step) is turned off
  (``vllm_importance_sampling_correction=False``) because ours runs without TIS (``algo.tis=false``). TRL
  builds its engine from the checkpoint folder, sends each prompt G times with n=1 (ours: once with n=G; both
  share the prompt's KV blocks through prefix caching), caps ``max_num_seqs`` at B*G and
  ``max_num_batched_tokens`` at 4096 (ours: vLLM's defaults), and syncs at the start of a step (ours: after the
  update; both inside the timed step). As shipped, TRL's colocated engine on vllm-cpu is bf16 and compiled, and
  its weight sync crashes on an fp32 engine; ``--trl-vllm-patch auto`` (default) fixes both, ``none`` runs TRL
  untouched (see ``patch_trl_vllm`` in scripts/bench_trl_worker.py, TRL's side of the benchmark). TRL 1.16 warns
  that it supports vLLM 0.22-0.31 (0.32 is installed).
- TRL tokenises prompts with ``apply_chat_template(tokenize=True)``, ours renders text then tokenises; the worker
  checks that the ids are equal for the first prompt and records the result (``prompt_ids_match``).

Caveats: on the shared 2-core CPU timings are noisy (other jobs, thermal state); trust medians over alternating
rounds and the paired ratios, not single steps, and run it on a quiet machine with ``--threads`` = the cores.
Each run records the 1-minute load average before and after it (``loadavg_1min``; summarised under the
speed table): far above ``--threads`` means other jobs competed. vLLM engine starts (~10-45 s) are outside the
step time. The tiny model makes the fixed per-step overheads
(Python, tokenisation, reward IPC, optimizer) a large share of a step; on a real model the rollout dominates.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

# the report side (statistics, tables, plots); the markdown builders are re-exported for the unit tests
from bench_report import (FLOPS_FORMULA, SYSTEMS, TARGET_RATIO, accuracy_markdown, fmt, measured,  # noqa: F401
                          median, peak_gflops, plot_accuracy, plot_speed, speed_markdown, summarize_speed,
                          throughput_series, update_flops, write_outputs)

REPO = Path(__file__).resolve().parents[1]


# =============================================================================================== settings
@dataclass
class RunSpec:
    """Everything one run (ours or TRL) is configured with; identical for both systems of a comparison."""

    system: str  # "ours" | "trl"
    engine: str  # "hf" | "vllm"
    model: str  # model folder (both sides load the same one)
    out_dir: str
    steps: int
    prompts: int = 8  # B
    group: int = 8  # G
    max_new_tokens: int = 64
    lr: float = 3e-5
    temperature: float = 1.0
    lr_scheduler: str = "constant"  # transformers scheduler name (both sides call transformers' get_scheduler)
    warmup_steps: int = 0
    verifiers: tuple[str, ...] = ()  # reward verifiers (weight 1 each, summed); empty = the task's default (math)
    threads: int = 1
    seed: int = 0
    train_prompts: int = 64  # first N prompts of the arith train split (our PromptStream shuffles them)
    reward_workers: int = 2
    save_final: bool = False  # accuracy mode: keep <out_dir>/final
    trl_vllm_patch: str = "auto"  # see --trl-vllm-patch
    ours_extra: tuple[str, ...] = ()  # accuracy mode: `rlvr grpo` overrides that replace the TRL-mirroring ones
    arith: dict[str, Any] = field(default_factory=dict)  # task.arith knobs (--arith), e.g. {"min_ops": 3}


def arith_task_config(knobs: dict[str, Any], verifiers: Sequence[str] = ()):
    """The arith task both sides train on (and every eval reads): the defaults plus ``--arith`` knobs."""
    from rlvr.config import TaskConfig
    from rlvr.config.sections import ArithConfig

    return TaskConfig(name="arith", verifiers=list(verifiers), arith=ArithConfig(**knobs))


def parse_arith_knobs(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``--arith min_ops=3`` pairs -> {"min_ops": 3}; an unknown knob or a value that is not JSON is an error here,
    not in a child process minutes later."""
    from dataclasses import fields

    from rlvr.config.sections import ArithConfig

    known = {f.name for f in fields(ArithConfig)}
    knobs: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or key not in known:
            raise SystemExit(f"--arith {pair!r}: expected KNOB=VALUE with KNOB one of {sorted(known)}")
        try:
            knobs[key] = json.loads(value)
        except json.JSONDecodeError:
            raise SystemExit(f"--arith {pair!r}: {value!r} is not a number or JSON list") from None
    ArithConfig(**knobs)
    return knobs


def default_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_bind_list(threads: int) -> str:
    """The first ``threads`` CPUs this process may use, in vLLM's bind syntax ("0,1")."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        cpus = list(range(os.cpu_count() or 1))
    return ",".join(str(c) for c in cpus[:max(1, threads)])


def child_env(threads: int) -> dict[str, str]:
    """The environment of every run: same threads, same vLLM-on-CPU settings for both systems."""
    env = dict(os.environ)
    env.update({
        "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        # rlvr.rollout.vllm_engine's defaults, made explicit so TRL's engine gets exactly the same
        "VLLM_CPU_KVCACHE_SPACE": env.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        "VLLM_CPU_OMP_THREADS_BIND": cpu_bind_list(threads),
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # engine core in this process: both sides sync weights in-process
    })
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def ours_overrides(spec: RunSpec) -> list[str]:
    """``rlvr grpo`` overrides for ``spec``: TRL's default loss and every knob set to TRL's configuration, then
    ``spec.ours_extra`` (``--ours-override``, accuracy mode), each replacing the mirrored override of its key."""
    extra = {o.split("=", 1)[0] for o in spec.ours_extra}
    return [o for o in _mirrored_overrides(spec) if o.split("=", 1)[0] not in extra] + list(spec.ours_extra)


def _mirrored_overrides(spec: RunSpec) -> list[str]:
    return [
        f"model.name_or_path={spec.model}", "model.dtype=float32", "task=arith",
        # TRL 1.16 default loss_type="dapo": token-mean, clip 0.2/0.2, group std, no KL, no filtering/shaping
        "algo=dapo", "algo.clip_low=0.2", "algo.clip_high=0.2", "algo.kl_beta=0.0", "algo.dynamic_sampling=false",
        "algo.overlong=none", "algo.std_scaling=group", "algo.tis=false",
        f"rollout={spec.engine}",
        f"grpo.max_steps={spec.steps}", f"grpo.prompts_per_step={spec.prompts}", f"grpo.group_size={spec.group}",
        f"grpo.max_new_tokens={spec.max_new_tokens}", f"grpo.temperature={spec.temperature}", "grpo.top_p=1.0",
        f"grpo.learning_rate={spec.lr}", f"grpo.lr_scheduler={spec.lr_scheduler}",
        f"grpo.warmup_steps={spec.warmup_steps}",
        *([f"task.verifiers=[{','.join(spec.verifiers)}]"] if spec.verifiers else []),
        *[f"task.arith.{k}={json.dumps(v)}" for k, v in spec.arith.items()],
        "grpo.weight_decay=0.0", "grpo.adam_beta1=0.9", "grpo.adam_beta2=0.99", "grpo.max_grad_norm=1.0",
        "grpo.updates_per_batch=1", f"grpo.micro_batch_size={spec.prompts * spec.group}",
        f"grpo.rollout_batch_size={spec.prompts * spec.group}", f"grpo.max_train_prompts={spec.train_prompts}",
        "grpo.eval_every=0", "grpo.budget_eval_every=0", "grpo.save_every=0", "grpo.resume=false",
        "grpo.num_samples_to_log=0",
        f"grpo.threads={spec.threads}", "grpo.mixed_precision=no", f"rewards.num_workers={spec.reward_workers}",
        f"seed={spec.seed}", "logger=none", f"output_dir={spec.out_dir}",
    ]


def trl_config_kwargs(spec: RunSpec) -> dict[str, Any]:
    """``trl.GRPOConfig`` arguments for ``spec`` (the mirror image of ``ours_overrides``)."""
    return dict(
        output_dir=str(Path(spec.out_dir) / "trainer"),
        max_steps=spec.steps,
        per_device_train_batch_size=spec.prompts * spec.group,  # completions per step = B prompts x G
        num_generations=spec.group,
        gradient_accumulation_steps=1,
        num_iterations=1,
        max_completion_length=spec.max_new_tokens,
        temperature=spec.temperature, top_p=1.0, top_k=0, min_p=None, repetition_penalty=1.0,
        learning_rate=spec.lr, lr_scheduler_type=spec.lr_scheduler, warmup_steps=spec.warmup_steps,
        weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.99, adam_epsilon=1e-8, optim="adamw_torch",
        max_grad_norm=1.0,
        beta=0.0, loss_type="dapo", epsilon=0.2, epsilon_high=0.2, scale_rewards="group",
        mask_truncated_completions=False,
        bf16=False, fp16=False, use_cpu=True,
        gradient_checkpointing=False,
        logging_steps=1, report_to=[], save_strategy="no", disable_tqdm=True, log_completions=False,
        seed=spec.seed, data_seed=spec.seed, shuffle_dataset=False, dataloader_num_workers=0,
        use_vllm=spec.engine == "vllm", vllm_mode="colocate", vllm_importance_sampling_correction=False,
        vllm_enable_sleep_mode=False,
    )


# =============================================================================================== our side
def read_metrics(path: Path) -> list[dict]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return sorted(rows, key=lambda r: r.get("step", 0))


def ours_result(rows: list[dict]) -> dict[str, Any]:
    """Step times, phases and learning signals from our metrics.jsonl rows."""
    step_times = [r["time/step"] for r in rows if "time/step" in r]
    phases: dict[str, list[float]] = {"rollout": [], "reward": [], "sync": [], "other": []}
    for r in rows:
        if "time/step" not in r:
            continue
        parts = {p: r.get(f"time/{p}", 0.0) for p in ("rollout", "reward", "sync")}
        for p, v in parts.items():
            phases[p].append(v)
        phases["other"].append(r["time/step"] - sum(parts.values()))
    return {
        "step_times": step_times, "phases": phases,
        "update_time": [r.get("time/update") for r in rows if "time/step" in r],
        "zero_std_frac": [r.get("groups/zero_std_frac") for r in rows],
        "reward": [r.get("reward/mean") for r in rows],
        "completion_length": [r.get("completion/length_mean") for r in rows if "time/step" in r],
    }


# =============================================================================================== run orchestration
def run_subprocess(cmd: list[str], log_path: Path, env: dict[str, str], timeout: float) -> tuple[int, float, str]:
    """(exit code, wall seconds, last lines of output); output goes to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log_path.open("w") as log:
        log.write("$ " + " ".join(cmd) + "\n\n")
        log.flush()
        try:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = 124
    wall = time.perf_counter() - start
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
    return code, wall, tail


def run_one(spec: RunSpec, logs_dir: Path, timeout: float, tag: str) -> dict[str, Any]:
    """Run one system (a fresh subprocess) and return its result row (``error`` set when it failed)."""
    env = child_env(spec.threads)
    log_path = logs_dir / f"{tag}.log"
    load_before = load_average()
    shutil.rmtree(spec.out_dir, ignore_errors=True)  # a fresh run: no metrics, result or model of an earlier one
    Path(spec.out_dir).mkdir(parents=True, exist_ok=True)
    if spec.system == "ours":
        cmd = [sys.executable, "-m", "rlvr.cli", "grpo", *ours_overrides(spec)]
        code, wall, tail = run_subprocess(cmd, log_path, env, timeout)
        row = ours_result(read_metrics(Path(spec.out_dir) / "metrics.jsonl"))
        if spec.save_final:
            row["final"] = str(Path(spec.out_dir) / "final")
    else:
        spec_path = Path(spec.out_dir) / "spec.json"
        result_path = Path(spec.out_dir) / "result.json"
        result_path.unlink(missing_ok=True)
        spec_path.write_text(json.dumps(asdict(spec), indent=2))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "trl", "--spec", str(spec_path)]
        code, wall, tail = run_subprocess(cmd, log_path, env, timeout)
        row = json.loads(result_path.read_text()) if result_path.exists() else {}
    row.update({"system": spec.system, "engine": spec.engine, "exit_code": code, "wall_s": wall,
                "log": str(log_path), "out_dir": spec.out_dir, "loadavg_1min": [load_before, load_average()]})
    reason = row.get("error") or ("timed out" if code == 124 else f"exit code {code}")
    if len(row.get("step_times") or []) < spec.steps or (code != 0 and spec.save_final):
        row["error"] = f"{reason} (last output: see {log_path})"
        row["output_tail"] = tail
    elif code != 0:  # every step was timed; it died after them (e.g. killed while saving final/): times stand
        row["warning"] = f"{reason} after its last step (see {log_path})"
    return row


def load_average() -> float | None:
    """1-minute load average (includes this benchmark's own run); far above --threads = a contended machine."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def progress_bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def env_info() -> dict[str, Any]:
    info: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    for name in ("torch", "transformers", "trl", "vllm", "accelerate"):
        try:
            from importlib.metadata import version

            info[name] = version(name if name != "vllm" else "vllm-cpu")
        except Exception:
            try:
                info[name] = version(name)
            except Exception:
                info[name] = None
    return info


MODEL_NAMES = ("tiny", "smollm2-135m")  # --model names resolved through rlvr.models (like `model=<name>`)


def resolve_model(path: str | None) -> str:
    """The model folder both sides load: ``--model`` as a folder, or a name in ``MODEL_NAMES`` resolved by
    ``rlvr.models.resolve_model_source`` (tiny: built and cached; smollm2-135m: the packaged GGUF converted once into
    a cached plain HF folder); default the tiny model."""
    from rlvr.config import ModelConfig
    from rlvr.models import resolve_model_source

    if path:
        p = Path(path).expanduser()
        if (p / "config.json").exists():
            return str(p.resolve())
        if path in MODEL_NAMES:
            return str(Path(resolve_model_source(ModelConfig(name=path))[0]).resolve())
        raise SystemExit(f"--model {path}: neither a model folder (no config.json there; e.g. runs/sft/final) nor one "
                         f"of the names {', '.join(MODEL_NAMES)}")
    return resolve_model_source(ModelConfig())[0]  # builds + caches the tiny model on first use


def trainable_parameters(folder: str) -> int:
    """Parameters of the model in ``folder`` (tied embeddings once), built on the meta device: no weights read.
    Both sides train every parameter (full fine-tuning); with ``model.add_think_tokens=true`` (off by default) ours
    would add 2 thinking-tag rows to the embeddings, ~0.001% of SmolLM2's, not counted."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    return sum(p.numel() for p in model.parameters())


def step_prompt_tokens(spec: RunSpec) -> list[int]:
    """Prompt tokens of each step's B*G sequences (each prompt counted G times), from both sides' prompt order (our
    PromptStream over the first ``train_prompts`` arith train prompts, as ``bench_trl_worker`` feeds TRL) and our
    chat-template rendering (the TRL worker checks TRL's ids equal ours: ``prompt_ids_match``)."""
    from rlvr.config import ModelConfig
    from rlvr.models import load_tokenizer
    from rlvr.rollout.prompts import render_prompt
    from rlvr.tasks import build_task
    from rlvr.train.loop_parts import PromptStream

    tokenizer = load_tokenizer(ModelConfig(name_or_path=spec.model, dtype="float32"))
    task = build_task(arith_task_config(spec.arith, spec.verifiers))
    samples = PromptStream(task.samples("train", limit=spec.train_prompts), seed=spec.seed).take(
        spec.steps * spec.prompts)
    lengths = [len(render_prompt(tokenizer, s.prompt)) for s in samples]
    return [spec.group * sum(lengths[k * spec.prompts:(k + 1) * spec.prompts]) for k in range(spec.steps)]


def trl_step_tokens(logs: list[dict]) -> list[float]:
    """TRL's prompt + completion tokens per step: differences of its cumulative ``num_tokens`` log."""
    seen = [row["num_tokens"] for row in logs if "num_tokens" in row]
    return [b - a for a, b in zip([0.0] + seen[:-1], seen)]


def add_throughput(row: dict[str, Any], spec: RunSpec, prompt_tokens: list[int] | None, params: int | None) -> None:
    """Per-step completion/prompt tokens, rollout tokens/s and update GFLOP/s into a run's result row."""
    n = spec.prompts * spec.group
    row["completion_tokens"] = [None if x is None else x * n for x in row.get("completion_length") or []]
    row["prompt_tokens"] = prompt_tokens
    if spec.system == "trl":
        totals = trl_step_tokens(row.get("logs") or [])
        row["prompt_tokens_trl"] = [t - c for t, c in zip(totals, row["completion_tokens"]) if c is not None]
    row["step_tokens"] = [None if c is None or prompt_tokens is None or i >= len(prompt_tokens)
                          else c + prompt_tokens[i] for i, c in enumerate(row["completion_tokens"])]
    row.update(throughput_series(row["completion_tokens"], prompt_tokens, (row.get("phases") or {}).get("rollout"),
                                 row.get("update_time"), params))


PEAK_SIZE, PEAK_REPEATS = 2048, 9  # bench_peak_flops.py's matmul size and calls per measurement


def measure_peak(threads: int, logs_dir: Path, when: str, timeout: float = 300) -> dict[str, Any]:
    """``scripts/bench_peak_flops.py`` in a fresh subprocess with the runs' environment: fp32 matmul GFLOP/s."""
    cmd = [sys.executable, str(Path(__file__).resolve().parent / "bench_peak_flops.py"), "--threads", str(threads),
           "--size", str(PEAK_SIZE), "--repeats", str(PEAK_REPEATS), "--json"]
    code, _wall, tail = run_subprocess(cmd, logs_dir / f"peak_{when}.log", child_env(threads), timeout)
    for line in reversed(tail.splitlines()):
        if line.startswith("{"):
            return {**json.loads(line), "when": when, "loadavg_1min": load_average()}
    return {"when": when, "error": f"exit code {code}: {tail[-300:]}"}


def base_spec(args, engine: str, model: str) -> RunSpec:
    return RunSpec(system="ours", engine=engine, model=model, out_dir="", steps=args.steps, prompts=args.prompts,
                   group=args.group, max_new_tokens=args.max_new_tokens, lr=args.lr, temperature=args.temperature,
                   lr_scheduler=args.lr_scheduler, warmup_steps=args.warmup_steps,
                   verifiers=tuple(v.strip() for v in (args.verifiers or "").split(",") if v.strip()),
                   threads=args.threads, seed=args.seed,
                   train_prompts=args.train_prompts or args.steps * args.prompts,
                   reward_workers=args.reward_workers, trl_vllm_patch=args.trl_vllm_patch,
                   ours_extra=tuple(args.ours_override or ()), arith=args.arith)


# ----------------------------------------------------------------------------------------------- speed
def speed_mode(args, out: Path) -> dict[str, Any]:
    from rich.console import Console

    console = Console()
    model = resolve_model(args.model)
    warmup = args.warmup
    if warmup >= args.steps:
        warmup = max(args.steps - 1, 0)
        console.print(f"[yellow]--warmup {args.warmup} >= --steps {args.steps}: dropping {warmup} step(s)[/yellow]")
    base = base_spec(args, args.engines[0], model)
    params, prompt_tokens = trainable_parameters(model), step_prompt_tokens(base)
    result: dict[str, Any] = {"mode": "speed", "env": env_info(), "settings": {
        "model": model, "model_arg": args.model, "trainable_params": params, "flops_formula": FLOPS_FORMULA,
        "prompt_tokens_per_step": prompt_tokens, "prompts": args.prompts, "group": args.group,
        "max_new_tokens": args.max_new_tokens,
        "lr": args.lr, "steps": args.steps, "warmup": warmup, "rounds": args.rounds, "threads": args.threads,
        "reward_workers": args.reward_workers, "seed": args.seed, "engines": args.engines}, "engines": {}}
    result["peak"] = {"size": PEAK_SIZE, "measurements": []}
    plan = [(engine, k, system) for engine in args.engines for k in range(args.rounds)
            for system in (SYSTEMS if k % 2 == 0 else SYSTEMS[::-1])]

    def peak(when: str, console) -> None:
        m = measure_peak(args.threads, out / "logs", when)
        result["peak"]["measurements"].append(m)
        console.print(f"matmul peak ({when}): " + (f"{m['gflops']:.1f} GFLOP/s" if "gflops" in m else m["error"]))

    with progress_bar() as progress:
        bar = progress.add_task("speed", total=len(plan))
        progress.update(bar, description="fp32 matmul peak")
        peak("before", progress.console)
        for engine, k, system in plan:
            e = result["engines"].setdefault(engine, {"runs": []})
            progress.update(bar, description=f"{engine} round {k + 1}/{args.rounds}: {system}")
            tag = f"speed_{engine}_r{k}_{system}"
            spec = replace(base_spec(args, engine, model), system=system, out_dir=str(out / "runs" / tag))
            row = run_one(spec, out / "logs", args.run_timeout, tag)
            row["round"] = k
            add_throughput(row, spec, prompt_tokens, params)
            e["runs"].append(row)
            if row.get("error"):
                progress.console.print(f"[red]{tag} failed[/red]: {row['error']}\n{row.get('output_tail', '')[-1500:]}")
            else:
                m = median(measured(row["step_times"], warmup))
                progress.console.print(f"{tag}: median {m:.3f} s/step over {len(measured(row['step_times'], warmup))}"
                                       f" step(s)  (all: {', '.join(f'{t:.2f}' for t in row['step_times'])})"
                                       + (f"  prompt ids match: {row['prompt_ids_match']}"
                                          if "prompt_ids_match" in row else "")
                                       + f"  load {row['loadavg_1min']}"
                                       + f"\n  rollout {median(measured(row['rollout_tokens_per_s'], warmup)):.1f}"
                                       f" tok/s, update {median(measured(row['update_gflops'], warmup)):.2f} GFLOP/s")
            e["summary"] = summarize_speed(e["runs"], warmup)
            write_outputs(out, "speed", result)
            progress.advance(bar)
        peak("after", progress.console)
        write_outputs(out, "speed", result)
    for engine, e in result["engines"].items():
        sm = e["summary"]
        console.print(f"[bold]{engine}[/bold]: ours {fmt(sm['ours']['median'])} s/step, TRL {fmt(sm['trl']['median'])}"
                      f" s/step, ours/TRL = {fmt(sm['ratio'], 2)} (target <= {TARGET_RATIO}); rollout tok/s ours "
                      f"{fmt(sm['ours']['rollout_tokens_per_s'], 1)} / TRL {fmt(sm['trl']['rollout_tokens_per_s'], 1)}"
                      f"; update GFLOP/s ours {fmt(sm['ours']['update_gflops'], 2)} / TRL "
                      f"{fmt(sm['trl']['update_gflops'], 2)} (matmul peak {fmt(peak_gflops(result), 1)})")
    return result


# ----------------------------------------------------------------------------------------------- accuracy
def evaluate_model(folder: str, args) -> list[dict[str, Any]]:
    import torch

    from rlvr.config import ModelConfig
    from rlvr.eval.heldout import evaluate_heldout
    from rlvr.models import load_model_and_tokenizer
    from rlvr.config import RewardsConfig
    from rlvr.rewards.runtime import eval_runtime
    from rlvr.tasks import build_task

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model_and_tokenizer(ModelConfig(name_or_path=folder, dtype="float32"))
    task = build_task(arith_task_config(args.arith))
    splits = args.eval_splits or task.default_eval_splits()
    runtime = eval_runtime(RewardsConfig())
    try:
        results = evaluate_heldout(model, tokenizer, task, splits, args.eval_problems,
                                   args.eval_max_new_tokens, 200, runtime)
    finally:
        runtime.close()
    return [{"split": r.split, "n": r.n, "accuracy": r.accuracy, "errors": r.errors,
             "mean_completion_tokens": r.mean_completion_tokens} for r in results]


def accuracy_mode(args, out: Path) -> dict[str, Any]:
    from rich.console import Console

    console = Console()
    if not args.model:
        console.print("[yellow]--mode accuracy without --model starts from the untrained tiny model: accuracy "
                      "stays ~0. Give an SFT checkpoint (e.g. runs/sft/final).[/yellow]")
    model = resolve_model(args.model)
    trl_lr = args.trl_lr if args.trl_lr is not None else args.lr
    result: dict[str, Any] = {"mode": "accuracy", "env": env_info(), "settings": {
        "model": model, "prompts": args.prompts, "group": args.group, "max_new_tokens": args.max_new_tokens,
        "lr": args.lr, "trl_lr": trl_lr, "lr_scheduler": args.lr_scheduler, "warmup_steps": args.warmup_steps,
        "verifiers": args.verifiers, "temperature": args.temperature, "steps": args.steps, "warmup": args.warmup,
        "threads": args.threads, "systems": list(args.systems),
        "eval_problems": args.eval_problems, "eval_max_new_tokens": args.eval_max_new_tokens,
        "reward_workers": args.reward_workers, "seed": args.seed, "engines": args.engines,
        "ours_overrides": list(args.ours_override or ()), "arith": args.arith, "eval_splits": args.eval_splits},
        "engines": {}}
    plan = [(engine, step) for engine in args.engines for step in (*args.systems, "eval")]
    start_eval = None
    with progress_bar() as progress:
        bar = progress.add_task("accuracy", total=len(plan) + 1)
        progress.update(bar, description="eval: start model")
        start_eval = evaluate_model(model, args)
        progress.console.print("start: " + "  ".join(f"{r['split']} {100 * r['accuracy']:.1f}%" for r in start_eval))
        progress.advance(bar)
        for engine, step in plan:
            e = result["engines"].setdefault(engine, {"train": {}, "eval": {"start": start_eval}})
            if step in SYSTEMS:
                progress.update(bar, description=f"{engine}: train {step} ({args.steps} steps)")
                tag = f"accuracy_{engine}_{step}"
                spec = replace(base_spec(args, engine, model), system=step, out_dir=str(out / "runs" / tag),
                               lr=args.lr if step == "ours" else trl_lr, save_final=True)
                row = run_one(spec, out / "logs", args.run_timeout, tag)
                e["train"][step] = row
                if row.get("error"):
                    progress.console.print(f"[red]{tag} failed[/red]: {row['error']}\n"
                                           f"{row.get('output_tail', '')[-1500:]}")
            else:
                for system in SYSTEMS:
                    final = e["train"].get(system, {}).get("final")
                    if final and Path(final, "config.json").exists():
                        progress.update(bar, description=f"{engine}: eval {system}")
                        e["eval"][system] = evaluate_model(final, args)
                        progress.console.print(f"{engine} {system}: " + "  ".join(
                            f"{r['split']} {100 * r['accuracy']:.1f}%" for r in e["eval"][system]))
            write_outputs(out, "accuracy", result)
            progress.advance(bar)
    return result


# =============================================================================================== entry point
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mode", choices=("speed", "accuracy"), default="speed")
    p.add_argument("--engines", default=None,
                   help="comma-separated rollout engines: hf, vllm (default: speed hf,vllm; accuracy hf)")
    p.add_argument("--model", default=None, help="model folder (an SFT checkpoint's final/) or a name: tiny, "
                                                  "smollm2-135m (rlvr.models; converted and cached once); default tiny")
    p.add_argument("--rounds", type=int, default=3, help="speed: alternating rounds of (ours, TRL)")
    p.add_argument("--steps", type=int, default=None, help="steps per run (default: speed 6, accuracy 100)")
    p.add_argument("--warmup", type=int, default=1, help="first steps of each run left out of step times")
    p.add_argument("--prompts", type=int, default=8, help="B: prompts per step")
    p.add_argument("--group", type=int, default=8, help="G: completions per prompt")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--lr-scheduler", default="constant", help="transformers scheduler name (both sides)")
    p.add_argument("--warmup-steps", type=int, default=0, help="LR warm-up steps (both sides)")
    p.add_argument("--verifiers", default=None, help="comma-separated reward verifiers, summed, both sides (e.g. "
                                                      "math,arith_steps); default: the task's (math)")
    p.add_argument("--lr", type=float, default=3e-5, help="learning rate (both; TRL's can be set apart)")
    p.add_argument("--trl-lr", type=float, default=None, help="accuracy: TRL's learning rate (default --lr)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default: $OMP_NUM_THREADS "
                                                             "or every CPU this process may use)")
    p.add_argument("--reward-workers", type=int, default=2, help="reward runtime processes (both sides)")
    p.add_argument("--train-prompts", type=int, default=None, help="first N arith train prompts (default steps*B)")
    p.add_argument("--ours-override", action="append", metavar="KEY=VALUE",
                   help="accuracy: an `rlvr grpo` override for our run only (repeatable), replacing the TRL-mirroring "
                        "value of that key, e.g. algo.dynamic_sampling=true to compare recipes, not only step time")
    p.add_argument("--eval-problems", type=int, default=200, help="accuracy: problems per held-out split")
    p.add_argument("--eval-max-new-tokens", type=int, default=96)
    p.add_argument("--eval-splits", default=None, help="accuracy: comma-separated held-out splits (default: the "
                                                       "task's test_ops1..K)")
    p.add_argument("--systems", default="ours,trl", help="accuracy: which sides train (e.g. 'ours' for an extra "
                                                        "seed of ours alone)")
    p.add_argument("--arith", action="append", metavar="KNOB=VALUE",
                   help="task.arith knob for both sides' training prompts (repeatable), e.g. --arith min_ops=3 "
                        "--arith max_ops=4: train RL on harder problems than SFT saw")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-timeout", type=float, default=3600, help="seconds before one run is killed")
    p.add_argument("--trl-vllm-patch", choices=("auto", "none"), default="auto",
                   help="auto: give TRL's vLLM engine our engine settings and a correct CPU weight sync; "
                        "none: TRL exactly as shipped")
    p.add_argument("--out", default="runs/bench_grpo_vs_trl")
    p.add_argument("--worker", choices=("trl",), help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.engines = [e.strip() for e in (args.engines or ("hf,vllm" if args.mode == "speed" else "hf")).split(",")
                    if e.strip()]
    bad = [e for e in args.engines if e not in ("hf", "vllm")]
    if bad:
        p.error(f"unknown engine(s) {bad}; use hf and/or vllm")
    if args.mode == "speed" and args.ours_override:
        p.error("--ours-override is for --mode accuracy: step times are compared at identical settings")
    if args.steps is None:
        args.steps = 6 if args.mode == "speed" else 100
    if args.threads is None:
        args.threads = default_threads()
    args.systems = tuple(x.strip() for x in args.systems.split(",") if x.strip())
    if not args.systems or set(args.systems) - set(SYSTEMS):
        p.error(f"--systems {','.join(args.systems)!r}: choose from {','.join(SYSTEMS)}")
    args.arith = parse_arith_knobs(args.arith)
    args.eval_splits = [x.strip() for x in (args.eval_splits or "").split(",") if x.strip()]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker == "trl":
        spec = RunSpec(**json.loads(Path(args.spec).read_text()))
        result_path = Path(spec.out_dir) / "result.json"
        try:
            from bench_trl_worker import trl_worker  # imports TRL: only in the worker process

            result = trl_worker(spec)
        except BaseException as exc:  # report the exact reason to the parent (e.g. vLLM on CPU)
            result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            result_path.write_text(json.dumps(result, indent=2, default=str))
            traceback.print_exc()
            return 1
        result_path.write_text(json.dumps(result, indent=2, default=str))
        return 0
    out = Path(args.out)
    if args.mode == "speed":
        result = speed_mode(args, out)
        plot_speed(result, out / "speed.png")
    else:
        result = accuracy_mode(args, out)
        plot_accuracy(result, out / "accuracy.png")
    name = args.mode
    write_outputs(out, name, result)
    print(f"wrote {out / (name + '.json')}, {out / (name + '.md')}, {out / (name + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
