"""``arith``: synthetic multi-step integer arithmetic with step-by-step traces.

A problem is a chain of operations on a running value, e.g. "Start with 37. Add 4. Multiply by 2.", solved as

    <think>
    37+4=41
    41*2=82
    </think>
    \\boxed{82}

One line per operation, so a problem with k operations needs about k times the thinking tokens of a one-step
problem: this is what makes a thinking budget matter. Values stay in ``[0, value_max]``; add/subtract operands
are ``1..operand_max`` and multipliers ``2..multiplier_max`` (with values up to 999 a 1M-parameter model learned
nothing in 10 minutes on CPU; up to 99 it learns in minutes).

Held-out problems are fixed by a hash of the problem text, independent of the seed and of the split sizes, so a
test problem can never appear in any training set. Splits: ``train`` (``min_ops..max_ops`` operations),
``test_opsK`` (exactly K operations, K in ``1..max_eval_ops``) and ``test`` (an even mix of ``test_opsK`` for
K in ``eval_ops``, the mixed-difficulty set that turns the thinking-budget cliff into a staircase).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from rlvr.tasks.base import Sample, Task


@dataclass(frozen=True)
class ArithProblem:
    start: int
    ops: tuple[tuple[str, int], ...]  # ("+", 4), ("-", 3), ("*", 2)

    WORDS = {"+": "Add {}.", "-": "Subtract {}.", "*": "Multiply by {}."}

    @property
    def text(self) -> str:
        return " ".join([f"Start with {self.start}."] + [self.WORDS[op].format(k) for op, k in self.ops])

    def trace(self) -> tuple[list[str], int]:
        """One ``a<op>b=c`` line per operation, and the final value."""
        value, lines = self.start, []
        for op, k in self.ops:
            new = value + k if op == "+" else value - k if op == "-" else value * k
            lines.append(f"{value}{op}{k}={new}")
            value = new
        return lines, value


class ArithTask(Task):
    name = "arith"
    description = "synthetic multi-step integer arithmetic with step-by-step traces (learns on CPU)"

    @property
    def splits(self) -> list[str]:
        return ["train", "test"] + [f"test_ops{k}" for k in range(1, self.cfg.arith.max_eval_ops + 1)]

    # -- generation --------------------------------------------------------------------------------------------
    def _random_problem(self, rng: random.Random, n_ops: int) -> ArithProblem:
        a = self.cfg.arith
        value = start = rng.randint(a.start_min, a.value_max)
        ops: list[tuple[str, int]] = []
        for _ in range(n_ops):
            choices = []
            if value + 1 <= a.value_max:
                choices.append("+")
            if value - 1 >= 0:
                choices.append("-")
            if value * 2 <= a.value_max and a.multiplier_max >= 2:
                choices.append("*")
            op = rng.choice(choices)
            if op == "+":
                k = rng.randint(1, min(a.operand_max, a.value_max - value))
                value += k
            elif op == "-":
                k = rng.randint(1, min(a.operand_max, value))
                value -= k
            else:
                k = rng.randint(2, min(a.multiplier_max, a.value_max // value if value else a.multiplier_max))
                value *= k
            ops.append((op, k))
        return ArithProblem(start=start, ops=tuple(ops))

    def is_heldout(self, problem: ArithProblem) -> bool:
        digest = hashlib.sha256(problem.text.encode()).digest()
        return int.from_bytes(digest[:4], "big") % 1000 < round(self.cfg.arith.heldout_fraction * 1000)

    def _problems(self, split: str, count: int) -> list[tuple[ArithProblem, int]]:
        a = self.cfg.arith
        heldout = split != "train"
        if split == "train":
            op_counts = list(range(a.min_ops, a.max_ops + 1))
        elif split == "test":
            op_counts = list(a.eval_ops)
        else:
            op_counts = [int(split.removeprefix("test_ops"))]
        rng = random.Random(f"{a.seed}/{split}")
        seen: set[str] = set()
        out: list[tuple[ArithProblem, int]] = []
        # Small op counts have few distinct problems; stop instead of looping forever.
        misses, max_misses = 0, 20 * count + 1000
        while len(out) < count and misses < max_misses:
            n_ops = op_counts[len(out) % len(op_counts)] if heldout else rng.choice(op_counts)
            problem = self._random_problem(rng, n_ops)
            if self.is_heldout(problem) != heldout or (heldout and problem.text in seen):
                misses += 1
                continue
            seen.add(problem.text)
            out.append((problem, n_ops))
        return out

    # -- samples -----------------------------------------------------------------------------------------------
    def samples(self, split: str, limit: int | None = None) -> list[Sample]:
        self.check_split(split)
        a = self.cfg.arith
        count = limit if limit is not None else (a.num_train if split == "train" else a.num_test)
        samples = []
        for i, (problem, n_ops) in enumerate(self._problems(split, count)):
            lines, final = problem.trace()
            samples.append(
                Sample(
                    id=f"arith/{split}/{i}",
                    prompt=self.prompt_messages(problem.text),
                    answer=str(final),
                    verifiers=self.verifier_specs(),
                    meta={"ops": n_ops, "split": split,
                          "program": {"start": problem.start, "ops": [list(o) for o in problem.ops]}},
                    solution=self.response_format.render("\n".join(lines), str(final)),
                )
            )
        return samples
