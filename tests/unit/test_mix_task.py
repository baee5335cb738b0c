"""``task=mix``: components, weighted train split, per-row verifiers, per-task metrics, validation."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from omegaconf import OmegaConf

from rlvr.config import TaskConfig
from rlvr.config.loading import compose_config
from rlvr.tasks import build_task
from rlvr.tasks.mix import validate_mix


def mix_cfg(mix):
    return OmegaConf.merge(OmegaConf.structured(TaskConfig), {"name": "mix", "mix": mix})


def test_the_shipped_mix_has_math_code_and_format_verifiers_per_row(data_dir):
    cfg = compose_config("grpo", ["task=mix", f"data_dir={data_dir}"])
    task = build_task(cfg.task, data_dir=cfg.data_dir)
    rows = task.samples("train", limit=200)
    by_task = Counter(s.meta["task"] for s in rows)
    assert set(by_task) == {"arith", "mbpp"} and 70 <= by_task["arith"] <= 130  # equal weights
    for s in rows:
        names = [v if isinstance(v, str) else v["name"] for v in s.verifiers]
        assert names == (["math", "format"] if s.meta["task"] == "arith" else ["code", "format"])
    assert task.default_eval_splits() == ["arith/test_ops1", "arith/test_ops2", "arith/test_ops3", "arith/test_ops4",
                                          "mbpp/test"]
    test = task.samples("test", limit=6)
    assert [s.meta["task"] for s in test] == ["arith", "mbpp"] * 3  # held out: evenly interleaved
    assert all(s.meta["ops"] == 2 for s in task.samples("arith/test_ops2", limit=5))


def test_weights_and_component_fields(tmp_path):
    task = build_task(mix_cfg([{"name": "arith", "weight": 3, "arith": {"max_ops": 1}},
                               {"name": "generic", "weight": 1, "path": str(_generic_file(tmp_path)),
                                "verifiers": ["math"]}]))
    rows = task.samples("train", limit=400)
    share = sum(s.meta["task"] == "arith" for s in rows) / len(rows)
    assert 0.65 <= share <= 0.85
    assert all(s.meta["ops"] == 1 for s in rows if s.meta["task"] == "arith")  # the component's own knobs
    assert task.samples("train", limit=400) == rows  # deterministic
    assert len({s.id for s in rows if s.meta["task"] == "generic"}) == 3  # a small component is cycled


def _generic_file(tmp_path):
    import json

    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"{i}+1?", "answer": i + 1}) for i in range(3)))
    return path


@pytest.mark.parametrize("mix, needle", [
    ([], "is empty"),
    (["nope"], "unknown or nested task 'nope'"),
    (["mix"], "unknown or nested task 'mix'"),
    ([{"name": "arith", "weight": 0}], "weight"),
    ([{"name": "arith", "splits": ["train"]}], "splits"),
    ([{"name": "arith", "colour": "red"}], "unknown key(s) ['colour']"),
    (["arith", "arith"], "appears twice"),
    ([{"weight": 1}], "must be a task name or a mapping with a 'name'"),
])
def test_mix_validation(mix, needle):
    problems = validate_mix(mix_cfg(mix))
    assert any(needle in f"{key}: {what}" for key, what, _ in problems), problems


def test_mix_errors_reach_the_command_line(capsys):
    from rlvr.cli import main

    assert main(["grpo", "task=mix", "task.mix=[arith,nope]"]) == 2
    assert "task.mix[1].name" in capsys.readouterr().err


def test_per_task_metrics_from_sample_meta():
    from rlvr.rewards.scoring import ScoredRound, verifier_metrics
    from rlvr.tasks.base import Sample

    def sample(i, name):
        return Sample(id=str(i), prompt=[{"role": "user", "content": "x"}], answer="1", verifiers=("math",),
                      meta={"task": name})

    G = 2
    rnd = ScoredRound(samples=[sample(0, "arith"), sample(1, "mbpp"), sample(2, "arith")], rollouts=[object()] * 6,
                      rewards=torch.tensor([1.0, 0.0, 0.5, math.nan, 1.0, 1.0]),
                      accuracy=torch.tensor([1.0, 0.0, 1.0, math.nan, 1.0, 1.0]), results=[{}] * 6, metrics={})
    m = verifier_metrics([rnd])
    assert m["task/arith/accuracy"] == pytest.approx(0.75) and m["task/arith/frac"] == pytest.approx(4 / 6)
    assert m["task/mbpp/accuracy"] == pytest.approx(1.0)  # NaN (broken verifier) excluded
    assert m["task/mbpp/reward"] == pytest.approx(0.5)
    plain = ScoredRound([Sample("0", [], "1", ("math",))], [object()] * G, torch.ones(G), torch.ones(G), [{}] * G, {})
    assert not any(k.startswith("task/") for k in verifier_metrics([plain]))


def test_heldout_eval_judges_code_rows_with_their_own_verifier():
    # every eval scores through rlvr.rewards.scoring, whose primary spec decides accuracy per row
    from rlvr.rewards.scoring import primary_key
    from rlvr.tasks.base import Sample

    arith = Sample("a", [], "3", ("math", {"name": "format", "weight": 0.1}))
    code = Sample("c", [], {"test_list": ["assert f() == 1"]}, ("code", {"name": "format", "weight": 0.1}))
    assert (primary_key(arith), primary_key(code)) == ("math", "code")