"""Thinking budgets inside ``rlvr grpo``: the budget each training prompt gets and its rollouts under it, and the
validation of the budget settings (the periodic sweep on the policy is ``rlvr.eval.in_training``).

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

The statement (``state_budget``, ``template_problem``, ``trained_statement``, ``statement_mismatch``) lives in
    ``rlvr.eval.budget_statement``, shared with ``rlvr eval`` and the in-training sweep; imported here for the
    trainer (and for callers of the names that used to live here).
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, Sequence

from rlvr.config import TRAIN_BUDGET_MODES
from rlvr.config.loading import Problem
from rlvr.eval.budget_statement import state_budget, statement_mismatch, template_problem, trained_statement
from rlvr.tasks.base import Sample

__all__ = ["TrainBudgets", "state_budget", "statement_mismatch", "template_problem", "trained_statement",
           "validate_budgets"]

GROUP_SEED_OFFSET = 104_729  # seed distance between the budget groups of one round (a prime)


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

    @staticmethod
    def annotate(rows: list[dict], rollouts: Sequence[Any], budgets: Sequence[int | None], n: int) -> list[dict]:
        """Add budget, thinking_tokens and budget_forced to samples.jsonl rows (row k = rollout k of the round)."""
        for k, row in enumerate(rows):
            row |= {"budget": budgets[k // n], "thinking_tokens": rollouts[k].thinking_tokens,
                    "budget_forced": rollouts[k].budget_forced}
        return rows


def validate_budgets(cfg: Any) -> list[Problem]:
    """Every problem of ``grpo.train_budget``, ``grpo.budget_eval_every`` and ``budget_eval`` (when it runs)."""
    from rlvr.eval.cli import validate_eval_settings

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
