"""The settings of one benchmark run and how it is run, for ``scripts/bench_grpo_vs_trl.py``: ``RunSpec`` (what both
systems of a comparison are configured with), the two mirror-image translations of it (``ours_overrides`` for ``rlvr
grpo``, ``trl_config_kwargs`` for ``trl.GRPOConfig``), the environment every run gets, and the orchestration that
starts one run in a fresh subprocess and reads its result back (our metrics.jsonl, the TRL worker's result.json).
It also turns the command line's ``--model`` into a folder (``resolve_model``) and its arguments into a ``RunSpec``
(``base_spec``). Nothing here imports ``bench_grpo_vs_trl``; that script and ``bench_trl_worker`` import from here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
# the TRL worker is the benchmark script itself run with --worker trl (as its docstring says), not this module
BENCH_SCRIPT = Path(__file__).resolve().parent / "bench_grpo_vs_trl.py"


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
    micro_batch: int = 0  # completions per forward/backward (0 = all B*G at once); TRL: per-device batch x accumulation
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
        "grpo.updates_per_batch=1", f"grpo.micro_batch_size={micro_batch(spec)}",
        f"grpo.rollout_batch_size={spec.prompts * spec.group}", f"grpo.max_train_prompts={spec.train_prompts}",
        "grpo.eval_every=0", "grpo.budget_eval_every=0", "grpo.save_every=0", "grpo.resume=false",
        "grpo.num_samples_to_log=0",
        f"grpo.threads={spec.threads}", "grpo.mixed_precision=no", f"rewards.num_workers={spec.reward_workers}",
        f"seed={spec.seed}", "logger=none", f"output_dir={spec.out_dir}",
    ]


def micro_batch(spec: RunSpec) -> int:
    """Completions per forward/backward; B*G must be a multiple of it (checked here, for both sides alike)."""
    total = spec.prompts * spec.group
    micro = spec.micro_batch or total
    if total % micro:
        raise SystemExit(f"--micro-batch {micro}: B*G = {spec.prompts} x {spec.group} = {total} is not a multiple of "
                         f"it; pick a divisor of {total}")
    return micro


def trl_config_kwargs(spec: RunSpec) -> dict[str, Any]:
    """``trl.GRPOConfig`` arguments for ``spec`` (the mirror image of ``ours_overrides``)."""
    return dict(
        output_dir=str(Path(spec.out_dir) / "trainer"),
        max_steps=spec.steps,
        # completions per optimizer step = B prompts x G, in (B*G / micro) accumulated micro-batches; TRL generates the
        # whole B*G batch once per optimizer step (generation_batch_size = per-device batch x accumulation)
        per_device_train_batch_size=micro_batch(spec),
        num_generations=spec.group,
        gradient_accumulation_steps=spec.prompts * spec.group // micro_batch(spec),
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
        cmd = [sys.executable, str(BENCH_SCRIPT), "--worker", "trl", "--spec", str(spec_path)]
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


# =============================================================================================== from the command line
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


def base_spec(args, engine: str, model: str) -> RunSpec:
    return RunSpec(system="ours", engine=engine, model=model, out_dir="", steps=args.steps, prompts=args.prompts,
                   group=args.group, micro_batch=args.micro_batch, max_new_tokens=args.max_new_tokens, lr=args.lr,
                   temperature=args.temperature,
                   lr_scheduler=args.lr_scheduler, warmup_steps=args.warmup_steps,
                   verifiers=tuple(v.strip() for v in (args.verifiers or "").split(",") if v.strip()),
                   threads=args.threads, seed=args.seed,
                   train_prompts=args.train_prompts or args.steps * args.prompts,
                   reward_workers=args.reward_workers, trl_vllm_patch=args.trl_vllm_patch,
                   ours_extra=tuple(args.ours_override or ()), arith=args.arith)
