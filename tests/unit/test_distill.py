"""``rlvr distill`` (rejection sampling): selection rules, the data file SFT reads, and a run on the tiny model with
a scripted sampler (an untrained model solves nothing, so the sampler returns a known mix of right and wrong)."""

from __future__ import annotations

import json

import pytest

from rlvr.train.distill import read_sft_file, select
from rlvr.rollout.types import Rollout
from rlvr.tasks.base import Sample


def rollout(sample_id: str, index: int, text: str, tokens: int, finish: str = "stop") -> Rollout:
    return Rollout(sample_id=sample_id, prompt_ids=(1,), completion_ids=tuple(range(tokens)),
                   logprobs=(0.0,) * tokens, text=text, finish_reason=finish, thinking_tokens=0, index=index)


def sample(i: int, ops: int) -> Sample:
    return Sample(id=f"s{i}", prompt=[{"role": "user", "content": f"q{i}"}], answer=str(i), verifiers=("math",),
                  meta={"ops": ops})


def test_select_keeps_the_shortest_correct_or_every_distinct_one():
    samples = [sample(0, 1), sample(1, 2)]
    rollouts = [rollout("s0", 0, "long", 9), rollout("s0", 1, "short", 3), rollout("s0", 2, "short", 3),
                rollout("s1", 0, "x", 2), rollout("s1", 1, "y", 2), rollout("s1", 2, "z", 2)]
    correct = [True, True, True, False, False, False]
    rows, groups = select(samples, rollouts, correct, 3, "one", "arith")
    assert [r["messages"][-1]["content"] for r in rows] == ["short"]
    assert rows[0]["messages"][:-1] == samples[0].prompt and rows[0]["messages"][-1]["role"] == "assistant"
    assert groups == {"arith/ops1": {"prompts": 1, "kept_prompts": 1, "completions": 3, "correct": 3,
                                     "kept_frac": 1.0, "correct_rate": 1.0},
                      "arith/ops2": {"prompts": 1, "kept_prompts": 0, "completions": 3, "correct": 0,
                                     "kept_frac": 0.0, "correct_rate": 0.0}}
    rows, _ = select(samples, rollouts, correct, 3, "all", "arith")
    assert sorted(r["messages"][-1]["content"] for r in rows) == ["long", "short"]  # duplicates dropped


def test_read_sft_file_round_trip_and_errors(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"id": "a", "messages": [{"role": "user", "content": "q"},
                                                        {"role": "assistant", "content": "r"}]}) + "\n\n")
    [s] = read_sft_file(path)
    assert (s.id, s.prompt, s.solution) == ("a", [{"role": "user", "content": "q"}], "r")
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n")
    with pytest.raises(ValueError, match="ending with an assistant turn"):
        read_sft_file(path)


def test_distill_run_writes_verified_traces_that_sft_can_read(tmp_path, monkeypatch, capsys):
    """Scripted sampler: completion 0 of each prompt is the reference trace, 1 a wrong answer, 2 the right answer
    without the thinking block (fails require_format), 3 the reference but truncated."""
    from rlvr.cli import main
    from rlvr.rollout.hf import HFEngine

    def scripted(self, samples, n=1, params=None):
        out = []
        for s in samples:
            texts = [s.solution, s.solution.replace(f"\\boxed{{{s.answer}}}", "\\boxed{1000}"),
                     f"\\boxed{{{s.answer}}}", s.solution]
            for j in range(n):
                out.append(rollout(s.id, j, texts[j % 4], 5 + j, "length" if j % 4 == 3 else "stop"))
        return out

    monkeypatch.setattr(HFEngine, "generate", scripted)
    out = tmp_path / "distill"
    args = ["distill", f"output_dir={out}", "model=tiny", "task=arith", "rollout=hf", "distill.num_prompts=6",
            "distill.n=4", "rewards.num_workers=0"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompts"] == 6 and summary["kept_prompts"] == 6 and summary["rows"] == 6
    assert summary["correct_rate"] == pytest.approx(0.25)  # only the reference trace passes every check
    assert sum(g["prompts"] for g in summary["groups"].values()) == 6
    assert all(key.startswith("arith/ops") for key in summary["groups"])
    samples = read_sft_file(out / "data.jsonl")
    assert len(samples) == 6 and all(s.solution.startswith("<think>") for s in samples)

    from rlvr.config import ModelConfig
    from rlvr.models import load_tokenizer
    from rlvr.train.sft import tokenize_for_sft

    tok = tokenize_for_sft(samples, load_tokenizer(ModelConfig()), 256)
    assert all(-100 in t["labels"] and t["labels"][-1] != -100 for t in tok)
    capsys.readouterr()
    assert main(args) == 0 and "nothing to do" in capsys.readouterr().out  # a finished stage is not redone


def test_distill_validation(capsys):
    from rlvr.cli import main

    assert main(["distill", "distill.keep=best", "distill.min_score=0", "distill.n=0", "rollout=tpu"]) == 2
    err = capsys.readouterr().err
    for key in ("distill.keep", "distill.min_score", "distill.n", "rollout"):
        assert key in err, key


def test_sft_train_file_must_exist(capsys, tmp_path):
    from rlvr.cli import main

    assert main(["sft", f"sft.train_file={tmp_path / 'absent.jsonl'}"]) == 2
    assert "sft.train_file" in capsys.readouterr().err
