"""What an evaluation will cost, said before it runs, and a progress bar with an ETA while it does.

The estimate (``EvalCost``)
    generations = the product of the eval's factors (budgets x splits x problems x n for a sweep; splits x
    problems for the greedy held-out eval); new tokens <= generations x max_new_tokens (every completion at the
    cap: an upper bound). Seconds, best source first:

    1. a throughput measured in this process on the same model (``record``: each sweep and held-out eval records
       its generated tokens / wall seconds, scoring included; ``observe_rollout`` can feed it the training step's
       own HF rollout throughput): tokens / rate, and with the mean completion length of the same kind of eval,
       the expected time beside the at-the-cap bound;
    2. else from the parameter count: decode ~ 2 x params FLOPs per generated token plus 2 x params per prompt
       token (prefill), at an assumed sustained ``FLOPS[device]``, plus ``STEP_OVERHEAD_S[device]`` per decode
       step of each generate() call (what dominates a 1M-parameter model). The CPU figure is calibrated on
       issue 16's measurement: SmolLM2-135M sweeping 600 completions (<= 77k new tokens + ~75k prompt tokens)
       in 208-257 s on 2 cores = ~1.6e11 FLOP/s; 1e11 keeps the estimate on the slow side.

``progress`` is the bar: one tick per cell (a split x budget of a sweep, a split of the held-out eval, the
granularity the engine is called at, so batching and seeding are untouched), with elapsed time, ETA and the
estimate in its description. It nests inside the training bar (rich >= 14 allows nested live displays) and
disappears when done (transient), leaving the one-line result the caller prints.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

FLOPS = {"cpu": 1e11, "cuda": 2e13, "mps": 2e12}     # assumed sustained FLOP/s of HF generate per device type
STEP_OVERHEAD_S = {"cpu": 0.015, "cuda": 0.02, "mps": 0.02}  # per decode step of a generate() call


@dataclass(frozen=True)
class Throughput:
    tokens_per_s: float
    tokens_per_generation: float | None
    source: str


_MEASURED: dict[tuple[int, str], Throughput] = {}


def record(model: Any, kind: str, tokens: float, seconds: float, generations: int | None = None,
           source: str = "") -> None:
    """Remember a measured throughput of ``model`` (``kind``: "sweep", "heldout" or "rollout")."""
    if seconds > 0 and tokens > 0:
        per = tokens / generations if generations else None
        _MEASURED[(id(model), kind)] = Throughput(tokens / seconds, per, source or kind)


def measured(model: Any, kind: str) -> Throughput | None:
    """The last throughput of ``model`` for ``kind``; else another kind's rate (its lengths do not transfer)."""
    if model is None:
        return None
    if (own := _MEASURED.get((id(model), kind))) is not None:
        return own
    others = [t for (m, _), t in _MEASURED.items() if m == id(model)]
    return Throughput(others[-1].tokens_per_s, None, others[-1].source) if others else None


def observe_rollout(model: Any, row: dict[str, Any], engine: Any = "hf") -> None:
    """Feed a GRPO step's metrics row (``perf/rollout_tokens_per_s``) in as the model's rollout throughput; only
    the HF engine's (``engine``: "hf", "vllm" or the engine object), the engine the evals use (vLLM's rate would
    overstate theirs)."""
    rate = row.get("perf/rollout_tokens_per_s")
    name = engine if isinstance(engine, str) else type(engine).__name__.lower()
    if name.startswith("hf") and rate:
        _MEASURED[(id(model), "rollout")] = Throughput(float(rate), None, "training rollout")


def model_size(model: Any) -> tuple[int | None, str]:
    """(parameters, device type) of a loaded model; (None, "cpu") when it has none to count."""
    try:
        params = list(model.parameters())
    except AttributeError:
        return None, "cpu"
    if not params:
        return None, "cpu"
    return sum(p.numel() for p in params), params[0].device.type


def _num(x: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= size:
            return f"{x / size:.{0 if x >= 100 * size else 1}f}{unit}"
    return f"{x:.0f}"


def duration(seconds: float) -> str:
    if seconds < 1:
        return "1 s"  # read as "<= ~1 s": never print a cost of 0
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class EvalCost:
    """The size of one eval and what it will take (module docstring)."""

    what: str                                   # "budget sweep @ step 0"
    factors: tuple[tuple[int, str], ...]        # ((6, "budgets"), (4, "splits"), (25, "problems"), (4, "n="))
    max_new_tokens: int
    generate_calls: int                         # engine generate() calls: each runs up to max_new_tokens steps
    kind: str = "sweep"                         # "sweep" | "heldout": whose measured lengths apply
    prompt_tokens: float = 0.0                  # mean prompt tokens per generation (prefill), 0 = not counted

    @property
    def generations(self) -> int:
        return math.prod(count for count, _ in self.factors)

    @property
    def max_tokens(self) -> int:
        return self.generations * self.max_new_tokens

    def seconds(self, params: int | None = None, device: str = "cpu",
                rate: Throughput | None = None) -> tuple[float | None, float | None, str]:
        """(expected seconds or None, upper-bound seconds or None, how they were estimated)."""
        if rate is not None:
            upper = self.max_tokens / rate.tokens_per_s
            how = f"at the last measured {rate.tokens_per_s:,.0f} tok/s ({rate.source})"
            if rate.tokens_per_generation is None:
                return None, upper, how
            mean = min(rate.tokens_per_generation, self.max_new_tokens)
            return self.generations * mean / rate.tokens_per_s, upper, \
                f"{how} and {mean:.0f} tokens/generation"
        if params is None:
            return None, None, "no parameter count or measured throughput to time it by"
        flops = 2.0 * params * (self.max_tokens + self.generations * self.prompt_tokens)
        dev = device if device in FLOPS else "cpu"
        upper = flops / FLOPS[dev] + self.generate_calls * self.max_new_tokens * STEP_OVERHEAD_S[dev]
        return None, upper, (f"from {_num(params)} params on {dev}: 2 x params FLOPs/token at ~{FLOPS[dev]:.0e} "
                             f"FLOP/s + {STEP_OVERHEAD_S[dev]} s/decode step; nothing measured yet")

    def line(self, params: int | None = None, device: str = "cpu", rate: Throughput | None = None) -> str:
        """One line for the console, e.g. "budget sweep @ step 0: 6 budgets x 4 splits x 25 problems x n=4 =
        2,400 generations, <= 307k new tokens (128 each), ~1.2 min at the last measured ..."."""
        parts = " x ".join(f"{name}{count}" if name.endswith("=") else
                           f"{count:,} {name[:-1] if count == 1 and name.endswith('s') else name}"
                           for count, name in self.factors)
        text = (f"{self.what}: {parts} = {self.generations:,} generations, <= {_num(self.max_tokens)} new "
                f"tokens ({self.max_new_tokens} each)")
        expected, upper, how = self.seconds(params, device, rate)
        if expected is not None:
            return f"{text}, ~{duration(expected)} {how} (<= {duration(upper)} at the cap)"
        if upper is not None:
            return f"{text}, <= ~{duration(upper)} {how}"
        return f"{text} ({how})"

    def describe(self, model: Any = None) -> str:
        """``line`` for a loaded model: its parameter count, device and measured throughput."""
        params, device = model_size(model) if model is not None else (None, "cpu")
        return self.line(params, device, measured(model, self.kind))

    def estimate_s(self, model: Any = None) -> float | None:
        params, device = model_size(model) if model is not None else (None, "cpu")
        expected, upper, _ = self.seconds(params, device, measured(model, self.kind))
        return expected if expected is not None else upper


def sweep_cost(eval_cfg: Any, splits: Sequence[str], what: str = "budget sweep",
               prompt_tokens: float = 0.0) -> EvalCost:
    """The cost of sweeping one model with an ``EvalConfig`` (``eval.*`` / ``budget_eval.*``) over ``splits``."""
    e = eval_cfg
    rows = e.num_problems * e.n
    cells = len(splits) * len(e.budgets)
    return EvalCost(what, ((len(e.budgets), "budgets"), (len(splits), "splits"), (e.num_problems, "problems"),
                           (e.n, "n=")), e.max_new_tokens, cells * math.ceil(rows / max(e.batch_size, 1)),
                    "sweep", prompt_tokens)


def heldout_cost(splits: Sequence[str], num_problems: int, max_new_tokens: int, batch_size: int,
                 what: str = "held-out eval", prompt_tokens: float = 0.0) -> EvalCost:
    """The cost of the greedy held-out eval (n=1, no cap) of ``num_problems`` per split."""
    return EvalCost(what, ((len(splits), "splits"), (num_problems, "problems")), max_new_tokens,
                    len(splits) * math.ceil(num_problems / max(batch_size, 1)), "heldout", prompt_tokens)


def prompt_tokens(tokenizer: Any, samples: Sequence[Any], limit: int = 4) -> float:
    """Mean prompt length in tokens over the first ``limit`` samples, as the chat template renders them; 0 when it
    cannot be told (the estimate then leaves prefill out)."""
    lengths = []
    for sample in list(samples)[:limit]:
        try:
            ids = tokenizer.apply_chat_template(list(sample.prompt), add_generation_prompt=True, tokenize=True)
            lengths.append(len(ids["input_ids"] if isinstance(ids, dict) else ids))
        except Exception:  # noqa: BLE001 - a tokenizer without a chat template: no prefill term
            return 0.0
    return sum(lengths) / len(lengths) if lengths else 0.0


@contextmanager
def progress(console: Any, label: str, total: int, estimate_s: float | None = None,
             enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A transient rich bar of ``total`` ticks with elapsed time and ETA; yields ``tick(description)``. Disabled
    (or without a console) it yields a no-op."""
    if not enabled or console is None or total <= 0:
        yield lambda description="": None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    hint = f" (est. {duration(estimate_s)})" if estimate_s is not None else ""
    bar = Progress(TextColumn(f"[bold]{label}[/bold]{hint}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                   TextColumn("{task.description}"), console=console, transient=True)
    with bar:
        task = bar.add_task("", total=total)
        yield lambda description="": bar.update(task, advance=1, description=description)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def eval_steps(every: int, max_steps: int, start_step: int = 0) -> list[int]:
    """The steps an eval runs at in a GRPO run: the start (a fresh run), every ``every`` steps, and the end."""
    if not every:
        return []
    due = [s for s in range(start_step + 1, max_steps + 1) if s % every == 0 or s == max_steps]
    return ([0] if start_step == 0 else []) + due


def grpo_plan(cfg: Any, eval_splits: Sequence[str], sweep_splits: Sequence[str], device: str = "cpu",
              start_step: int = 0) -> list[str]:
    """What the evals inside ``rlvr grpo`` will cost over the whole run, one line each, printed at start-up:
    the greedy held-out eval (``grpo.eval_every``) and the budget sweep (``grpo.budget_eval_every``; when off
    for a large model, what turning it on would cost)."""
    from rlvr.config.model_size import SMALL_MODEL_PARAMS, model_params

    g, e = cfg.grpo, cfg.budget_eval
    params = model_params(cfg.model)
    size = f"{_num(params)} params" if params else "unknown size"
    lines = []
    held = eval_steps(g.eval_every, g.max_steps, start_step)
    one = heldout_cost(eval_splits, g.eval_num_problems, g.eval_max_new_tokens, g.eval_batch_size, "held-out eval")
    if held:
        lines.append(f"{len(held)} x {one.line(params, device)} (steps {_steps(held)})")
    else:
        lines.append("held-out eval: off (grpo.eval_every=0)")
    sweep = sweep_cost(e, sweep_splits or list(e.splits) or eval_splits, "budget sweep")
    sweeps = eval_steps(g.budget_eval_every, g.max_steps, start_step)
    if sweeps:
        lines.append(f"{len(sweeps)} x {sweep.line(params, device)} (steps {_steps(sweeps)})")
    elif params is None or params > SMALL_MODEL_PARAMS:
        lines.append(f"budget sweep: off by default for a model over {_num(SMALL_MODEL_PARAMS)} params ({size}); "
                     f"grpo.budget_eval_every=N turns it on, each: {sweep.line(params, device)}")
    else:
        lines.append("budget sweep: off (grpo.budget_eval_every=0)")
    return lines


def _steps(steps: Sequence[int]) -> str:
    return ", ".join(map(str, steps)) if len(steps) <= 6 else f"{steps[0]}, {steps[1]}, ..., {steps[-1]}"
