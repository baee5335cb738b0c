"""Config sections shared by several commands: model, task, SFT, logger, run card, verifier pool."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from rlvr.config.derived import by_size
from rlvr.config.options import opt


# --------------------------------------------------------------------------------------------- model
@dataclass
class LoraConfig:
    r: int = opt(0, "LoRA rank; 0 = full fine-tuning (every weight trains). 8-64 trains ~0.1-1% of the parameters: "
                    "gradients and AdamW state shrink to the adapters' (the frozen base keeps only its weights), "
                    "at some loss of capacity (LoRA 2106.09685; Thinking Machines' 'LoRA without regret': RL needs "
                    "little capacity, rank 1-8 matched full RL there)")
    alpha: int = opt(16, "LoRA scaling numerator (update = alpha / r x B A); with r changed, keep alpha / r or "
                         "retune the LR (LoRA's LR is ~10x full fine-tuning's)")
    dropout: float = opt(0.0, "dropout on the adapters' input; 0 keeps RL's log-probs deterministic")
    target_modules: list[str] = opt(factory=lambda: ["all-linear"], help=(
        "module names the adapters wrap (peft's target_modules); 'all-linear' = every linear layer but the "
        "output head (recommended: attention-only LoRA learns less)"))
    merge_final: bool = opt(True, "final/ also holds the merged model (base + adapters, a plain HF folder that "
                                  "AutoModelForCausalLM and vLLM load); the adapter alone is in final/adapter/")


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
    add_think_tokens: bool = opt(False, "True: training stages make the task's thinking tags single tokens where "
                                        "the tokenizer lacks them (embeddings resized, new rows = mean of the "
                                        "others). Off by default: a new row learns at the LR's pace, and SmolLM2 "
                                        "after 150 SFT steps at 5e-5 still put <|im_end|> where <think> belongs (0% "
                                        "held-out) while the tags as text (3-4 known tokens) were learned in 20 "
                                        "steps. Budget forcing works with either")
    trust_remote_code: bool = opt(False, "run modelling code shipped with a hub model; only for sources you trust")
    cache_dir: Optional[str] = opt(None, "where the tiny model and tokenizer are cached (default: $RLVR_CACHE or ~/.cache/rlvr)")
    tiny: TinyModelConfig = opt(factory=TinyModelConfig, help="architecture of model=tiny")
    lora: LoraConfig = opt(factory=LoraConfig, help="low-rank adapters (peft) instead of full fine-tuning; r=0 off")


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
    mix: list[Any] = opt(factory=list, help=(
        "task=mix: the component tasks mixed into one batch, each a name or {name, weight (sampling share of the "
        "train split, default 1), splits ({mix split: component split}, e.g. {train: test} for a task with one "
        "split), and any task.* field for that component (verifiers, path, arith, ...)}. Every row keeps its own "
        "task's verifiers (rlvr/tasks/mix.py)"))


# ------------------------------------------------------------------------------------------------ sft
@dataclass
class SFTConfig:
    max_steps: int = opt(1400, "optimizer steps. ~600 learn only the format; the arithmetic 'clicks' between 800 and "
                               "1,200. Fewer (e.g. 700) leave 3-op accuracy partial, room for GRPO")
    learning_rate: float = opt(by_size(3e-3, 1e-5), "peak LR. Default by model size (rlvr.config.derived): 3e-3 "
                                                     "for a small model (<= 20M parameters: the tiny one, trained "
                                                     "from scratch), 1e-5 for a larger or unknown (pretrained) one, "
                                                     "which 3e-3 would wreck in a few steps")
    stop_fraction: float = opt(1.0, "share of the max_steps schedule to run (1.0 = all of it). < 1 stops mid-schedule, "
                                    "a cold start for RL: from step 800 of a 1,200-step run (0.667) 100 GRPO steps "
                                    "raised 3-op accuracy; from runs annealed to lr 0 they lowered it "
                                    "(docs/experiments/grpo_tiny_arith.md)")
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
    train_file: Optional[str] = opt(None, "jsonl of conversations ({'messages': [..., assistant turn]}) to train on "
                                          "instead of the task's worked solutions, e.g. <run>/distill/data.jsonl "
                                          "from rejection sampling; the held-out eval still uses the task")
    eval_splits: list[str] = opt(factory=list, help="held-out splits scored greedily after training; empty = the task's "
                                                    "per-difficulty test splits")
    eval_num_problems: int = opt(by_size(200, 100), "problems per eval split. Default by model size "
                                                    "(rlvr.config.derived): 200 for a small model (<= 20M "
                                                    "parameters, the tiny one: seconds), 100 for a larger or "
                                                    "unknown one (+-5 points at p=0.5 instead of +-3.5, half the "
                                                    "time of a greedy pass that costs minutes per split on CPU)")
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


@dataclass
class RunCardConfig:
    limitations: list[str] = opt(factory=list, help="known limitations of this run, in your words; copied into "
                                                    "RUNCARD.md and provenance.json (e.g. 'eval set is 50 problems: "
                                                    "+-7%')")
    notes: Optional[str] = opt(None, "free text for the run card: why this run exists, what it changes")


@dataclass
class RewardsConfig:
    num_workers: int = field(default=2, metadata={
        "help": "verifier worker processes. More overlaps slow verifiers (code execution) but each costs memory "
                "(~100 MB with sympy) and CPU taken from rollout. 0 runs in-process: no timeouts or crash "
                "isolation, for debugging only."})
    timeout_s: float = field(default=10.0, metadata={
        "help": "hard wall-clock limit per verifier call; the worker is killed and replaced and the call counts "
                "as an error. Too low turns slow-but-correct checks into errors; too high lets one pathological "
                "completion stall the whole step."})
    abort_error_rate: float = field(default=0.2, metadata={
        "help": "abort the run (RewardErrorRateExceeded) when one verifier's error rate in a batch exceeds this: "
                "a broken verifier silently turns into noise rewards. 1.0 never aborts."})
    abort_min_calls: int = field(default=16, metadata={
        "help": "only judge the error rate on batches with at least this many calls to the verifier, so one "
                "timeout in a tiny batch does not kill a run."})
    start_method: str = field(default="forkserver", metadata={
        "help": "multiprocessing start method. forkserver: safe next to CUDA/threads and fast to replace "
                "workers; spawn: slowest, most isolated; fork: fastest but unsafe in a process with CUDA or threads."})
    max_calls_per_worker: int = field(default=0, metadata={
        "help": "recycle a worker after this many calls (0 = never); bounds memory growth of leaky plugins at "
                "the cost of a restart."})
