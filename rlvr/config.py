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
    learning_rate: float = opt(3e-3, "peak LR; tiny models want ~3e-3, pretrained ones ~1e-5")
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


@dataclass
class RunCardConfig:
    limitations: list[str] = opt(factory=list, help="known limitations of this run, in your words; copied into "
                                                    "RUNCARD.md and provenance.json (e.g. 'eval set is 50 problems: "
                                                    "+-7%')")
    notes: Optional[str] = opt(None, "free text for the run card: why this run exists, what it changes")


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
    run_card: RunCardConfig = opt(factory=RunCardConfig, help="what the run card (RUNCARD.md, provenance.json) "
                                                              "records beyond what is measured")


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


# The budget statement: one line appended to the prompt's last user message. L1 (Aggarwal & Welleck 2025, arXiv
# 2503.04697) trains with "Think for N tokens." so that one model follows whatever budget the prompt gives.
BUDGET_STATEMENT = "Think for {budget} tokens."
TRAIN_BUDGET_MODES = ("none", "fixed", "sample")


@dataclass
class TrainBudgetConfig:
    """The thinking budget of GRPO's rollouts (rlvr.grpo.budgets): none, one fixed B, or one B drawn per prompt."""

    mode: str = opt("none", "none: rollouts think freely up to grpo.max_new_tokens (plain GRPO). fixed: every rollout "
                            "is budget-forced at `thinking` tokens (s1 2501.19393: at B, </think> is forced and the "
                            "answer gets answer_tokens), so the policy learns to answer from a cut-off thought "
                            "(Elastic Reasoning 2505.05315 trains this way). sample: each prompt draws its B from "
                            "`choices` (seeded by seed, step and the prompt's stream position: a resume draws the "
                            "same); with state_in_prompt the budget is written into the prompt, so one model learns "
                            "to use whatever budget it is given (budget-conditioned RL, L1 2503.04697)")
    thinking: int = opt(32, "fixed mode: B, the most tokens inside <think>. The tiny arith model thinks ~9/17/25 "
                            "tokens on 1/2/3 ops: 32 leaves 3 ops uncut, 16 cuts them")
    choices: list[Optional[int]] = opt(factory=lambda: [8, 16, 32], help=(
        "sample mode: the budgets a prompt can draw (null = no cap). A wider spread teaches more budgets but gives "
        "each fewer rollouts per step; with the tiny model, 8/16/32 bracket what 1/2/3 ops need"))
    weights: list[float] = opt(factory=list, help="sample mode: relative probability of each of `choices` (same "
                                                   "length); empty = uniform")
    answer_tokens: int = opt(16, "A: tokens for the answer after a forced end of thinking (\\boxed{82} + eos is ~7 on "
                                 "the tiny model). B + A (+ ~3 for the tags) must fit in grpo.max_new_tokens, which "
                                 "caps every rollout")
    state_in_prompt: bool = opt(True, "write the budget into the prompt (prompt_template on a new line at the end "
                                      "of the last user message; no line for a null budget). Without it, sample mode "
                                      "trains a model robust to unannounced cuts rather than one that plans for its "
                                      "budget. The in-training sweep (grpo.budget_eval_every) then states each swept "
                                      "budget the same way; give `rlvr eval` eval.state_budget_in_prompt=true too")
    prompt_template: str = opt(BUDGET_STATEMENT, "the budget statement; {budget} is replaced by B. Keep it identical "
                                                 "between training and evaluation (eval.budget_prompt_template)")


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
    budget_eval_every: int = opt("${.max_steps}", "accuracy-vs-thinking-budget sweep (the budget_eval section: "
                                                  "budgets x splits x n samples, the same as `rlvr eval`) every N "
                                                  "steps and at the start and the end, into eval/ and plots/; 0 = "
                                                  "never. Default max_steps = at the start and the end only: a sweep "
                                                  "is 2,400 sampled rollouts with budget_eval's defaults, ~35 s on 2 "
                                                  "busy CPU cores for the tiny SFT model (more while a model rambles "
                                                  "to max_new_tokens), as long as 10-30 GRPO steps")
    train_budget: TrainBudgetConfig = opt(factory=TrainBudgetConfig, help="thinking budget of the rollouts: none, "
                                                                          "fixed, or sampled per prompt and stated "
                                                                          "in it")


# ------------------------------------------------------------------------------------- grpo monitors
@dataclass
class MonitorConfig:
    """Reward-hacking monitors (rlvr.grpo.monitors): each is a metric ``monitor/<name>`` plus a warning and
    flagged samples (``flagged.jsonl``) when it passes its threshold."""

    enabled: bool = opt(True, "compute the monitors each step (cheap: text heuristics plus one strict math check "
                              "per rewarded completion)")
    rewarded_threshold: float = opt(0.5, "a completion counts as rewarded when its primary verifier's score "
                                         "(accuracy) is >= this")
    min_rewarded: int = opt(4, "share-of-rewarded monitors only judge steps with at least this many rewarded "
                               "completions; fewer and one odd sample would trip them")
    near_empty_think_tokens: int = opt(2, "a thinking block of at most this many tokens counts as empty (a missing "
                                          "block too)")
    empty_think_frac: float = opt(0.25, "trip when more than this share of rewarded completions has an empty or "
                                        "near-empty thinking block. An honest arith trace thinks 8+ tokens")
    min_reasoning_tokens: int = opt(5, "rewarded completions thinking fewer tokens than this, or with no reasoning "
                                       "line (a digit or min_reasoning_words words), are answers without reasoning")
    min_reasoning_words: int = opt(6, "a thinking line with this many words counts as reasoning even without digits")
    no_reasoning_frac: float = opt(0.25, "trip when more than this share of rewarded completions answers without "
                                         "reasoning")
    baseline_steps: int = opt(3, "the first N steps' mean completion length is the length baseline")
    length_collapse_ratio: float = opt(0.5, "trip when the step's mean completion length falls below this times the "
                                            "baseline (the policy learned to skip its reasoning)")
    length_explosion_ratio: float = opt(2.0, "trip when the mean length exceeds this times the baseline")
    max_truncated_frac: float = opt(0.5, "also an explosion: at least this share of completions hit the length cap "
                                         "while the baseline steps had under half that (an untrained model that "
                                         "always runs to the cap is not an explosion)")
    code_suspicious_frac: float = opt(0.05, "trip when more than this share of code-verified completions exits "
                                            "early, calls exit/skip/patching APIs, or passes with zero tests")
    fallback_rules: list[str] = opt(factory=lambda: ["last_number"], help="math extraction rules that are weak "
                                    "evidence: a reward found only through them disagrees with a strict extraction")
    strict_check: bool = opt(True, "re-score rewarded non-code completions with a strict math verifier (explicit "
                                   "answer required, no last-number fallback): catches verifiers that reward format "
                                   "alone. Off = judge only by the primary verifier's extract/<rule> metrics")
    disagreement_frac: float = opt(0.1, "trip when more than this share of rewarded completions is rejected by the "
                                        "strict check or rewarded only through a fallback rule")
    divergence_window: int = opt(10, "steps over which the training reward trend is fitted")
    min_reward_rise: float = opt(0.1, "trip when the fitted reward rise over the window is at least this ...")
    heldout_tolerance: float = opt(0.01, "... while held-out accuracy (mean over eval splits, between the two "
                                         "latest evals spanning the window) changed by at most this (flat or down)")
    max_flagged_per_step: int = opt(8, "samples written to flagged.jsonl per monitor and step")
    warn_every: int = opt(10, "repeat a monitor's console warning at most every N steps while it stays tripped")


@dataclass
class GRPORunConfig(RunConfig):
    grpo: GRPOConfig = opt(factory=GRPOConfig, help="the GRPO loop: batch sizes, optimiser, sampling, eval, checkpoints")
    algo: AlgoConfig = opt(factory=AlgoConfig, help="GRPO-family knobs; set together by algo=<preset> "
                                                    "(grpo | dr_grpo | dapo | gspo | cispo), then override any")
    rewards: RewardsConfig = opt(factory=RewardsConfig, help="verifier process pool: workers, timeouts, abort rate")
    monitors: MonitorConfig = opt(factory=MonitorConfig, help="reward-hacking monitors: thresholds and windows")
    # EvalConfig is defined below with `rlvr eval`; the lambda looks it up when a config is built. Smaller than
    # `rlvr eval`'s defaults because it runs inside training (grpo.budget_eval_every).
    budget_eval: EvalConfig = opt(factory=lambda: EvalConfig(n=4, k_list=[1, 4], num_problems=25), help=(
        "the periodic thinking-budget sweep inside training (same fields as `rlvr eval`'s eval.*; checkpoints and "
        "tag are not used: each sweep is eval/budget_sweep_step<N>.json). Samples with HF generate on the policy"))
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
    state_budget_in_prompt: bool = opt(False, "write each swept budget into the prompt (budget_prompt_template on a "
                                              "new line after the last user message; none for budget null), as "
                                              "budget-conditioned GRPO (grpo.train_budget.state_in_prompt) trained "
                                              "it. Off for models trained without it: the line is then unfamiliar "
                                              "text, not an instruction")
    budget_prompt_template: str = opt(BUDGET_STATEMENT, "the budget statement; {budget} is replaced by B. Must match "
                                                        "the training run's grpo.train_budget.prompt_template")


@dataclass
class EvalRunConfig(RunConfig):
    eval: EvalConfig = opt(factory=EvalConfig, help="the thinking-budget sweep: budgets x splits x n samples")
    run_dir: Optional[str] = opt(None, "evaluate this run's checkpoints (eval.checkpoints) and write results into "
                                       "it; None = evaluate model.name_or_path (or model.name) alone")


SCHEMAS["eval"] = EvalRunConfig


# -------------------------------------------------------------------------------------------- distill
@dataclass
class DistillConfig:
    split: str = opt("train", "task split whose prompts are sampled")
    num_prompts: Optional[int] = opt(256, "prompts to sample (the first N of the split; None = all). The data set "
                                          "has at most this many prompts x (1 or n) rows")
    n: int = opt(8, "completions per prompt. More finds a correct trace for harder prompts (pass@n rises) at n "
                    "times the sampling cost")
    temperature: float = opt(1.0, "sampling temperature: 1.0 gives diverse traces; lower (0.6-0.8) keeps more of "
                                  "them correct and fewer distinct")
    top_p: float = opt(1.0, "nucleus mass (1.0 = off)")
    max_new_tokens: int = opt(128, "completion cap; a truncated completion is never kept (no final answer)")
    keep: str = opt("one", "one: the shortest verified-correct completion per prompt (R1-style cold-start data "
                           "favours concise, readable traces); all: every distinct correct completion (more data, "
                           "weighted towards easy prompts)")
    min_score: float = opt(1.0, "a completion is kept when its primary verifier scores at least this (1.0 = "
                                "exactly right; < 1 admits partial credit, e.g. code passing most tests)")
    require_format: bool = opt(True, "also require the response format (<think>...</think> then the answer), "
                                     "judged by the format verifier, so SFT never learns an unformatted answer")
    batch_size: int = opt(256, "rows (prompts x n) per generate() call of the HF engine: memory vs speed")


@dataclass
class DistillRunConfig(RunConfig):
    distill: DistillConfig = opt(factory=DistillConfig, help="rejection sampling: sample, verify, keep correct traces")
    rewards: RewardsConfig = opt(factory=RewardsConfig, help="verifier process pool: workers, timeouts, abort rate")
    rollout: str = opt("auto", "sampling engine: hf, vllm, or auto (vllm with CUDA and vllm installed, else hf)")


SCHEMAS["distill"] = DistillRunConfig


# ------------------------------------------------------------------------------------------- pipeline
PIPELINE_STAGES = ("distill", "sft", "grpo", "eval", "plot")


@dataclass
class StageOverrides:
    distill: list[str] = opt(factory=list, help="key=value overrides for the distill stage only (`rlvr distill --help`)")
    sft: list[str] = opt(factory=list, help="key=value overrides for the sft stage only (`rlvr sft --help`), e.g. "
                                            "[task.arith.max_ops=2]")
    grpo: list[str] = opt(factory=list, help="key=value overrides for the grpo stage only (`rlvr grpo --help`)")
    eval: list[str] = opt(factory=list, help="key=value overrides for the eval stage only (`rlvr eval --help`)")


@dataclass
class PipelineConfig:
    stages: list[str] = opt(factory=lambda: ["sft", "grpo", "eval", "plot"], help=(
        "stages to run, always in the order distill -> sft -> grpo -> eval -> plot, sharing one run directory "
        "(<output_dir>/<stage>/). distill (rejection sampling into an SFT data set) is off by default"))
    skip: list[str] = opt(factory=list, help="stages to leave out this time (their finished outputs, if any, are still "
                                             "used: pipeline.skip=[sft] trains GRPO from an earlier <run>/sft/final)")
    stage_overrides: StageOverrides = opt(factory=StageOverrides, help=(
        "key=value overrides applied to one stage's config only, on top of the shared sections, e.g. "
        "{sft: [task.arith.max_ops=2]} trains SFT on 1-2 operation problems while GRPO keeps 1-3. Keys are "
        "that stage's own (`rlvr sft --help`); values are checked like any override"))


@dataclass
class ContaminationConfig:
    n: int = opt(13, "word n-gram length (after lowercasing and stripping punctuation). 13 is the GPT-3/Llama "
                     "convention for long prompts; prompts shorter than n words (arith: ~8) can never match, so "
                     "use n=6..8 for short prompts. Whole-prompt exact matches are reported at any n")
    train_split: str = opt("train", "split of the configured task whose prompts are the training side")
    max_train_prompts: Optional[int] = opt(None, "use only the first N training prompts (None = all)")
    eval_sets: list[str] = opt(factory=lambda: ["gsm8k:test"], help="eval sets checked against the train prompts: "
                               "'task:split' (e.g. gsm8k:test, arith:test_ops2), 'task' (all its non-train splits) "
                               "or a local .jsonl/.json/.parquet/.csv file (text from text_column)")
    max_eval_items: Optional[int] = opt(None, "check only the first N items of each eval set (None = all)")
    text_column: Optional[str] = opt(None, "column holding the prompt in eval-set files; None tries prompt, "
                                           "question, problem, text")
    boilerplate_frac: float = opt(0.05, "n-grams found in more than this share of the train prompts (and in >= 10 of "
                                        "them) are template text, not contamination, and are ignored")
    max_examples: int = opt(5, "example hits listed per eval set")


@dataclass
class PipelineRunConfig(RunConfig):
    pipeline: PipelineConfig = opt(factory=PipelineConfig, help="which stages run, and per-stage overrides")
    distill: DistillConfig = opt(factory=DistillConfig, help="stage distill: rejection sampling (see `rlvr distill --help`)")
    sft: SFTConfig = opt(factory=SFTConfig, help="stage sft: cold-start SFT (see `rlvr sft --help`)")
    grpo: GRPOConfig = opt(factory=GRPOConfig, help="stage grpo: the GRPO loop (see `rlvr grpo --help`)")
    algo: AlgoConfig = opt(factory=AlgoConfig, help="stage grpo: GRPO-family knobs, set together by algo=<preset>")
    rewards: RewardsConfig = opt(factory=RewardsConfig, help="stages distill and grpo: the verifier process pool")
    rollout: str = opt("auto", "stages distill and grpo: rollout engine hf | vllm | auto")
    eval: EvalConfig = opt(factory=EvalConfig, help="stage eval: thinking-budget sweep of the SFT model and the GRPO "
                                                    "checkpoints (eval.checkpoints: final | all | newest)")
    contamination: ContaminationConfig = opt(factory=ContaminationConfig, help=(
        "checked before GRPO: n-gram overlap of GRPO's training prompts with these eval sets; the result goes into "
        "the GRPO and pipeline run cards"))


SCHEMAS["pipeline"] = PipelineRunConfig


# ------------------------------------------------------------------------------------- contamination
@dataclass
class ContaminationRunConfig(RunConfig):
    contamination: ContaminationConfig = opt(factory=ContaminationConfig, help="n-gram overlap check")


SCHEMAS["check-contamination"] = ContaminationRunConfig


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for command, schema in SCHEMAS.items():
        cs.store(name=f"{command}_schema", node=schema)


def describe(schema: Any, prefix: str = "") -> list[str]:
    """``key = default  # help`` lines for every field, nested dataclasses flattened. ``schema``: a dataclass, or an
    instance whose values are the defaults (a section whose factory sets other defaults than its class's)."""
    lines = []
    for f in fields(schema):
        key = f"{prefix}{f.name}"
        if not isinstance(schema, type):
            default = getattr(schema, f.name)
        else:
            default = f.default_factory() if f.default_factory is not MISSING_FACTORY else f.default
        if is_dataclass(default):
            lines.extend(describe(default, prefix=f"{key}."))
        else:
            lines.append(f"{key} = {default!r}\n      {f.metadata.get('help', '')}")
    return lines


from dataclasses import MISSING as MISSING_FACTORY  # noqa: E402  (sentinel for "no default_factory")
