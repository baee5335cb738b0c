"""The thinking budget stated in a prompt (L1, arXiv 2503.04697), shared by training and evaluation.

With ``grpo.train_budget.state_in_prompt`` (training) / ``eval.state_budget_in_prompt`` (evaluation) the budget is
written into the prompt: ``template.format(budget=B)`` (default ``"Think for {budget} tokens."``) on a new line at
the end of the last user message. A user-message suffix rather than a system message: every chat template has a
user turn (some reject system messages) and the tiny model saw no system prompts in SFT. A null budget (no cap)
gets no line, in training and in evaluation alike. ``rlvr eval`` warns when it evaluates a run trained with
statements under another protocol (``statement_mismatch``).

It lives under eval/ so that ``rlvr eval`` and the in-training sweep state budgets without importing the trainer;
``rlvr.train.budgets`` states training budgets with the same functions.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rlvr.config.grpo import BUDGET_STATEMENT
from rlvr.config.loading import Problem
from rlvr.tasks.base import Sample


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


def statement_template(e: Any) -> str | None:
    """The budget template an eval config (``eval`` / ``budget_eval``) states in its prompts, or None (plain)."""
    state = e.get("state_budget_in_prompt", False) if isinstance(e, DictConfig) else getattr(
        e, "state_budget_in_prompt", False)
    return e.budget_prompt_template if state else None


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
