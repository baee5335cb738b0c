"""Config sections of ``rlvr eval``, ``rlvr distill``, ``rlvr pipeline`` and ``rlvr check-contamination``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from rlvr.config.derived import K_LIST_DEFAULT
from rlvr.config.grpo import BUDGET_STATEMENT
from rlvr.config.options import opt


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
    k_list: list[int] = opt(K_LIST_DEFAULT, "k values for pass@k and maj@k (each <= n; pass@1 is always reported). "
                                            "Default follows n: the powers of 4 below n, then n (n=8 -> [1, 4, 8], "
                                            "n=4 -> [1, 4]); set it to pick your own")
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
    state_budget_in_prompt: bool = opt(False, "write each swept budget into the prompt (budget_prompt_template on a "
                                              "new line after the last user message; none for budget null), as "
                                              "budget-conditioned GRPO (grpo.train_budget.state_in_prompt) trained "
                                              "it. Off for models trained without it: the line is then unfamiliar "
                                              "text, not an instruction")
    budget_prompt_template: str = opt(BUDGET_STATEMENT, "the budget statement; {budget} is replaced by B. Must match "
                                                        "the training run's grpo.train_budget.prompt_template")



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
