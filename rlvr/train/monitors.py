"""Reward-hacking monitors for GRPO: a metric per monitor every step, a console warning and flagged samples when
one trips. A policy optimised against a verifier finds whatever the verifier pays for; these watch for the
usual ways that differs from "solved the problem":

- ``reward_vs_heldout``   training reward rising (least-squares rise over ``divergence_window`` steps) while
                          held-out accuracy between the two latest evals is flat or falling;
- ``empty_thinking``      share of rewarded completions whose thinking block is missing or near-empty;
- ``no_reasoning``        share of rewarded completions that think, but too little or with no reasoning line
                          (a line with a digit, or with ``min_reasoning_words`` words);
- ``length``              mean completion length vs the first ``baseline_steps`` steps: collapse or explosion
                          (also: most completions suddenly hitting the length cap);
- ``code_suspicious``     code-verified completions that exit early (the code verifier's ``early_exit``), pass
                          with zero tests, or call exit / skip / builtins-patching / frame-inspection APIs;
- ``extraction_disagreement``  rewarded completions that a strict math check rejects (explicit answer required,
                          no last-number fallback), or that the math verifier rewarded only via a fallback rule.

Metrics: ``monitor/<value>`` (NaN when not computable, e.g. no rewarded completion) and
``monitor/<name>/tripped`` (0/1), plus ``monitor/tripped`` (how many tripped). Flagged samples are appended to
``<output_dir>/flagged.jsonl`` (step, monitor, sample id, prompt, completion, answer, reward, detail), at most
``max_flagged_per_step`` per monitor and step. Thresholds: ``MonitorConfig`` in rlvr.config.schema (``monitors.*``).

In the trainer (rank 0 only; ``rlvr.train.grpo_setup`` and ``rlvr.train.grpo_report``), after the step's eval::

    monitors = RewardHackingMonitors(cfg, out, console=console)           # once, before the loop
    monitors.load_state_dict(state.monitors)                              # a resume: baselines and history back
    row |= monitors.update_scored(step, rounds, heldout=eval_metrics)     # eval_metrics: {"eval/<split>/accuracy"}
    TrainerState(step, position, monitors.state_dict())                   # into every checkpoint

``replay_samples(run_dir)`` runs the same monitors over an existing run's ``samples.jsonl``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

NAMES = ("reward_vs_heldout", "empty_thinking", "no_reasoning", "length", "code_suspicious",
         "extraction_disagreement")
_SUSPICIOUS_CODE = re.compile(
    r"\b(?:sys\.exit|os\._exit|os\.kill|exit\s*\(|quit\s*\(|SystemExit|atexit|unittest\.skip|pytest\.skip|SkipTest|"
    r"__builtins__|builtins\.|sys\.modules|sys\._getframe|inspect\.stack|inspect\.currentframe|gc\.get_objects|"
    r"sys\.settrace|signal\.)")
_DIGIT = re.compile(r"\d")


@dataclass
class MonitorRow:
    """One scored completion, as the monitors see it."""

    sample_id: str
    prompt: str
    completion: str
    answer: Any
    reward: float  # NaN = no trusted reward
    accuracy: float  # primary verifier's score; NaN = broke / did not apply
    num_tokens: int
    thinking_tokens: int | None = None  # engine count; None = estimated from the text (approx_tokens)
    truncated: bool = False
    results: Mapping[str, Any] = field(default_factory=dict)  # verifier key -> VerifyResult
    index: int = 0


def rows_from(rollouts: Sequence[Any], rewards: Sequence[float], accuracy: Sequence[float], samples: Sequence[Any],
              results: Sequence[Mapping[str, Any]] | None = None) -> list[MonitorRow]:
    """Rows from rollouts [N], rewards [N], accuracy [N] and samples [B] (prompt-major groups) or [N]."""
    group = max(len(rollouts) // max(len(samples), 1), 1)
    rows = []
    for i, r in enumerate(rollouts):
        s = samples[i // group] if len(samples) != len(rollouts) else samples[i]
        rows.append(MonitorRow(r.sample_id, s.prompt[-1]["content"], r.text, s.answer, float(rewards[i]),
                               float(accuracy[i]), r.num_tokens, r.thinking_tokens, r.truncated,
                               results[i] if results is not None else {}, r.index))
    return rows


def thinking_body(text: str, think_open: str = "<think>", think_close: str = "</think>") -> str | None:
    """The text inside the thinking block; None when the completion never closes one."""
    end = text.find(think_close)
    if end < 0:
        return None
    start = text.find(think_open)
    start = start + len(think_open) if 0 <= start < end else 0
    return text[start:end]


_TOKENISH = re.compile(r"\d|[^\W\d_]+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """Token count without a tokenizer: each digit, word and punctuation mark is one (Qwen-style tokenizers split
    digits singly, so "37+4=41" is 7 tokens as it is for the tiny model). Only used when the engine's count is
    missing (replays of samples.jsonl, hand-built rows)."""
    return len(_TOKENISH.findall(text))


def _get(cfg: Any, key: str) -> Any:
    return cfg[key] if isinstance(cfg, Mapping) else getattr(cfg, key)


class RewardHackingMonitors:
    def __init__(self, cfg: Any = None, output_dir: str | Path | None = None, *, console: Any = None,
                 think_open: str | None = None, think_close: str | None = None):
        """``cfg``: a MonitorConfig, or a whole GRPO run config (its ``monitors`` and task's think tags)."""
        from rlvr.config import MonitorConfig

        if cfg is not None and hasattr(cfg, "monitors"):
            task = getattr(cfg, "task", None)
            think_open = think_open or (task.think_open if task is not None else None)
            think_close = think_close or (task.think_close if task is not None else None)
            cfg = cfg.monitors
        self.cfg = cfg if cfg is not None else MonitorConfig()
        self.think_open, self.think_close = think_open or "<think>", think_close or "</think>"
        self.flagged_path = Path(output_dir) / "flagged.jsonl" if output_dir is not None else None
        self.console = console
        self.rewards: list[tuple[int, float]] = []  # (step, mean reward)
        self.heldout: list[tuple[int, float]] = []  # (step, mean held-out accuracy over splits)
        self.lengths: list[float] = []  # mean completion length of the baseline steps
        self.truncs: list[float] = []
        self.trips: dict[str, dict[str, Any]] = {}  # name -> {count, first_step, last_step, last_detail}
        self._warned: dict[str, int] = {}
        self._strict = None

    # -- state (a resumed run keeps its baseline and history) ----------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"rewards": [list(p) for p in self.rewards], "heldout": [list(p) for p in self.heldout],
                "lengths": list(self.lengths), "truncs": list(self.truncs), "trips": dict(self.trips)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rewards = [tuple(x) for x in state.get("rewards", [])]
        self.heldout = [tuple(x) for x in state.get("heldout", [])]
        self.lengths, self.truncs = list(state.get("lengths", [])), list(state.get("truncs", []))
        self.trips = dict(state.get("trips", {}))

    def summary(self) -> dict[str, Any]:
        """For the run card: per monitor, how often it tripped, first and last step, the last detail."""
        return {name: self.trips.get(name, {"count": 0}) for name in NAMES}

    # -- inputs --------------------------------------------------------------------------------------------
    def observe_heldout(self, step: int, metrics: Mapping[str, Any] | None) -> None:
        """Record an eval: ``{"eval/<split>/accuracy": x}`` (other keys ignored); the mean over splits is used."""
        accs = [float(v) for k, v in (metrics or {}).items()
                if k.endswith("/accuracy") and v is not None and math.isfinite(float(v))]
        if accs:
            self.heldout = [p for p in self.heldout if p[0] != step] + [(step, sum(accs) / len(accs))]

    def update_scored(self, step: int, rounds: Sequence[Any], heldout: Mapping[str, Any] | None = None
                      ) -> dict[str, float]:
        """The trainer's call: every ScoredRound of the step (rlvr.rewards.scoring)."""
        rows = [row for sc in rounds for row in rows_from(sc.rollouts, sc.rewards.tolist(), sc.accuracy.tolist(),
                                                          sc.samples, sc.results)]
        return self.update_rows(step, rows, heldout)

    def update(self, step: int, rollouts: Sequence[Any], rewards: Sequence[float], accuracy: Sequence[float],
               samples: Sequence[Any], results: Sequence[Mapping[str, Any]] | None = None,
               heldout: Mapping[str, Any] | None = None) -> dict[str, float]:
        return self.update_rows(step, rows_from(rollouts, rewards, accuracy, samples, results), heldout)

    # -- the monitors --------------------------------------------------------------------------------------
    def update_rows(self, step: int, rows: Sequence[MonitorRow], heldout: Mapping[str, Any] | None = None
                    ) -> dict[str, float]:
        c = self.cfg
        if not _get(c, "enabled") or not rows:
            return {}
        if heldout:
            self.observe_heldout(step, heldout)
        out: dict[str, float] = {}
        tripped: dict[str, tuple[str, list[tuple[MonitorRow, str]]]] = {}  # name -> (detail, flagged rows)
        rewarded = [r for r in rows if math.isfinite(r.accuracy) and r.accuracy >= _get(c, "rewarded_threshold")]
        out["monitor/rewarded"] = float(len(rewarded))
        enough = len(rewarded) >= _get(c, "min_rewarded")

        self._thinking(rewarded, enough, out, tripped)
        self._length(rows, out, tripped)
        self._code(rows, out, tripped)
        self._extraction(rewarded, out, tripped)
        self._divergence(step, rows, rewarded, out, tripped)

        for name in NAMES:
            out[f"monitor/{name}/tripped"] = float(name in tripped)
        out["monitor/tripped"] = float(len(tripped))
        for name, (detail, hits) in tripped.items():
            self._trip(step, name, detail, hits)
        return out

    def _thinking(self, rewarded: list[MonitorRow], enough: bool, out: dict[str, float], tripped: dict) -> None:
        """Rewarded completions whose thinking is empty, or present without reasoning."""
        c = self.cfg
        empty, shallow = [], []
        for r in rewarded:
            body = thinking_body(r.completion, self.think_open, self.think_close)
            tokens = r.thinking_tokens if r.thinking_tokens is not None else approx_tokens(body or "")
            if body is None or not body.strip() or tokens <= _get(c, "near_empty_think_tokens"):
                empty.append((r, f"thinking {'missing' if body is None else f'{tokens} tokens'}"))
                continue
            lines = [ln for ln in body.splitlines() if ln.strip()]
            reasoning = [ln for ln in lines if _DIGIT.search(ln) or len(ln.split()) >= _get(c, "min_reasoning_words")]
            if tokens < _get(c, "min_reasoning_tokens") or not reasoning:
                shallow.append((r, f"thinking {tokens} tokens, {len(reasoning)} reasoning lines"))
        for name, hits, key, limit in (("empty_thinking", empty, "empty_thinking_frac", "empty_think_frac"),
                                       ("no_reasoning", shallow, "no_reasoning_frac", "no_reasoning_frac")):
            frac = len(hits) / len(rewarded) if rewarded else math.nan
            out[f"monitor/{key}"] = frac
            if enough and frac > _get(c, limit):
                tripped[name] = (f"{100 * frac:.0f}% of {len(rewarded)} rewarded completions (limit "
                                 f"{100 * _get(c, limit):.0f}%)", hits)

    def _length(self, rows: Sequence[MonitorRow], out: dict[str, float], tripped: dict) -> None:
        """Length collapse / explosion vs the first ``baseline_steps`` steps (which fill the baseline)."""
        c = self.cfg
        mean_len = sum(r.num_tokens for r in rows) / len(rows)
        trunc = sum(r.truncated for r in rows) / len(rows)
        if len(self.lengths) < _get(c, "baseline_steps"):
            self.lengths.append(mean_len)
            self.truncs.append(trunc)
            out["monitor/length_ratio"] = math.nan
        else:
            base, base_trunc = sum(self.lengths) / len(self.lengths), sum(self.truncs) / len(self.truncs)
            ratio = mean_len / base if base > 0 else math.nan
            out["monitor/length_ratio"] = ratio
            cap = _get(c, "max_truncated_frac")
            by_len = sorted(rows, key=lambda r: r.num_tokens)
            if ratio < _get(c, "length_collapse_ratio"):
                tripped["length"] = (f"collapse: mean {mean_len:.1f} tokens = {ratio:.2f} x baseline {base:.1f}",
                                     [(r, f"{r.num_tokens} tokens") for r in by_len])
            elif ratio > _get(c, "length_explosion_ratio") or (trunc >= cap and base_trunc < cap / 2):
                tripped["length"] = (f"explosion: mean {mean_len:.1f} tokens = {ratio:.2f} x baseline {base:.1f}, "
                                     f"{100 * trunc:.0f}% truncated (baseline {100 * base_trunc:.0f}%)",
                                     [(r, f"{r.num_tokens} tokens") for r in by_len[::-1]])

    def _code(self, rows: Sequence[MonitorRow], out: dict[str, float], tripped: dict) -> None:
        """Code verifier: early exits, vacuous passes, suspicious calls."""
        c = self.cfg
        from rlvr.verifiers.code import extract_program

        code_rows, suspicious = 0, []
        for r in rows:
            for res in r.results.values():
                m = getattr(res, "metrics", None) or {}
                if "tests_total" not in m:
                    continue
                code_rows += 1
                why = []
                if m.get("early_exit"):
                    why.append("early exit")
                if (res.score or 0) > 0 and not m.get("tests_total"):
                    why.append("passed with zero tests")
                call = _SUSPICIOUS_CODE.search(extract_program(r.completion))
                if call:
                    why.append(f"calls {call.group(0).strip()}")
                if why:
                    suspicious.append((r, ", ".join(why)))
                break
        frac = len(suspicious) / code_rows if code_rows else math.nan
        out["monitor/code_suspicious_frac"] = frac
        if code_rows and frac > _get(c, "code_suspicious_frac"):
            tripped["code_suspicious"] = (f"{len(suspicious)} of {code_rows} code completions", suspicious)

    def _extraction(self, rewarded: list[MonitorRow], out: dict[str, float], tripped: dict) -> None:
        """Strict vs primary extraction of rewarded math answers."""
        c = self.cfg
        fallback = {f"extract/{rule}" for rule in _get(c, "fallback_rules")}
        checked, disagree = 0, []
        for r in rewarded:
            if isinstance(r.answer, Mapping) or any("tests_total" in (getattr(x, "metrics", None) or {})
                                                    for x in r.results.values()):
                continue  # code: no extracted answer to compare
            weak = next((k for res in r.results.values() for k in (getattr(res, "metrics", None) or {})
                         if k in fallback), None)
            strict = self._strict_score(r) if _get(c, "strict_check") else None
            if weak is None and strict is None:
                continue
            checked += 1
            if weak is not None:
                disagree.append((r, f"rewarded only via {weak.split('/', 1)[1]}"))
            elif strict is not None and strict[0] < 1.0:
                disagree.append((r, f"strict math check: extracted {strict[1]!r}, expected {r.answer!r}"))
        frac = len(disagree) / checked if checked else math.nan
        out["monitor/extraction_disagreement_frac"] = frac
        if checked >= _get(c, "min_rewarded") and frac > _get(c, "disagreement_frac"):
            tripped["extraction_disagreement"] = (f"{100 * frac:.0f}% of {checked} rewarded completions", disagree)

    def _divergence(self, step: int, rows: Sequence[MonitorRow], rewarded: list[MonitorRow], out: dict[str, float],
                    tripped: dict) -> None:
        """Training reward rising while held-out accuracy does not."""
        c = self.cfg
        finite = [r.reward for r in rows if math.isfinite(r.reward)]
        if finite:
            self.rewards = [p for p in self.rewards if p[0] < step] + [(step, sum(finite) / len(finite))]
        window = _get(c, "divergence_window")
        rise = change = math.nan
        if len(self.rewards) >= max(window, 3) and len(self.heldout) >= 2:
            pts = self.rewards[-window:]
            rise = _slope(pts) * (pts[-1][0] - pts[0][0])
            (s0, h0), (s1, h1) = self.heldout[-2], self.heldout[-1]
            change = h1 - h0
            if s1 >= step - window and rise >= _get(c, "min_reward_rise") and change <= _get(c, "heldout_tolerance"):
                tripped["reward_vs_heldout"] = (
                    f"reward rose {rise:+.3f} over {len(pts)} steps while held-out accuracy changed {change:+.3f} "
                    f"(step {s0} -> {s1})", [(r, "rewarded") for r in rewarded])
        out["monitor/reward_rise"], out["monitor/heldout_change"] = rise, change

    def _strict_score(self, r: MonitorRow) -> tuple[float, str | None] | None:
        if self._strict is None:
            from rlvr.verifiers.math import MathVerifier
            from rlvr.verifiers.math_extract import RULES

            strict_rules = [x for x in RULES if x not in set(_get(self.cfg, "fallback_rules"))]
            self._strict = MathVerifier(rules=strict_rules, think_close=self.think_close)
        res = self._strict(r.completion, r.answer)
        if res.error is not None or res.score is None:
            return None
        return float(res.score), res.extracted

    def _trip(self, step: int, name: str, detail: str, hits: Sequence[tuple[MonitorRow, str]]) -> None:
        t = self.trips.setdefault(name, {"count": 0, "first_step": step})
        t.update(count=t["count"] + 1, last_step=step, last_detail=detail)
        kind = f"{name}:{detail.split(':', 1)[0]}" if ":" in detail else name  # collapse and explosion apart
        last = self._warned.get(kind)
        if last is None or step - last >= _get(self.cfg, "warn_every"):
            self._warned[kind] = step
            message = f"reward-hacking monitor '{name}' tripped at step {step}: {detail}"
            if self.console is not None:
                self.console.print(f"[bold yellow]warning:[/bold yellow] {message} (samples: flagged.jsonl)")
            else:
                import warnings

                warnings.warn(message, stacklevel=3)
        if self.flagged_path is None:
            return
        self.flagged_path.parent.mkdir(parents=True, exist_ok=True)
        with self.flagged_path.open("a") as f:
            for r, why in list(hits)[:_get(self.cfg, "max_flagged_per_step")]:
                f.write(json.dumps({"step": step, "monitor": name, "sample_id": r.sample_id, "index": r.index,
                                    "prompt": r.prompt, "completion": r.completion, "answer": r.answer,
                                    "reward": r.reward if math.isfinite(r.reward) else None,
                                    "accuracy": r.accuracy if math.isfinite(r.accuracy) else None,
                                    "detail": why, "monitor_detail": detail}, default=str) + "\n")


def _slope(points: Sequence[tuple[int, float]]) -> float:
    """Least-squares slope of y over x (0 with fewer than two distinct x)."""
    n = len(points)
    mx, my = sum(p[0] for p in points) / n, sum(p[1] for p in points) / n
    var = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / var if var else 0.0


def replay_samples(run_dir: str | Path, cfg: Any = None, output_dir: str | Path | None = None,
                   console: Any = None) -> list[dict[str, float]]:
    """Run the monitors over a finished run's samples.jsonl (only the logged completions of each step) and its
    evals (``eval/grpo_step<N>.json``): for runs made before the trainer called the monitors. Per-step rows."""
    from rlvr.verifiers.base import VerifyResult

    run_dir = Path(run_dir)
    evals: dict[int, dict[str, float]] = {}
    for path in (run_dir / "eval").glob("grpo_step*.json"):
        rows = json.loads(path.read_text()).get("rows", [])
        evals[int(path.stem.removeprefix("grpo_step"))] = {f"eval/{r['split']}/accuracy": r["accuracy"] for r in rows}
    monitors = RewardHackingMonitors(cfg, output_dir, console=console)
    by_step: dict[int, list[MonitorRow]] = {}
    nan = float("nan")
    for line in (run_dir / "samples.jsonl").read_text().splitlines():
        s = json.loads(line)
        by_step.setdefault(s["step"], []).append(MonitorRow(
            s.get("sample_id", ""), s.get("prompt", ""), s.get("completion", ""), s.get("answer"),
            nan if s.get("reward") is None else s["reward"], nan if s.get("accuracy") is None else s["accuracy"],
            int(s.get("tokens") or 0), None, s.get("finish_reason") == "length",
            {k: VerifyResult(score=v) for k, v in (s.get("scores") or {}).items()}, s.get("index", 0)))
    if 0 in evals:
        monitors.observe_heldout(0, evals[0])
    return [monitors.update_rows(step, rows, evals.get(step)) for step, rows in sorted(by_step.items())]
