"""Config sections of ``rlvr grpo``: the loop, its rollouts' thinking budget, the reward-hacking monitors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from rlvr.config.derived import by_size
from rlvr.config.options import opt

ROLLOUT_ENGINES = ("hf", "vllm", "auto")  # in-process engines: every command that samples (grpo, distill, pipeline)
GRPO_ROLLOUT_ENGINES = (*ROLLOUT_ENGINES, "server")  # rlvr grpo also samples from vLLM servers (server.*)
SYNC_TRANSPORTS = ("disk", "gloo", "nccl")  # rlvr.rollout.weight_sync; nccl (GPU) is refused by validation


# The budget statement: one line appended to the prompt's last user message. L1 (Aggarwal & Welleck 2025, arXiv
# 2503.04697) trains with "Think for N tokens." so that one model follows whatever budget the prompt gives.
BUDGET_STATEMENT = "Think for {budget} tokens."
TRAIN_BUDGET_MODES = ("none", "fixed", "sample")


@dataclass
class TrainBudgetConfig:
    """The thinking budget of GRPO's rollouts (rlvr.train.budgets): none, one fixed B, or one B drawn per prompt."""

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
    eval_num_problems: int = opt(by_size(100, 50), "problems per eval split; more = less noisy, slower eval. "
                                                   "Default by model size (rlvr.config.derived): 100 for a small "
                                                   "model (<= 20M parameters, the tiny one: seconds), 50 for a "
                                                   "larger or unknown one (+-7 points at p=0.5 instead of +-5, half "
                                                   "the time: a greedy pass of 100 problems x 96 tokens is ~1-2 "
                                                   "min for SmolLM2-135M on 2 cores, per split, at each eval)")
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
    sharding: str = opt("auto", "auto | none | ddp | fsdp. none: one process holds the whole model; ddp: every "
                                "process a full replica (gradients all-reduced; memory per device = the whole "
                                "model's); fsdp: FSDP2 fully_shard per decoder layer, parameters, gradients and "
                                "AdamW state split over the processes (memory / world, plus all-gathers each "
                                "forward and backward), sharded checkpoints (torch.distributed.checkpoint). "
                                "auto = ddp with several processes, else none")
    fsdp_cpu_offload: bool = opt(False, "fsdp: keep sharded parameters, gradients and optimizer state in CPU "
                                        "memory (GPU memory ~ one layer's; steps several times slower)")
    activation_checkpointing: bool = opt(False, "recompute each decoder layer's activations in the backward "
                                                "instead of storing them: ~1/layers the activation memory for "
                                                "~30% more compute per update")
    budget_eval_every: int = opt(by_size("${.max_steps}", 0), (
        "accuracy-vs-thinking-budget sweep (the budget_eval section: budgets x splits x n samples, the same as "
        "`rlvr eval`) every N steps and at the start and the end, into eval/ and plots/; 0 = never. Default by "
        "model size (rlvr.config.derived): max_steps (= at the start and the end only) for a small model (<= 20M "
        "parameters: the tiny SFT model sweeps 2,400 rollouts in ~35 s on 2 busy cores, as long as 10-30 GRPO "
        "steps), 0 for a larger or unknown one (SmolLM2-135M took 208-257 s per sweep on 2 cores, 3x its "
        "training: sweep the saved checkpoints afterwards with `rlvr eval run_dir=<run> eval.checkpoints=all`, "
        "as the pipeline's eval stage does; on a GPU turn it on). The cost of each sweep is printed before it "
        "runs"))
    train_budget: TrainBudgetConfig = opt(factory=TrainBudgetConfig, help="thinking budget of the rollouts: none, "
                                                                          "fixed, or sampled per prompt and stated "
                                                                          "in it")


# ------------------------------------------------------------------------------------- rollout servers
@dataclass
class ServerConfig:
    """``rollout=server``: vLLM OpenAI servers launched by rlvr on loopback, or attached to (rlvr.rollout.server,
    rlvr.rollout.server_engine, rlvr.rollout.weight_sync; docs/servers.md)."""

    urls: list[str] = opt(factory=list, help=(
        "attach to these running servers (http://host:port) instead of launching any; they must run with "
        "VLLM_SERVER_DEV_MODE=1 and --worker-extension-cls rlvr.rollout.server_worker.RlvrWorkerExtension, serve "
        "the policy's architecture, and see server.sync_dir (disk sync). Attached servers are never stopped. "
        "Empty = rlvr launches server.num_servers on 127.0.0.1 and stops them at the end"))
    num_servers: int = opt(1, "servers rlvr launches (ignored with server.urls). Prompts are dealt round-robin, a "
                              "group per request. On CPU the cores are split between them (one server on all cores "
                              "is usually fastest); on GPUs server i gets GPU i")
    sync: str = opt("disk", "weight transport after each update: disk (safetensors folder + reload RPC; the "
                            "servers must see server.sync_dir) or gloo (tensors broadcast over a gloo group; no "
                            "shared folder, the servers must reach server.sync_host). Every sync is checksummed; a "
                            "mismatch stops the run. nccl (GPU) is refused here")
    sync_host: str = opt("127.0.0.1", "gloo sync: the trainer's address its per-server groups are served on; "
                                      "loopback for local servers, an address the servers can reach otherwise")
    sync_dir: Optional[str] = opt(None, "folder for the disk sync's weight files (one version at a time); must be "
                                        "readable by the servers. None = <output_dir>/servers/weights")
    startup_timeout_s: float = opt(600.0, "seconds a launched server may take to become healthy (tiny model on 2 CPU "
                                          "cores: ~30-60 s; a 7B model on a GPU: minutes); then the run stops with "
                                          "the server's log")
    request_timeout_s: float = opt(600.0, "seconds one completion request or weight reload may take")
    max_model_len: Optional[int] = opt(None, "prompt + completion cap of launched servers' KV cache; None = the "
                                             "model's max positions (a longer request is rejected)")
    extra_args: list[str] = opt(factory=list, help="more `vllm serve` flags for launched servers, e.g. "
                                                   "['--max-num-seqs', '64', '--gpu-memory-utilization', '0.8']")
    max_staleness: int = opt(0, "K: steps of rollouts the servers may sample ahead of the update (bounded-staleness "
                                "async GRPO, rlvr.train.async_source). 0 = synchronous: rollouts and updates "
                                "alternate, the servers idle during the update. K>0 overlaps generation with the "
                                "update (up to ~2x faster when both take as long) but trains on samples up to K "
                                "policy versions old, corrected by truncated importance sampling against the "
                                "servers' logprobs: needs algo.tis=true; only with rollout=server")


# ------------------------------------------------------------------------------------- grpo monitors
@dataclass
class MonitorConfig:
    """Reward-hacking monitors (rlvr.train.monitors): each is a metric ``monitor/<name>`` plus a warning and
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
