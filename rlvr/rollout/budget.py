"""Thinking budgets: how many tokens a rollout may spend inside ``<think>…</think>`` (s1's budget forcing).

s1 (Muennighoff et al. 2025, arXiv 2501.19393) controls test-time compute by *forcing* the thinking length:

- maximum: once the thinking block reaches ``thinking`` tokens and ``</think>`` has not come, generation stops,
  the end-of-thinking tag plus an answer cue is appended, and the answer is generated with its own budget
  ``answer`` tokens;
- minimum: when the model closes thinking before ``min_thinking`` tokens, the close tag is dropped, a
  continuation cue ("Wait") is appended instead, and thinking goes on.

Both are done as resumed generation on the same prefix, so a rollout's token ids are exactly the sampled tokens
plus the forced ones in order. Forced tokens were not sampled by the policy: engines give them logprob 0 and
the trainer masks them out of the loss (``Rollout.forced_mask``).

How an engine uses it
---------------------
``SamplingParams(budget=ThinkingBudget(...))``; the engine calls ``generate_with_budget(engine, continue_fn, ...)``
with its own primitive ``continue_fn(prefixes, max_new, stop_ids, stop_strings, seeds) -> [Segment]`` ("continue
these token prefixes for up to k new tokens, stopping at these ids / strings"). This module owns every decision;
the engines only sample. Each round, the rows still thinking go to the engine in one call and the rows answering
in another, so rows progress independently but are batched per phase.

Exact rules (single-token tags, as on the tiny model; see "Multi-token tags" below)
----------------------------------------------------------------------------------
- Thinking phase: sample up to ``min(B - thinking so far, tokens left)``, stopping at ``</think>``, an eos or a
  ``params.stop`` string. Repeated until thinking closes, reaches B, or the rollout ends.
- Thinking count (``Rollout.thinking_tokens``): completion tokens after the completion's first ``<think>`` (from
  its start when it has none: the prompt template may have opened the block) up to the end of thinking; the tags
  and the answer are not counted, forced wait cues are. It is ``RolloutEngine._thinking_tokens`` of the finished
  completion whenever the answer part contains no tags, with one addition: a rollout that ends inside the block
  whose prompt opened it counts its tokens (the plain count cannot see the prompt and says 0). Tokens before a
  model-written ``<think>`` are charged to B while it is unknown whether they are thinking (they are if a close
  comes first), so ``thinking_tokens <= B`` always holds and every budget-forced rollout has exactly B.
- Forced end (thinking reached B, no close): append ``</think>`` + ``answer_cue`` (forced), then the answer phase
  samples up to ``min(A, tokens left)`` tokens, stopping at eos / stop strings. ``budget_forced=True``.
- B = 0: nothing is sampled before the forced end, which is ``<think></think>`` + answer cue (``</think>`` + cue
  when the prompt's template already opened the block), so thinking_tokens = 0 and the completion keeps the
  response format's open tag. No newline is forced inside the empty block: it would be a thinking token.
- A natural close (the model's own ``</think>``, at or after B_min): the answer continues with every token left
  (A is the budget of a *forced* answer; a model that finishes within B is not affected by the budget).
- min_thinking: a close before B_min tokens, while ``waits < max_waits``, is dropped (the sampled close token
  is removed with its logprob) and ``wait_cue`` is appended (forced); thinking continues. When the cue would push
  thinking past B the close is kept instead (B wins over B_min). An eos inside thinking ends the rollout: only the
  close tag is ever replaced, as in s1.
- max_new_tokens caps *all* completion tokens, sampled and forced, over every phase (so batch shapes and
  overlong penalties keep their meaning). Forced tokens that do not fit are cut, and the rollout ends "length".
- finish_reason "length": the last phase ran out of tokens (a forced answer hit A, or max_new_tokens was reached
  anywhere); "stop": an eos or a stop string ended it.
- Seeds: call c of the driver gives row r the seed ``params.seed + c * rows + r`` (vLLM seeds each request with it;
  HFEngine draws from its torch stream, seeded once from ``params.seed``), so the same seed gives the same
  rollouts. Greedy decoding runs one row per prompt and repeats it n times.

Multi-token tags (e.g. a model whose vocabulary lacks ``<think>``): the close tag is a stop *string*, and tags are
located in the decoded ids; a token that merges a tag with neighbouring text makes the count off by one there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from rlvr.rollout.types import Rollout

if TYPE_CHECKING:  # base.py imports this module for ThinkingBudget
    from rlvr.rollout.base import RolloutEngine, SamplingParams
    from rlvr.tasks.base import Sample


@dataclass(frozen=True)
class ThinkingBudget:
    """What ``SamplingParams.budget`` takes: the s1 knobs (exact semantics in the module docstring)."""

    thinking: int | None = field(default=None, metadata={
        "help": "B: most tokens inside the thinking block. None = no cap (only max_new_tokens). 0 = no thinking: "
                "the close tag is forced right after the open tag"})
    answer: int = field(default=32, metadata={
        "help": "A: tokens allowed for the answer after a forced end of thinking. Too small truncates answers; "
                "\\boxed{123} is ~6 tokens on the tiny model"})
    min_thinking: int = field(default=0, metadata={
        "help": "B_min: when thinking closes before this many tokens, the close tag is replaced by wait_cue and "
                "thinking continues (s1's 'Wait'). 0 = off"})
    answer_cue: str = field(default="\n", metadata={
        "help": "text appended after the forced close tag, before the answer is generated (s1 uses 'Final "
                "Answer:'; our response format only needs the newline that follows </think>)"})
    wait_cue: str = field(default="\nWait", metadata={
        "help": "text that replaces a too-early close tag under min_thinking"})
    max_waits: int = field(default=2, metadata={
        "help": "most times one rollout is told to wait (s1 found gains flatten after ~2-4)"})

    def __post_init__(self) -> None:
        errors = []
        if self.thinking is not None and self.thinking < 0:
            errors.append(f"thinking={self.thinking} must be >= 0 or None")
        if self.answer < 1:
            errors.append(f"answer={self.answer} must be >= 1")
        if self.min_thinking < 0:
            errors.append(f"min_thinking={self.min_thinking} must be >= 0")
        if self.thinking is not None and self.min_thinking > self.thinking:
            errors.append(f"min_thinking={self.min_thinking} exceeds thinking={self.thinking}")
        if self.max_waits < 0:
            errors.append(f"max_waits={self.max_waits} must be >= 0")
        if errors:
            raise ValueError("invalid ThinkingBudget: " + "; ".join(errors))


# --------------------------------------------------------------------------------------------------- driver
@dataclass
class Segment:
    """One row's continuation from an engine's primitive."""

    ids: list[int]  # [k] new sampled tokens, cut after the first stop id / the token completing a stop string
    logprobs: list[float]  # [k] sampler log-probs (the engine's convention)
    stopped: bool  # True: ended on a stop id or string; False: ran out of its max_new


class ContinueFn(Protocol):
    """An engine's primitive: continue each prefix (prompt + completion so far) by up to ``max_new[i]`` tokens."""

    def __call__(self, prefixes: Sequence[Sequence[int]], max_new: Sequence[int], stop_ids: Sequence[int],
                 stop_strings: Sequence[str], seeds: Sequence[int | None]) -> list[Segment]: ...


THINK, ANSWER, DONE = "think", "answer", "done"


@dataclass
class _Row:
    """One completion being built: its tokens so far and where it is in the phases."""

    prompt: list[int]
    prompt_opens: bool  # the prompt's template opened the thinking block
    ids: list[int] = field(default_factory=list)  # [t] completion so far, sampled and forced
    logprobs: list[float] = field(default_factory=list)  # [t] 0.0 on forced tokens
    forced: list[bool] = field(default_factory=list)  # [t]
    phase: str = THINK
    think_start: int | None = None  # index after the completion's first open tag; None = none yet
    thinking: int = 0  # final thinking count (set when thinking ends)
    waits: int = 0
    budget_forced: bool = False
    finish: str = "stop"

    def add(self, ids: Sequence[int], logprobs: Sequence[float] | None = None) -> None:
        """Append sampled tokens (with logprobs) or forced ones (logprobs None)."""
        self.ids += ids
        self.logprobs += list(logprobs) if logprobs is not None else [0.0] * len(ids)
        self.forced += [logprobs is None] * len(ids)

    def cut(self, end: int) -> None:
        del self.ids[end:], self.logprobs[end:], self.forced[end:]

    def sampled_from(self) -> int:
        """Index after the last forced token (0 when none)."""
        return next((k + 1 for k in range(len(self.forced) - 1, -1, -1) if self.forced[k]), 0)

    def charged(self) -> int:
        """Tokens charged to the thinking budget so far (see the module docstring)."""
        return len(self.ids) - (self.think_start or 0)

    def end(self, reason: str) -> None:
        self.phase, self.finish = DONE, reason


class _Driver:
    def __init__(self, engine: RolloutEngine, params: SamplingParams):
        self.budget: ThinkingBudget = params.budget
        self.max_new = params.max_new_tokens
        self.user_stops = tuple(params.stop)
        self.tok = engine.tokenizer
        self.eos = set(engine.eos_ids)
        self.open_text, self.close_text = engine.think_open, engine.think_close
        self.open_id, self.close_id = engine.think_ids
        self.open = [self.open_id] if self.open_id is not None else self._encode(self.open_text)
        self.close = [self.close_id] if self.close_id is not None else self._encode(self.close_text)
        self.answer_cue = self._encode(self.budget.answer_cue)
        self.wait_cue = self._encode(self.budget.wait_cue)
        # thinking stops at the close tag: a stop id when it is one token, else a stop string
        self.think_stop_ids = sorted(self.eos | ({self.close_id} if self.close_id is not None else set()))
        self.think_stops = self.user_stops + ((self.close_text,) if self.close_id is None else ())

    def _encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"] if text else []

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)

    def prompt_opens(self, prompt: Sequence[int]) -> bool:
        text = self._decode(prompt)
        i = text.rfind(self.open_text)
        return i >= 0 and self.close_text not in text[i:]

    def find(self, ids: list[int], start: int, tag_id: int | None, tag: str) -> tuple[int, int] | None:
        """(first token, one past the last token) of the first ``tag`` in ``ids[start:]``, or None."""
        if tag_id is not None:
            return next(((k, k + 1) for k in range(start, len(ids)) if ids[k] == tag_id), None)
        if tag not in self._decode(ids[start:]):
            return None
        end = next(k for k in range(start + 1, len(ids) + 1) if tag in self._decode(ids[start:k]))
        begin = next(j for j in range(end - 1, start - 1, -1) if tag in self._decode(ids[j:end]))
        return begin, end

    # ------------------------------------------------------------------------------- transitions
    def force(self, row: _Row, tokens: list[int]) -> bool:
        """Append forced ``tokens`` up to the max_new_tokens cap; False (and the row ends "length") if cut."""
        room = self.max_new - len(row.ids)
        row.add(tokens[:room])
        if len(tokens) > room or len(row.ids) >= self.max_new:
            row.end("length")
            return False
        return True

    def settle(self, row: _Row) -> None:
        """Transitions that need no sampling: out of tokens, or thinking at B (force its end)."""
        if row.phase == DONE:
            return
        if len(row.ids) >= self.max_new:
            if row.phase == THINK:
                row.thinking = self._thinking_at_end(row)
            row.end("length")
            return
        b = self.budget.thinking
        if row.phase == THINK and b is not None and row.charged() >= b:
            row.thinking, row.budget_forced = row.charged(), True
            opener = self.open if b == 0 and not row.prompt_opens else []
            if self.force(row, opener + self.close + self.answer_cue):
                row.phase = ANSWER

    def _thinking_at_end(self, row: _Row) -> int:
        """Thinking count of a rollout that ended inside the block (eos, stop string or max_new_tokens)."""
        if row.think_start is None and not row.prompt_opens:
            return 0  # no tag anywhere: the model never thought (RolloutEngine._thinking_tokens agrees)
        return row.charged() - (1 if row.ids and row.ids[-1] in self.eos and not row.forced[-1] else 0)

    def after_think(self, row: _Row, seg: Segment) -> None:
        row.add(seg.ids, seg.logprobs)
        if row.think_start is None and (span := self.find(row.ids, 0, self.open_id, self.open_text)):
            row.think_start = span[1]
        start = row.think_start or 0
        # only sampled tokens can close the block: a forced cue that happens to contain the tag does not
        close = self.find(row.ids, max(start, row.sampled_from()), self.close_id, self.close_text)
        if close is not None:
            begin, end = close
            row.cut(end)  # a multi-token tag split across two calls can leave tokens sampled past it
            thought, b = begin - start, self.budget.thinking
            if (thought < self.budget.min_thinking and row.waits < self.budget.max_waits
                    and (b is None or thought + len(self.wait_cue) <= b)):
                row.cut(begin)  # drop the sampled close tag, think on after the cue
                row.waits += 1
                self.force(row, self.wait_cue)
                row.thinking = row.charged()  # final only if the cue hit max_new_tokens and ended the rollout
                return
            row.thinking, row.phase = thought, ANSWER
        elif seg.stopped:  # an eos or a stop string ended the rollout inside the block
            row.thinking = self._thinking_at_end(row)
            row.end("stop")
        # else: the call used its tokens; settle() forces the end of thinking (B reached) or ends the rollout

    def after_answer(self, row: _Row, seg: Segment) -> None:
        row.add(seg.ids, seg.logprobs)
        row.end("stop" if seg.stopped else "length")

    def answer_limit(self, row: _Row) -> int:
        left = self.max_new - len(row.ids)
        return min(left, self.budget.answer) if row.budget_forced else left

    def think_limit(self, row: _Row) -> int:
        left, b = self.max_new - len(row.ids), self.budget.thinking
        return left if b is None else min(left, b - row.charged())


def generate_with_budget(engine: RolloutEngine, continue_fn: ContinueFn, samples: Sequence[Sample],
                         prompts: Sequence[Sequence[int]], n: int, params: SamplingParams) -> list[Rollout]:
    """``n`` budget-forced completions per sample, prompt-major (``RolloutEngine.generate``'s contract)."""
    driver = _Driver(engine, params)
    copies = 1 if params.greedy else n  # greedy rows of one prompt are identical: decode once, repeat
    rows = [_Row(prompt=list(prompts[i]), prompt_opens=driver.prompt_opens(prompts[i]))
            for i in range(len(samples)) for _ in range(copies)]
    calls = 0

    def run(phase: str, limit: Callable[[_Row], int], after: Callable[[_Row, Segment], None],
            stop_ids: Sequence[int], stops: Sequence[str]) -> None:
        """Settle every row, then one engine call for the rows in ``phase``."""
        nonlocal calls
        for row in rows:
            driver.settle(row)
        active = [i for i, row in enumerate(rows) if row.phase == phase]
        if not active:
            return
        seeds = [None if params.seed is None else params.seed + calls * len(rows) + i for i in active]
        calls += 1
        segments = continue_fn([rows[i].prompt + rows[i].ids for i in active], [limit(rows[i]) for i in active],
                               stop_ids, stops, seeds)
        for i, seg in zip(active, segments):
            after(rows[i], seg)

    while any(row.phase != DONE for row in rows):
        run(THINK, driver.think_limit, driver.after_think, driver.think_stop_ids, driver.think_stops)
        run(ANSWER, driver.answer_limit, driver.after_answer, sorted(driver.eos), driver.user_stops)

    rollouts = []
    repeats = n // copies
    for k, row in enumerate(rows):
        for j in range(repeats):
            rollouts.append(Rollout(
                sample_id=samples[k // copies].id,
                prompt_ids=tuple(row.prompt),
                completion_ids=tuple(row.ids),
                logprobs=tuple(row.logprobs),
                text=engine.tokenizer.decode(row.ids, skip_special_tokens=True),
                finish_reason=row.finish,
                thinking_tokens=row.thinking,
                index=(k % copies) * repeats + j,
                forced_mask=tuple(row.forced) if any(row.forced) else (),
                budget_forced=row.budget_forced,
                waits=row.waits,
            ))
    return rollouts
