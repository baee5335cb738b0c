"""Thinking budgets inside ``rlvr grpo``: the budget each training prompt gets, how a budget is stated in a prompt,
and the periodic accuracy-vs-budget sweep on the policy.

Training (``grpo.train_budget``, ``TrainBudgets``)
    ``none``: plain rollouts (``SamplingParams.budget = None``), exactly as without this module. ``fixed``: every
    rollout gets ``ThinkingBudget(thinking=B, answer=A)``. ``sample``: prompt i of a step draws B from ``choices``
    (``weights``, else uniform) with ``random.Random(f"{seed}/train_budget/{step}/{index}")``, where ``index`` is
    the prompt's position in the shuffled train stream (``PromptStream``): the draw depends only on the run seed,
    the step and the stream position, all part of a checkpoint, so a resumed run assigns the same budgets, and
    ranks (different slices of the stream) draw independently. The G completions of a prompt share its budget (the
    group is the baseline, so all of it must answer the same question under the same budget). Engines take one
    ``SamplingParams`` per call, so ``generate`` calls the engine once per distinct budget and puts the
    completions back in prompt-major [B*G] order; the first group keeps the round's seed (``fixed`` samples like
    one call), later groups add a fixed offset per group. Forced tokens (``</think>`` + cue) are masked out of the
    loss by ``RolloutBatch.completion_mask``.

The statement (``state_budget``), shared with ``rlvr eval``
    With ``state_in_prompt`` (training) / ``eval.state_budget_in_prompt`` (evaluation) the budget is written into
    the prompt: ``template.format(budget=B)`` (default ``"Think for {budget} tokens."``, L1 2503.04697) on a new
    line at the end of the last user message. A user-message suffix rather than a system message: every chat
    template has a user turn (some reject system messages) and the tiny model saw no system prompts in SFT. A null
    budget (no cap) gets no line, in training and in evaluation alike. The in-training sweep states each swept
    budget with the training template whenever training states budgets (``BudgetSweeper``), and ``rlvr eval``
    warns when it evaluates a run trained with statements under another protocol (``statement_mismatch``).

The sweep (``grpo.budget_eval_every``, ``BudgetSweeper``)
    At step 0 (a fresh start), every N steps and at the end, rank 0 runs ``rlvr.eval.sweep.sweep_checkpoint`` on
    the in-memory policy (HF generate, whatever the rollout engine) as ``Checkpoint("step N")`` with the
    cumulative train tokens (the starting model's, from ``rlvr.runs.layout``, plus this run's ``tokens`` so far),
    writes ``eval/budget_sweep_step<N>.json/.csv`` (the file ``rlvr eval run_dir=... eval.checkpoints=all``
    would write for that step), redraws ``plots/`` from every sweep in ``eval/`` (what ``rlvr plot <run>``
    does) and logs the charts to wandb at step N. Headline numbers go into the step's metrics row:
    ``budget_eval/<split>/B<budget>/pass@1`` per cell, ``budget_eval/mean/B<budget>/pass@1`` and
    ``.../thinking_tokens`` over splits (``Bnone`` = no cap); step 0's go to the wandb summary as
    ``budget_eval_start/...`` (metrics.jsonl rows are training steps).
"""

from __future__ import annotations

import math
import random
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from rlvr.config import BUDGET_STATEMENT, TRAIN_BUDGET_MODES
from rlvr.config.loading import Problem
from rlvr.tasks.base import Sample

GROUP_SEED_OFFSET = 104_729  # seed distance between the budget groups of one round (a prime)


# ------------------------------------------------------------------------------------------- the statement
def state_budget(sample: Sample, budget: int | None, template: str) -> Sample:
    """``sample`` with ``template.format(budget=budget)`` on a new line after its last user message (unchanged for
    budget None = no cap)."""
    if budget is None:
        return sample
    line = template.format(budget=budget)
    messages = [dict(m) for m in sample.prompt]
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if users:
        messages[users[-1]]["content"] = f"{messages[users[-1]]['content']}\n{line}"
    else:
        messages.append({"role": "user", "content": line})
    return replace(sample, prompt=messages)


def template_problem(key: str, template: str) -> Problem | None:
    """A Problem when ``template`` does not state a budget, or does not format with only ``{budget}``."""
    try:
        ok = "{budget}" in template and template.format(budget=16) != template
    except (KeyError, IndexError, ValueError) as exc:
        return Problem(key, f"{template!r} does not format with only {{budget}} ({exc!r})",
                       "use {budget} as the only placeholder; double other braces: {{ }}")
    if not ok:
        return Problem(key, f"{template!r} has no {{budget}} placeholder: every prompt would state the same text",
                       "e.g. 'Think for {budget} tokens.'")
    return None


def trained_statement(run_dir: str | Path | None) -> str | None:
    """The template a GRPO run stated its budgets with (from its config.yaml), or None (it stated none)."""
    path = Path(run_dir) / "config.yaml" if run_dir else None
    if path is None or not path.exists():
        return None
    from omegaconf import OmegaConf

    try:
        tb = OmegaConf.to_container(OmegaConf.load(path), resolve=False).get("grpo", {}).get("train_budget") or {}
    except Exception:  # noqa: BLE001 - a foreign or hand-edited config: nothing known
        return None
    if tb.get("mode", "none") == "none" or not tb.get("state_in_prompt", False):
        return None
    return tb.get("prompt_template")


def statement_mismatch(run_dir: str | Path | None, statement: str | None) -> str | None:
    """Why evaluating a model of ``run_dir`` with ``statement`` (None = no statement) differs from its training."""
    trained = trained_statement(run_dir)
    if trained == statement or trained is None:  # a model trained without statements: either protocol is a choice
        return None
    template = "" if trained == BUDGET_STATEMENT else f" 'eval.budget_prompt_template=\"{trained}\"'"
    if statement is None:
        return (f"{run_dir} trained with its budget stated in the prompt ({trained!r}) but this eval states none: "
                f"pass eval.state_budget_in_prompt=true{template}")
    return (f"{run_dir} trained with the statement {trained!r} but this eval states {statement!r}: "
            + (f"pass{template}" if template else "drop eval.budget_prompt_template (its default is the training one)"))


# ------------------------------------------------------------------------------------------- training
class TrainBudgets:
    """Per-prompt thinking budgets of the training rollouts (``grpo.train_budget``; see the module docstring)."""

    def __init__(self, cfg: Any, seed: int):
        self.mode, self.seed = cfg.mode, seed
        self.fixed = cfg.thinking
        self.choices = list(cfg.choices)
        self.weights = list(cfg.weights) or None
        self.answer_tokens = cfg.answer_tokens
        self.template = cfg.prompt_template if cfg.state_in_prompt and self.mode != "none" else None

    @property
    def active(self) -> bool:
        return self.mode != "none"

    def draw(self, step: int, index: int) -> int | None:
        """The budget of the prompt at stream position ``index`` in ``step`` (None = no cap)."""
        if self.mode == "fixed":
            return self.fixed
        if self.mode == "sample":
            rng = random.Random(f"{self.seed}/train_budget/{step}/{index}")
            return rng.choices(self.choices, weights=self.weights)[0]
        return None

    def assign(self, samples: Sequence[Sample], step: int, first_index: int) -> tuple[list[Sample], list[int | None]]:
        """(samples, with the budget stated if asked; [B] budgets) for prompts at stream positions first_index..."""
        budgets = [self.draw(step, first_index + i) for i in range(len(samples))]
        if self.template is not None:
            samples = [state_budget(s, b, self.template) for s, b in zip(samples, budgets)]
        return list(samples), budgets

    def generate(self, engine: Any, samples: Sequence[Sample], budgets: Sequence[int | None], n: int,
                 params: Any) -> list:
        """``n`` rollouts per sample under its budget, prompt-major [B*n]: one engine call per distinct budget."""
        if not self.active:
            return engine.generate(samples, n=n, params=params)
        from rlvr.rollout.budget import ThinkingBudget

        groups: dict[int | None, list[int]] = {}
        for i, b in enumerate(budgets):
            groups.setdefault(b, []).append(i)
        out: list = [None] * (len(samples) * n)
        for j, (budget, rows) in enumerate(groups.items()):
            p = replace(params, seed=None if params.seed is None else params.seed + j * GROUP_SEED_OFFSET,
                        budget=None if budget is None else ThinkingBudget(thinking=budget, answer=self.answer_tokens))
            rollouts = engine.generate([samples[i] for i in rows], n=n, params=p)  # [len(rows)*n] prompt-major
            for k, i in enumerate(rows):
                out[i * n:(i + 1) * n] = rollouts[k * n:(k + 1) * n]
        return out

    def metrics(self, budgets: Sequence[int | None], rollouts: Sequence[Any], accelerator: Any = None) -> dict:
        """``budget/thinking_mean`` (mean B over capped prompts) and ``budget/forced_frac`` (rollouts cut at B), over
        every prompt sampled this step; whole-batch under DDP (a collective then)."""
        import torch

        capped = [b for b in budgets if b is not None]
        local = torch.tensor([float(sum(capped)), float(len(capped)), float(sum(r.budget_forced for r in rollouts)),
                              float(len(rollouts))], dtype=torch.float64)  # [4] sums
        if accelerator is not None and accelerator.num_processes > 1:
            local = accelerator.reduce(local.to(accelerator.device), reduction="sum").cpu()
        total_b, count, forced, rows = local.tolist()
        return {"budget/thinking_mean": total_b / count if count else math.nan,
                "budget/forced_frac": forced / rows if rows else math.nan}

    @staticmethod
    def annotate(rows: list[dict], rollouts: Sequence[Any], budgets: Sequence[int | None], n: int) -> list[dict]:
        """Add budget, thinking_tokens and budget_forced to samples.jsonl rows (row k = rollout k of the round)."""
        for k, row in enumerate(rows):
            row |= {"budget": budgets[k // n], "thinking_tokens": rollouts[k].thinking_tokens,
                    "budget_forced": rollouts[k].budget_forced}
        return rows


def validate_budgets(cfg: Any) -> list[Problem]:
    """Every problem of ``grpo.train_budget``, ``grpo.budget_eval_every`` and ``budget_eval`` (when it runs)."""
    from rlvr.eval.sweep import validate_eval_settings

    g, tb = cfg.grpo, cfg.grpo.train_budget
    key = "grpo.train_budget"
    problems: list[Problem] = []
    if tb.mode not in TRAIN_BUDGET_MODES:
        problems.append(Problem(f"{key}.mode", f"unknown mode {tb.mode!r}",
                                f"use one of {', '.join(TRAIN_BUDGET_MODES)}"))
    budgets: list[int | None] = []
    if tb.mode == "fixed":
        budgets = [tb.thinking]
        if tb.thinking is None or tb.thinking < 0:
            problems.append(Problem(f"{key}.thinking", f"fixed mode needs a budget >= 0, got {tb.thinking!r}",
                                    "e.g. grpo.train_budget.thinking=32 (0 = answer without thinking)"))
    elif tb.mode == "sample":
        budgets = list(tb.choices)
        if not budgets:
            problems.append(Problem(f"{key}.choices", "sample mode has no budgets to draw from",
                                    "e.g. grpo.train_budget.choices=[8,16,32] (null = no cap)"))
        if any(b is not None and b < 0 for b in budgets):
            problems.append(Problem(f"{key}.choices", f"{budgets} has a negative budget",
                                    "use budgets >= 0 (0 = no thinking) or null (no cap)"))
        w = list(tb.weights)
        if w and (len(w) != len(budgets) or any(x < 0 for x in w) or not sum(w) > 0):
            problems.append(Problem(f"{key}.weights", f"{w} must be one weight >= 0 per choice ({len(budgets)}), "
                                    "not all 0", "give one weight per choice, or [] for uniform"))
    if tb.mode != "none":
        if tb.answer_tokens is None or tb.answer_tokens < 1:
            problems.append(Problem(f"{key}.answer_tokens", f"must be >= 1, got {tb.answer_tokens!r}: a forced end "
                                    "of thinking needs room for the answer", "e.g. grpo.train_budget.answer_tokens=16"))
        elif g.max_new_tokens is not None and tb.answer_tokens >= g.max_new_tokens:
            problems.append(Problem(f"{key}.answer_tokens", f"{tb.answer_tokens} leaves no room for thinking in "
                                    f"grpo.max_new_tokens={g.max_new_tokens} (the cap on thinking + answer)",
                                    "lower answer_tokens (~16 fits \\boxed{} answers) or raise grpo.max_new_tokens"))
        elif g.max_new_tokens is not None:
            too_big = [b for b in budgets if b is not None and b >= 0 and b + tb.answer_tokens > g.max_new_tokens]
            if too_big:
                problems.append(Problem(f"{key}", f"budget(s) {too_big} + answer_tokens={tb.answer_tokens} exceed "
                                        f"grpo.max_new_tokens={g.max_new_tokens}, which caps thinking + answer: a "
                                        "rollout cut at B would be truncated before its answer",
                                        f"raise grpo.max_new_tokens to >= {max(too_big) + tb.answer_tokens + 3} "
                                        "(+3 for the tags), or lower the budgets / answer_tokens"))
        if tb.state_in_prompt and (p := template_problem(f"{key}.prompt_template", tb.prompt_template)):
            problems.append(p)
    every = g.budget_eval_every
    if every is None or every < 0:
        problems.append(Problem("grpo.budget_eval_every", f"must be >= 0, got {every!r}", "0 turns the sweep off"))
    elif every > 0:
        problems += validate_eval_settings(cfg.budget_eval, "budget_eval")
        e = cfg.budget_eval
        if (tb.mode != "none" and tb.state_in_prompt and e.state_budget_in_prompt
                and e.budget_prompt_template != tb.prompt_template):
            problems.append(Problem("budget_eval.budget_prompt_template", f"{e.budget_prompt_template!r} differs "
                                    f"from the training statement {tb.prompt_template!r}: the sweep would ask in a "
                                    "form the policy was not trained on", "leave budget_eval.budget_prompt_template "
                                    "at its default: the sweep follows grpo.train_budget.prompt_template"))
    return problems


# ------------------------------------------------------------------------------------------- the sweep
class _AtStep:
    """A wandb run whose ``log`` lands on a fixed step: the charts of the sweep at step N go to step N (wandb
    drops rows logged below its current step, and the training row for step N comes after the sweep)."""

    def __init__(self, run: Any, step: int):
        self.wandb_run = self if run is not None else None
        self._run, self._step = run, step

    def log(self, data: dict) -> None:
        self._run.log(data, step=self._step)


def headline(rows: Sequence[dict[str, Any]], prefix: str = "budget_eval") -> dict[str, float]:
    """Metrics-row numbers of one sweep: pass@1 per (split, budget); pass@1 and thinking tokens over splits."""
    out: dict[str, float] = {}
    cells: dict[Any, list[dict]] = {}
    for r in rows:
        b = "Bnone" if r["budget"] is None else f"B{r['budget']}"
        out[f"{prefix}/{r['split']}/{b}/pass@1"] = r["pass@1"]
        cells.setdefault(b, []).append(r)
    for b, rs in cells.items():
        accs = [r["pass@1"] for r in rs if r["pass@1"] is not None and not math.isnan(r["pass@1"])]
        out[f"{prefix}/mean/{b}/pass@1"] = sum(accs) / len(accs) if accs else math.nan
        out[f"{prefix}/mean/{b}/thinking_tokens"] = sum(r["mean_thinking_tokens"] for r in rs) / len(rs)
    return out


_OWN_SWEEP = re.compile(r"^budget_sweep_step(\d+)\.(json|csv)$")


class BudgetSweeper:
    """The periodic accuracy-vs-budget sweep of ``rlvr grpo`` (rank 0 only; see the module docstring)."""

    def __init__(self, cfg: Any, task: Any, tokenizer: Any, out: Path, tracker: Any, console: Any,
                 resumed_step: int):
        from omegaconf import OmegaConf

        from rlvr.runs.layout import describe_model, tokens_at, train_tokens_by_step

        g, tb = cfg.grpo, cfg.grpo.train_budget
        self.cfg, self.task, self.tokenizer, self.out = cfg, task, tokenizer, out
        self.tracker, self.console = tracker, console
        self.every, self.max_steps = g.budget_eval_every, g.max_steps
        self.eval_cfg = cfg.budget_eval
        if tb.mode != "none" and tb.state_in_prompt:  # ask in the form the policy is trained on
            self.eval_cfg = OmegaConf.merge(cfg.budget_eval, {"state_budget_in_prompt": True,
                                                              "budget_prompt_template": tb.prompt_template})
        start = cfg.model.name_or_path
        self.start_tokens = (describe_model(start).train_tokens or 0.0) if start else 0.0
        own = tokens_at(train_tokens_by_step(out), resumed_step) if resumed_step else 0.0
        self.tokens = self.start_tokens + (own or 0.0)  # cumulative train tokens so far
        self._runtime = None
        self._drop_stale(resumed_step)

    def _drop_stale(self, step: int) -> None:
        """Remove this run's own sweeps past ``step``: they describe weights of an abandoned attempt."""
        stale = [p for p in (self.out / "eval").glob("budget_sweep_step*.*")
                 if (m := _OWN_SWEEP.match(p.name)) and int(m.group(1)) > step]
        for p in stale:
            p.unlink()
        if stale:
            self.console.print(f"[yellow]removed {len(stale)} budget sweep file(s) past step {step} (an earlier "
                               "attempt's)[/yellow]")

    def due(self, step: int) -> bool:
        return bool(self.every) and (step % self.every == 0 or step == self.max_steps)

    def trained(self, tokens: float | None) -> None:
        """Count one step's train tokens (metrics ``tokens``: completion tokens in the loss, whole batch)."""
        self.tokens += float(tokens or 0.0)

    def model_path(self, step: int) -> str | None:
        """Where these weights are (or will be) saved: the starting model, a checkpoint, final/, or None."""
        g = self.cfg.grpo
        if step == 0:
            return self.cfg.model.name_or_path
        if step == self.max_steps:
            return str(self.out / "final")
        if g.save_every and step % g.save_every == 0:
            return str(self.out / "checkpoints" / f"step_{step}")
        return None

    def __call__(self, policy: Any, step: int) -> dict[str, float]:
        """Sweep, write the files, redraw the plots; returns the headline metrics."""
        from rlvr.eval.sweep import sweep_checkpoint
        from rlvr.rewards.runtime import RewardRuntime, RewardsConfig
        from rlvr.runs.layout import Checkpoint

        e = self.eval_cfg
        if self._runtime is None:  # its own pool: eval reports verifier errors instead of aborting on them
            self._runtime = RewardRuntime(RewardsConfig(num_workers=e.verifier_workers,
                                                        timeout_s=e.verifier_timeout_s, abort_error_rate=1.0))
        started = time.perf_counter()
        ckpt = Checkpoint(self.model_path(step), f"step {step}", step, self.tokens, str(self.out))
        rows, path = sweep_checkpoint(policy, self.tokenizer, self.task, e, ckpt, self.out, self._runtime,
                                      seed=self.cfg.seed, think_open=self.cfg.task.think_open,
                                      think_close=self.cfg.task.think_close)
        metrics = headline(rows)
        means = "  ".join(f"{k.split('/')[2]} {100 * v:.0f}%" for k, v in metrics.items()
                          if k.startswith("budget_eval/mean/") and k.endswith("pass@1") and not math.isnan(v))
        self.console.print(f"budget sweep @ step {step} ({time.perf_counter() - started:.0f}s, pass@1 over splits): "
                           f"{means}  -> {path}")
        if e.plot:
            from rlvr.eval.plots import make_plots

            try:  # the plots are a view of eval/: a failure must not end the training run
                make_plots(self.out, tracker=_AtStep(getattr(self.tracker, "wandb_run", None), step))
            except Exception as exc:  # noqa: BLE001
                self.console.print(f"[yellow]plots failed ({exc!r}); `rlvr plot {self.out}` redraws them[/yellow]")
        return metrics

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None

