"""``arith_steps``: a verifiable *process* reward for the ``arith`` task — how many of the operations the thinking
carried out correctly, each judged on the value the model itself carried into it.

Why: with the outcome reward alone (``math``: is the boxed answer right?) a trace whose first line is wrong makes
every later line worthless, so the policy gradient pushes *down* correct arithmetic done on a wrong running value
("88+9=96" then "96-4=92" is rewarded 0) and pushes *up* compensating errors ("96-4=93" lands on the right
answer). On the 1M-parameter tiny model that corrupts the arithmetic it already knows: 100 outcome-only GRPO
steps lowered held-out accuracy in every setting we tried (see the issue notes). Judging line i on the value line
i-1 wrote rewards each correct operation wherever the chain went wrong — the credit assignment a per-step
verifier gives (process supervision, Lightman et al. 2023, arXiv 2305.20050), here checked exactly, not learned.

Score = correct lines / max(number of operations, number of lines written), in [0, 1]; a line is correct when it
applies the prompt's i-th operation and operand, starts from the start value (line 1) or from the previous
line's result, and states the right result. Extra lines count against the score; a missing line scores 0.
``None`` (does not apply) for samples without ``meta["program"]`` (other tasks), so it can sit in a mixed batch.
``steps`` gives each line's verdict (1 or 0) and where the line ends, for token-level credit
(``algo.process_verifier=arith_steps``, rlvr.algo.process).

Measured (tiny model from a 1,000-step SFT checkpoint, 100 GRPO steps, B=8 x G=8, on an H200): adding it to the
reward (``task.verifiers=[math,arith_steps]``, or alone) did not stop held-out accuracy from falling either —
3-op 24% -> 14-20% at lr 1e-4 — so the damage is not only the outcome reward's credit assignment. It stays as a
denser, exact reward and as a diagnostic (``verifier/arith_steps/mean`` = share of correct operations).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from rlvr.verifiers.base import VerifyResult

_LINE = re.compile(r"(-?\d+)\s*([+\-*])\s*(-?\d+)\s*=\s*(-?\d+)")
_APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


class ArithStepsVerifier:
    name = "arith_steps"

    def __init__(self, think_open: str = "<think>", think_close: str = "</think>"):
        self.think_open, self.think_close = think_open, think_close

    def _thinking(self, completion: str) -> tuple[int, str]:
        """(offset of the thinking text in ``completion``, the thinking text)."""
        start = completion.find(self.think_open)
        offset = start + len(self.think_open) if start >= 0 else 0
        body = completion[offset:]
        end = body.find(self.think_close)
        return offset, body if end < 0 else body[:end]

    def __call__(self, completion: str, answer: Any, *, meta: Mapping[str, Any] | None = None) -> VerifyResult:
        program = (meta or {}).get("program")
        if not program:
            return VerifyResult(score=None)
        start, ops = int(program["start"]), [(str(op), int(k)) for op, k in program["ops"]]
        offset, thinking = self._thinking(completion)
        matches = list(_LINE.finditer(thinking))
        carried, correct, steps = start, 0, []
        for i, m in enumerate(matches):
            a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
            want_op, want_k = ops[i] if i < len(ops) else (None, None)  # lines past the last operation are wrong
            ok = op == want_op and b == want_k and a == carried and c == _APPLY[op](a, b)
            correct += ok
            steps.append((offset + m.end(), float(ok)))
            carried = c  # the next line is judged on what this one wrote, right or wrong
        score = correct / max(len(ops), len(matches), 1)
        return VerifyResult(score=score, extracted=f"{correct}/{len(ops)}", steps=tuple(steps),
                            metrics={"lines": float(len(matches)), "correct_lines": float(correct)})
