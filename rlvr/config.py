"""Every default, once: dataclasses registered in Hydra's ConfigStore.

YAML under ``conf/`` only selects and overrides. Each field's ``help`` says what it trades off. ``compose``
builds a command's config from Hydra overrides and ``validate`` checks it before any model loads, reporting
every problem at once (what, why, fix) as a ``ConfigError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional

from omegaconf import MISSING  # noqa: F401  (re-exported for configs that require a value)


def opt(default: Any = None, help: str = "", factory: Any = None) -> Any:  # noqa: A002 - mirrors argparse
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


# --------------------------------------------------------------------------------------------- model
@dataclass
class TinyModelConfig:
    num_layers: int = opt(4, "transformer layers; 4x128 learns arith on CPU in minutes, 4x256 was 2.4x slower per step")
    hidden_size: int = opt(128, "width; more capacity, slower steps")
    intermediate_size: int = opt(512, "MLP width (4x hidden is the usual ratio)")
    num_heads: int = opt(4, "attention heads (hidden_size must be divisible by it)")
    num_kv_heads: int = opt(2, "key/value heads (grouped-query attention); fewer = smaller KV cache")
    max_position_embeddings: int = opt(512, "longest sequence the model can see; prompts + thinking + answer")
    vocab_size: int = opt(512, "BPE vocabulary target; the arith corpus saturates around 330 (digits stay single tokens)")
    init_seed: int = opt(0, "seed for the random initial weights (part of the cache key)")


@dataclass
class ModelConfig:
    name: str = opt("tiny", "tiny (built locally, cached), smollm2-135m (packaged GGUF, extra 'smollm2'), or any label "
                            "when name_or_path is set")
    name_or_path: Optional[str] = opt(None, "Hugging Face model id or local folder (e.g. a run's final/); overrides name")
    gguf_file: Optional[str] = opt(None, "GGUF file inside name_or_path to load (transformers dequantises it)")
    dtype: str = opt("float32", "float32 | bfloat16 | float16 | auto. fp32 is fastest on CPU; bf16 halves memory on GPU")
    trust_remote_code: bool = opt(False, "run modelling code shipped with a hub model; only for sources you trust")
    cache_dir: Optional[str] = opt(None, "where the tiny model and tokenizer are cached (default: $RLVR_CACHE or ~/.cache/rlvr)")
    tiny: TinyModelConfig = opt(factory=TinyModelConfig, help="architecture of model=tiny")


# ---------------------------------------------------------------------------------------------- task
@dataclass
class ArithConfig:
    seed: int = opt(0, "problem generator seed (held-out problems are fixed by a text hash, not by this seed)")
    min_ops: int = opt(1, "fewest operations in a training problem")
    max_ops: int = opt(3, "most operations in a training problem; harder problems need more thinking tokens")
    max_eval_ops: int = opt(4, "held-out splits test_ops1..test_opsK exist up to this K (beyond max_ops = extrapolation)")
    eval_ops: list[int] = opt(factory=lambda: [1, 2, 3], help="operation counts mixed evenly in the 'test' split")
    value_max: int = opt(99, "running values stay in 0..value_max; up to 999 a 1M-param model learned nothing in 10 min")
    start_min: int = opt(1, "smallest starting value")
    operand_max: int = opt(9, "add/subtract operands are 1..operand_max")
    multiplier_max: int = opt(9, "multipliers are 2..multiplier_max")
    heldout_fraction: float = opt(0.1, "share of all problems reserved for test splits (by text hash)")
    num_train: int = opt(48000, "training problems generated (SFT cycles through them; 1,400 steps x 32 = 44,800)")
    num_test: int = opt(200, "problems per test split")


@dataclass
class TaskConfig:
    name: str = opt("arith", "task name; `rlvr tasks` lists them")
    path: Optional[str] = opt(None, "local json/jsonl/parquet/csv file, folder, or hub dataset id; default: the task's "
                                    "file in data_dir, else its hub id")
    hub_id: Optional[str] = opt(None, "override the task's default hub dataset id")
    hub_config: Optional[str] = opt(None, "hub dataset configuration name (e.g. 'main' for GSM8K)")
    verifiers: list[Any] = opt(factory=list, help="verifier specs: names or {name, weight, ...}; empty = the task's default")
    system_prompt: Optional[str] = opt(None, "system message before every prompt; none keeps prompts short for tiny models")
    think_open: str = opt("<think>", "tag that opens the thinking block")
    think_close: str = opt("</think>", "tag that closes the thinking block (budget forcing inserts it)")
    answer_template: str = opt("\\boxed{{{answer}}}", "how the final answer is written after thinking ({answer} = value)")
    prompt_column: str = opt("prompt", "generic task: column with the prompt (text or chat messages)")
    answer_column: str = opt("answer", "generic task: column with the reference answer")
    solution_column: Optional[str] = opt(None, "generic task: column with a worked solution (enables SFT)")
    arith: ArithConfig = opt(factory=ArithConfig, help="knobs of the arith task")


# ------------------------------------------------------------------------------------------------ sft
@dataclass
class SFTConfig:
    max_steps: int = opt(1400, "optimizer steps. ~600 learn only the format; the arithmetic 'clicks' between 800 and "
                               "1,200. Fewer (e.g. 700) leave 3-op accuracy partial, room for GRPO")
    learning_rate: float = opt(3e-3, "peak LR; tiny models want ~3e-3, pretrained ones ~1e-5")
    lr_scheduler: str = opt("cosine", "transformers scheduler name (cosine, linear, constant_with_warmup, ...)")
    warmup_ratio: float = opt(0.02, "share of steps spent warming up the LR")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    adam_beta2: float = opt(0.95, "AdamW second-moment decay. 0.95 adapts faster than the usual 0.999: on the tiny "
                                  "model it reached 78%/64%/56% (1/2/3 ops) by step 900 where 0.999 had 61%/33%/20%")
    batch_size: int = opt(32, "sequences per optimizer step (per device)")
    gradient_accumulation_steps: int = opt(1, "micro-batches per optimizer step; raises the effective batch without memory")
    max_length: int = opt(256, "longer sequences are truncated; keep above prompt + trace length")
    gradient_checkpointing: bool = opt(False, "recompute activations in the backward pass: saves memory on large "
                                              "models, costs ~1/3 more compute (TRL turns it on by default; off here "
                                              "made a tiny-model step 1.5x faster)")
    max_train_samples: Optional[int] = opt(None, "use at most this many training samples (None = all the task gives)")
    train_split: str = opt("train", "task split to train on")
    logging_steps: int = opt(25, "log loss every N steps")
    save_steps: int = opt(400, "checkpoint every N steps (resumable); 0 = only the final model")
    resume: bool = opt(True, "continue from the newest checkpoint in output_dir if there is one")
    eval_splits: list[str] = opt(factory=list, help="held-out splits scored greedily after training; empty = the task's "
                                                    "per-difficulty test splits")
    eval_num_problems: int = opt(200, "problems per eval split")
    eval_max_new_tokens: int = opt(96, "generation cap in the post-training eval")
    eval_batch_size: int = opt(200, "prompts per generate() call in the eval")
    num_examples_to_print: int = opt(3, "greedy generations printed after training")
    threads: Optional[int] = opt(None, "torch CPU threads (None = all cores)")


@dataclass
class LoggerConfig:
    backend: str = opt("wandb", "wandb | none. metrics.jsonl is always written")
    project: str = opt("rlvr", "wandb project")
    entity: Optional[str] = opt(None, "wandb entity (team/user)")
    mode: str = opt("offline", "offline (sync later with `wandb sync`), online, or disabled")
    tags: list[str] = opt(factory=list, help="wandb tags")


# ---------------------------------------------------------------------------------------- commands
@dataclass
class RunConfig:
    output_dir: Optional[str] = opt(None, "run directory; None = runs/<command>-<timestamp>")
    seed: int = opt(0, "seed for data order, init and sampling")
    data_dir: Optional[str] = opt("${oc.env:RLVR_DATA_DIR,null}", "folder with local benchmark files (math/, code/) "
                                                                 "that tasks read before trying the hub")
    model: ModelConfig = opt(factory=ModelConfig, help="which model")
    task: TaskConfig = opt(factory=TaskConfig, help="which task")
    logger: LoggerConfig = opt(factory=LoggerConfig, help="experiment tracking")


@dataclass
class SFTRunConfig(RunConfig):
    sft: SFTConfig = opt(factory=SFTConfig, help="cold-start SFT")


@dataclass
class TasksRunConfig(RunConfig):
    split: Optional[str] = opt(None, "split to render (default: the task's first)")
    index: int = opt(0, "which sample of the split to render")


SCHEMAS: dict[str, type] = {"sft": SFTRunConfig, "tasks": TasksRunConfig}


# ----------------------------------------------------------------------------------------------- grpo
# AlgoConfig and RewardsConfig live beside the code that reads them; rlvr.grpo.algo imports ``opt`` from here,
# and rlvr/grpo/__init__.py imports this module first, so the cycle resolves in either import order.
from rlvr.grpo.algo import AlgoConfig  # noqa: E402
from rlvr.rewards import RewardsConfig  # noqa: E402

ROLLOUT_ENGINES = ("hf", "vllm", "auto")


@dataclass
class GRPOConfig:
    max_steps: int = opt(50, "training steps (one batch of B prompts x G completions and its policy update each)")
    prompts_per_step: int = opt(8, "B: prompts per step. More = lower-variance gradient, slower steps")
    group_size: int = opt(8, "G: completions per prompt; the group is the baseline (GRPO 2402.03300). Larger G "
                             "finds a correct answer on hard prompts more often (fewer zero-variance groups) but "
                             "costs G rollouts per prompt; >= 2")
    learning_rate: float = opt(3e-5, "peak AdamW LR. Tiny model from a 700-step SFT (B=8, G=8, dapo, 40 steps): 3e-5 "
                                     "held accuracy, 1e-4 and 2e-4 lowered it, 5e-4 collapsed it (lengths grew); "
                                     "2e-4 did fit 8 repeated prompts (21% -> 64%). Pretrained models ~1e-6..1e-5")
    lr_scheduler: str = opt("constant_with_warmup", "transformers scheduler name (constant_with_warmup, cosine, "
                                                    "linear, ...); RL usually keeps the LR constant")
    warmup_steps: int = opt(0, "optimizer steps of linear LR warm-up")
    weight_decay: float = opt(0.0, "AdamW weight decay (0: RL steps are few and the KL/clip already regularise)")
    adam_beta1: float = opt(0.9, "AdamW beta1")
    adam_beta2: float = opt(0.99, "AdamW beta2; 0.99 (vs 0.999) adapts faster to the non-stationary RL gradient")
    max_grad_norm: float = opt(1.0, "clip the global gradient norm to this (0 = no clipping)")
    updates_per_batch: int = opt(1, "optimizer steps on each rollout batch (GRPO's mu). 1 = on-policy: the ratio is "
                                    "1 and clipping never acts; > 1 reuses rollouts (cheaper per update) and needs "
                                    "old log-probs, an extra forward pass")
    micro_batch_size: int = opt(32, "completions per forward/backward; gradients accumulate to the full batch, so "
                                    "this trades memory for speed and never changes the result")
    temperature: float = opt(1.0, "sampling temperature; 1.0 samples the policy itself. Lower = less exploration "
                                  "(log-probs are taken at this temperature so the ratio stays correct)")
    top_p: float = opt(1.0, "nucleus mass; < 1 samples from a distribution the trainer's log-probs do not model")
    max_new_tokens: int = opt(64, "completion cap for rollouts (arith 3-op answers take ~40 tokens; real reasoning "
                                  "models need 1k-32k). Truncated completions see algo.overlong")
    rollout_batch_size: int = opt(64, "rows (prompts x G) per generate() call of the HF engine; memory vs speed")
    train_split: str = opt("train", "task split prompts are drawn from (shuffled once per epoch by seed)")
    max_train_prompts: Optional[int] = opt(None, "use only the first N prompts of the train split (None = all). "
                                                 "Building arith's 40k prompts takes ~10-30 s on 2 cores; a run "
                                                 "of S steps uses at most S x B x max_sampling_rounds of them")
    eval_every: int = opt(25, "greedy held-out eval every N steps (and at the start and the end); 0 = never")
    eval_splits: list[str] = opt(factory=list, help="held-out splits for the eval; empty = the task's per-difficulty "
                                                    "test splits (arith: test_ops1..4)")
    eval_num_problems: int = opt(100, "problems per eval split; more = less noisy, slower eval")
    eval_max_new_tokens: int = opt(96, "generation cap in the held-out eval")
    eval_batch_size: int = opt(200, "prompts per generate() call in the eval")
    save_every: int = opt(25, "checkpoint (model, optimizer, scheduler, RNG, data position) every N steps; 0 = only "
                              "the final model. Frequent saves cost disk time but lose less on a crash")
    keep_checkpoints: int = opt(2, "newest checkpoints kept; older ones are deleted after a new one is complete")
    resume: bool = opt(True, "continue from the newest complete checkpoint in output_dir/checkpoints")
    num_samples_to_log: int = opt(4, "first N completions of each step written to samples.jsonl")
    mixed_precision: str = opt("no", "no | bf16 | fp16: accelerate autocast around the forward passes (rollout "
                                     "and training), weights and optimizer stay in model.dtype. bf16 on GPUs halves "
                                     "activation memory; on CPU fp32 is fastest")
    threads: Optional[int] = opt(None, "torch CPU threads (None = torch's default)")


@dataclass
class GRPORunConfig(RunConfig):
    grpo: GRPOConfig = opt(factory=GRPOConfig, help="the GRPO loop: batch sizes, optimiser, sampling, eval, checkpoints")
    algo: AlgoConfig = opt(factory=AlgoConfig, help="GRPO-family knobs; set together by algo=<preset> "
                                                    "(grpo | dr_grpo | dapo | gspo | cispo), then override any")
    rewards: RewardsConfig = opt(factory=RewardsConfig, help="verifier process pool: workers, timeouts, abort rate")
    rollout: str = opt("auto", "rollout engine: hf (transformers generate), vllm (not implemented yet), or auto = "
                               "vllm when CUDA is present and the vLLM engine importable, else hf (the choice is "
                               "logged)")


SCHEMAS["grpo"] = GRPORunConfig


# ----------------------------------------------------------------------------------------------- eval
@dataclass
class EvalConfig:
    budgets: list[Optional[int]] = opt(factory=lambda: [0, 4, 8, 16, 32, 64], help=(
        "thinking budgets B to sweep (tokens inside <think>; null = no cap, only max_new_tokens). Tiny arith model "
        "after 1,000 SFT steps thinks 8.6 / 16.6 / 24.5 tokens on 1 / 2 / 3 ops, so accuracy climbs in steps up to "
        "32; 64 leaves room for 4 ops. Powers of two space evenly on the log-x plot; more budgets = a finer curve, "
        "proportionally slower"))
    answer_tokens: int = opt(16, "A: tokens for the answer after a forced end of thinking (\\boxed{82} + eos is ~7 "
                                 "on the tiny model). Too small truncates answers and blames the budget")
    n: int = opt(8, "samples per problem. pass@k and maj@k need n >= k; larger n = less noisy pass@k, linear cost")
    k_list: list[int] = opt(factory=lambda: [1, 4, 8], help="k values for pass@k and maj@k (each <= n; pass@1 is "
                                                            "always reported)")
    temperature: float = opt(0.6, "sampling temperature. 0.6 is the usual reasoning-eval setting (DeepSeek-R1); "
                                  "1.0 measures the raw policy (noisier pass@1, higher pass@k); 0 = greedy, where "
                                  "n > 1 only repeats one answer")
    top_p: float = opt(1.0, "nucleus mass (1.0 = off); < 1 lifts pass@1 and lowers diversity (pass@k)")
    max_new_tokens: int = opt(128, "completion cap, thinking + answer (also the limit of budget=null); arith 4-op "
                                   "answers take ~45 tokens")
    num_problems: int = opt(50, "problems per split (the first N, fixed: the same held-out set for every "
                                "checkpoint). More = smaller error bars (+-7% at 50 for p=0.5), linear cost")
    splits: list[str] = opt(factory=list, help="held-out splits; empty = the task's per-difficulty test splits "
                                               "(arith: test_ops1..4): a mixed set turns the budget cliff into steps")
    checkpoints: str = opt("final", "with run_dir: final (the run's final model), all (every checkpoint + final, for "
                                    "accuracy vs training step), or newest (the newest checkpoint or final)")
    batch_size: int = opt(256, "rows (problems x n) per generate() call: memory vs speed")
    tag: Optional[str] = opt(None, "results go to eval/budget_sweep_<tag>.json/.csv; None = from the checkpoint "
                                   "(step<N>, final, or the model folder's name)")
    plot: bool = opt(True, "write plots/ (and wandb charts) after the sweep, from every sweep in eval/")
    verifier_workers: int = opt(2, "verifier processes (0 = in-process: no timeouts or crash isolation)")
    verifier_timeout_s: float = opt(10.0, "hard limit per verifier call; an overrun counts as a verifier error")


@dataclass
class EvalRunConfig(RunConfig):
    eval: EvalConfig = opt(factory=EvalConfig, help="the thinking-budget sweep: budgets x splits x n samples")
    run_dir: Optional[str] = opt(None, "evaluate this run's checkpoints (eval.checkpoints) and write results into "
                                       "it; None = evaluate model.name_or_path (or model.name) alone")


SCHEMAS["eval"] = EvalRunConfig


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for command, schema in SCHEMAS.items():
        cs.store(name=f"{command}_schema", node=schema)


def describe(schema: type, prefix: str = "") -> list[str]:
    """``key = default  # help`` lines for every field, nested dataclasses flattened."""
    lines = []
    for f in fields(schema):
        key = f"{prefix}{f.name}"
        default = f.default_factory() if f.default_factory is not MISSING_FACTORY else f.default
        if is_dataclass(default):
            lines.extend(describe(type(default), prefix=f"{key}."))
        else:
            lines.append(f"{key} = {default!r}\n      {f.metadata.get('help', '')}")
    return lines


from dataclasses import MISSING as MISSING_FACTORY  # noqa: E402  (sentinel for "no default_factory")
