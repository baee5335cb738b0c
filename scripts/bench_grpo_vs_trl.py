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
- ours: ``python -m rlvr.cli grpo ...`` (the real command line; the overrides are in ``bench_spec.ours_overrides``);
- TRL: this script with ``--worker trl`` -> ``trl.GRPOTrainer`` (``bench_spec.trl_config_kwargs``), the same
  prompts in the same order, a reward function that calls the same reward runtime
  (``rlvr.rewards.runtime.RewardRuntime``: our ``math`` verifier in its process pool, ``rewards.num_workers`` =
  ``--reward-workers`` on both sides).

Identical on both sides: the model folder (default: the embedded tiny model built by ``rlvr.models``; or
``--model``: a folder, or ``tiny`` / ``smollm2-135m`` resolved by ``rlvr.models.resolve_model_source`` as
``model=<name>`` is, SmolLM2's packaged GGUF converted once into a cached plain HF folder), fp32 on CPU, the
tokenizer and its chat template, the ``arith`` train prompts in our PromptStream order (TRL with
``shuffle_dataset=False``), B prompts x G completions per optimizer step (TRL: ``per_device_train_batch_size =
micro``, ``num_generations = G``, ``gradient_accumulation_steps = B*G / micro``; ``--micro-batch``, default B*G), one
generation round and one optimizer step per batch (``num_iterations = 1`` / ``updates_per_batch = 1``; our dynamic
sampling off), max new tokens, temperature 1.0 / top-p 1 / no top-k, no KL (beta 0, no reference model),
constant LR (same value), AdamW(0.9, 0.99, eps 1e-8, no weight decay, torch implementation), grad clip 1.0, the
same micro-batch (our ``grpo.micro_batch_size = micro``: a micro-batch of B*G completions holds whole groups, so a
smaller one splits them on both sides alike), no gradient checkpointing (TRL turns it
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
  Prompt tokens: both sides' prompt order tokenised with our chat template
  (``bench_throughput.step_prompt_tokens``); TRL's own count (differences of its cumulative ``num_tokens`` minus
  completion tokens) is kept as ``prompt_tokens_trl``.
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

Code, in scripts/ beside this script: this script (the command line, ``--mode speed``, the ``--worker trl`` entry),
bench_spec.py (``RunSpec``, both sides' settings, the runs' environment, starting one run and reading its result),
bench_throughput.py (token counts and parameters for the FLOP/s, the matmul peak), bench_accuracy.py
(``--mode accuracy``), bench_report.py (statistics, tables, plots), bench_trl_worker.py (TRL's side).

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
import sys
import traceback
from dataclasses import asdict, replace  # noqa: F401 - asdict re-exported for the unit tests
from pathlib import Path
from typing import Any, Sequence

# the helpers live beside this script (scripts/ is sys.path[0] when it runs); every name this script had before it
# was split is re-exported here, for the unit tests and for `from bench_grpo_vs_trl import ...`
from bench_accuracy import accuracy_mode, evaluate_model  # noqa: F401
# the report side (statistics, tables, plots); the markdown builders are re-exported for the unit tests
from bench_report import (FLOPS_FORMULA, SYSTEMS, TARGET_RATIO, accuracy_markdown, fmt, measured,  # noqa: F401
                          median, peak_gflops, plot_accuracy, plot_speed, speed_markdown, summarize_speed,
                          throughput_series, update_flops, write_outputs)
from bench_spec import (MODEL_NAMES, REPO, RunSpec, _mirrored_overrides, arith_task_config, base_spec,  # noqa: F401
                        child_env, cpu_bind_list, default_threads, env_info, load_average, ours_overrides, ours_result,
                        parse_arith_knobs, progress_bar, read_metrics, resolve_model, run_one, run_subprocess,
                        trl_config_kwargs)
from bench_throughput import (PEAK_REPEATS, PEAK_SIZE, add_throughput, measure_peak, step_prompt_tokens,  # noqa: F401
                              trainable_parameters, trl_step_tokens)


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
    p.add_argument("--micro-batch", type=int, default=0,
                   help="completions per forward/backward, both sides (ours grpo.micro_batch_size, TRL per-device batch "
                        "with B*G/micro accumulation steps); 0 = all B*G at once (8x8x256 on SmolLM2 needs ~8 in 24 GB)")
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
