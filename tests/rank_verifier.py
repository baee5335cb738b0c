"""A verifier for multi-process tests (test_grpo_ddp.py, test_grpo_fsdp.py), imported by the launched ranks as
``rank_verifier:RankVerifier`` (the tests put tests/ on their PYTHONPATH).

Rank 0 scores each completion text 0 or 1 pseudo-randomly (mixed groups: a gradient); every other rank scores 0,
so under dynamic sampling rank 1 keeps no group and must train idle on a masked-out one while rank 0 trains.
"""

from __future__ import annotations

import os
import zlib

from rlvr.verifiers import VerifyResult

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


class RankVerifier:
    """Rank 0: a pseudo-random 0/1 per completion text (mixed groups); every other rank: always 0."""

    name = "rank"

    def __call__(self, completion, answer, *, meta=None):
        if os.environ.get("RANK", "0") != "0":
            return VerifyResult(0.0)
        return VerifyResult(float(zlib.crc32(completion.encode()) % 2))
