"""The accuracy-vs-thinking-budget sweep inside ``rlvr grpo`` (rank 0 only).

The sweep (``grpo.budget_eval_every``, ``BudgetSweeper``)
    At step 0 (a fresh start), every N steps and at the end, rank 0 runs ``rlvr.eval.budget_sweep.sweep_checkpoint`` on
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
import re
import time
from pathlib import Path
from typing import Any, Sequence


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
        from rlvr.eval.budget_sweep import sweep_checkpoint
        from rlvr.rewards.runtime import eval_runtime
        from rlvr.runs.layout import Checkpoint

        e = self.eval_cfg
        if self._runtime is None:  # its own pool: eval reports verifier errors instead of aborting on them
            self._runtime = eval_runtime(self.cfg.rewards)
        started = time.perf_counter()
        ckpt = Checkpoint(self.model_path(step), f"step {step}", step, self.tokens, str(self.out))
        rows, path = sweep_checkpoint(policy, self.tokenizer, self.task, e, ckpt, self.out, self._runtime,
                                      seed=self.cfg.seed, think_open=self.cfg.task.think_open,
                                      think_close=self.cfg.task.think_close, console=self.console,
                                      what=f"budget sweep @ step {step}")
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

