"""The reward runtime: weighting, None vs error, hard timeouts, crashed workers, pool reuse, abort threshold."""

from __future__ import annotations

import math

import pytest

from rlvr.rewards.runtime import (RewardErrorRateExceeded, RewardRuntime, RewardsConfig, VerifierSpec, parse_spec,
                          score_batch)
from rlvr.verifiers import VerifierError

HANG = "rlvr.verifiers.testing:Hang"
CRASH = "rlvr.verifiers.testing:Crash"
RAISE = "rlvr.verifiers.testing:Raise"


@pytest.fixture(scope="module")
def runtime():
    # One pool for the module: also proves it is reused across calls ("steps") and survives replacements.
    with RewardRuntime(RewardsConfig(num_workers=2, timeout_s=2.0, abort_error_rate=1.0)) as rt:
        yield rt


def test_parse_spec():
    assert parse_spec("math") == VerifierSpec("math")
    spec = parse_spec({"name": "math", "weight": 0.5, "label": "acc", "rules": ["boxed"]})
    assert (spec.name, spec.weight, spec.key, dict(spec.config)) == ("math", 0.5, "acc", {"rules": ["boxed"]})
    for bad in ({"weight": 1}, {"name": "math", "weight": "high"}, {"name": "math", "weight": float("nan")}, 3):
        with pytest.raises(ValueError):
            parse_spec(bad)


def test_weighted_sum_none_and_log_only(runtime):
    specs = [{"name": "math", "weight": 1.0}, {"name": "format", "weight": 0.5},
             {"name": "format", "label": "format_logged", "weight": 0.0, "answer": "tag"}]
    batch = runtime.score(
        ["<think>a</think>\\boxed{4}", "\\boxed{4}", "<think>a</think>\\boxed{5}", "\\boxed{4}"],
        ["4", "4", "4", None],
        specs,
    )
    # row 3: no reference, so math does not apply (excluded, not 0); format still applies
    assert batch.rewards == [1.5, 1.0, 0.5, 0.0]
    assert batch.results[3]["math"].score is None
    assert batch.metrics["verifier/math/applicable_rate"] == 0.75
    assert batch.metrics["verifier/math/mean"] == pytest.approx(2 / 3)
    assert batch.metrics["verifier/format_logged/mean"] == 0.0     # logged, weight 0: not in the reward
    assert batch.metrics["verifier/math/extract/boxed"] == 0.75    # per-sample metrics averaged
    assert batch.metrics["reward/none_rate"] == 0.0


def test_no_applicable_verifier_gives_none(runtime):
    batch = runtime.score(["\\boxed{1}"], [None], ["math"])
    assert batch.rewards == [None]
    assert batch.metrics["reward/none_rate"] == 1.0
    assert math.isnan(batch.metrics["verifier/math/mean"])


def test_per_row_specs(runtime):
    batch = runtime.score(["\\boxed{1}", "<think>a</think>\\boxed{1}"], ["1", "2"], [["math"], ["format"]])
    assert batch.rewards == [1.0, 1.0]
    assert set(batch.results[0]) == {"math"} and set(batch.results[1]) == {"format"}


def test_exception_timeout_and_segfault_become_errors_and_the_batch_survives(runtime):
    completions = ["ok", "HANG", "ok", "SEGV", "ok", "RAISE", "ok"]
    specs = [{"name": HANG, "when": "HANG", "label": "hang"},
             {"name": CRASH, "when": "SEGV", "label": "crash"},
             {"name": RAISE, "when": "RAISE", "label": "raise", "weight": 0.0}]
    replaced = runtime.replaced_workers
    batch = runtime.score(completions, [None] * len(completions), specs)
    assert batch.results[1]["hang"].error.startswith("timeout")
    assert "died" in batch.results[3]["crash"].error and "-11" in batch.results[3]["crash"].error
    assert "RuntimeError: boom" in batch.results[5]["raise"].error
    # an error in a weighted verifier makes the reward None (untrusted), never a silent 0
    assert batch.rewards[1] is None and batch.rewards[3] is None
    # weight-0 verifier errors are counted but do not void the reward
    assert batch.rewards[5] == 2.0
    assert [r for i, r in enumerate(batch.rewards) if i not in (1, 3)] == [2.0] * 5
    assert batch.metrics["verifier/hang/error_rate"] == pytest.approx(1 / 7)
    assert batch.metrics["verifier/hang/timeouts"] == 1.0
    assert batch.metrics["verifier/crash/error_rate"] == pytest.approx(1 / 7)
    assert batch.metrics["verifier/raise/error_rate"] == pytest.approx(1 / 7)
    assert runtime.replaced_workers == replaced + 2                  # hung and crashed workers replaced
    # the pool keeps working afterwards (reused across steps)
    assert runtime.score(["\\boxed{2}"], ["2"], ["math"]).rewards == [1.0]


def test_abort_when_error_rate_passes_threshold():
    config = RewardsConfig(num_workers=1, timeout_s=5, abort_error_rate=0.25, abort_min_calls=4)
    with RewardRuntime(config) as rt:
        ok = rt.score(["x", "x", "x", "RAISE"], [None] * 4, [{"name": RAISE, "when": "RAISE"}])
        assert ok.metrics[f"verifier/{RAISE}/error_rate"] == 0.25   # at the threshold: carry on
        with pytest.raises(RewardErrorRateExceeded, match="boom"):
            rt.score(["RAISE", "RAISE", "x", "x"], [None] * 4, [{"name": RAISE, "when": "RAISE"}])
        # too few calls to judge: no abort
        rt.score(["RAISE"], [None], [{"name": RAISE, "when": "RAISE"}])


def test_unknown_verifier_fails_fast(runtime):
    with pytest.raises(VerifierError, match="installed"):
        runtime.score(["x"], ["1"], ["maths"])


def test_bad_arguments(runtime):
    with pytest.raises(ValueError, match="key"):
        runtime.score(["x"], ["1"], ["math", "math"])              # same key twice: needs a label
    with pytest.raises(ValueError):
        runtime.score(["x", "y"], ["1"], ["math"])                  # length mismatch
    with pytest.raises(ValueError, match="JSON"):
        runtime.score(["x"], ["1"], [{"name": "math", "rules": object()}])


def test_in_process_mode_matches_pool(runtime):
    completions = ["\\boxed{4}", "the answer is 5", "<think>a</think>\\boxed{4}"]
    specs = ["math", {"name": "format", "weight": 0.25}]
    local = score_batch(completions, ["4"] * 3, specs, config=RewardsConfig(num_workers=0))
    pooled = runtime.score(completions, ["4"] * 3, specs)
    assert local.rewards == pooled.rewards == [1.0, 0.0, 1.25]
    errors = score_batch(["RAISE"], [None], [RAISE], config=RewardsConfig(num_workers=0, abort_error_rate=1.0))
    assert errors.rewards == [None] and "boom" in errors.last_errors[RAISE]


def test_worker_recycling():
    with RewardRuntime(RewardsConfig(num_workers=1, max_calls_per_worker=2)) as rt:
        batch = rt.score(["\\boxed{1}"] * 5, ["1"] * 5, ["math"])
        assert batch.rewards == [1.0] * 5
        assert rt.replaced_workers == 2


def test_config_fields_document_their_trade_off():
    import dataclasses

    for f in dataclasses.fields(RewardsConfig):
        assert len(f.metadata.get("help", "")) > 30, f.name
