"""Tasks: arith generation and splits, rendering of every built-in task from the local data, generic loading."""

from __future__ import annotations

import json
import re

import pytest
from omegaconf import OmegaConf

from rlvr.config import TaskConfig
from rlvr.tasks import TASKS, Task, available_tasks, build_task, register_task
from rlvr.tasks.loading import DataSourceError

LINE = re.compile(r"^(\d+)([+\-*])(\d+)=(\d+)$")


def task_cfg(**overrides):
    return OmegaConf.merge(OmegaConf.structured(TaskConfig), overrides)


def check_trace(sample):
    """The solution's lines recompute the chain from the prompt and end at the boxed answer."""
    prompt = sample.prompt[-1]["content"]
    value = int(re.match(r"Start with (\d+)\.", prompt).group(1))
    thinking = sample.solution.split("<think>\n")[1].split("\n</think>")[0].splitlines()
    assert len(thinking) == sample.meta["ops"]
    for line in thinking:
        a, op, b, c = LINE.match(line).groups()
        assert int(a) == value
        value = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
        assert value == int(c) and 0 <= value <= 99
    assert sample.solution.endswith(f"\\boxed{{{value}}}") and sample.answer == str(value)


def test_arith_traces_are_correct_and_deterministic():
    task = build_task(task_cfg(name="arith"))
    a = task.samples("train", limit=300)
    assert [s.prompt for s in a] == [s.prompt for s in build_task(task_cfg(name="arith")).samples("train", limit=300)]
    for s in a:
        check_trace(s)
    assert {s.meta["ops"] for s in a} == {1, 2, 3}
    other_seed = build_task(task_cfg(name="arith", arith={"seed": 1})).samples("train", limit=300)
    assert [s.prompt for s in other_seed] != [s.prompt for s in a]


def test_arith_heldout_splits_are_disjoint_from_train_and_sized_by_ops():
    task = build_task(task_cfg(name="arith"))
    train = {s.prompt[-1]["content"] for s in task.samples("train", limit=20000)}
    for k in (1, 2, 3, 4):
        test = task.samples(f"test_ops{k}", limit=100)
        assert len(test) == 100 and all(s.meta["ops"] == k for s in test)
        assert not train & {s.prompt[-1]["content"] for s in test}
        for s in test:
            check_trace(s)
    mixed = task.samples("test", limit=90)
    assert [s.meta["ops"] for s in mixed[:6]] == [1, 2, 3, 1, 2, 3]


def test_arith_unknown_split_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid splits: train, test, test_ops1"):
        build_task(task_cfg(name="arith")).samples("dev")


@pytest.mark.parametrize("name, verifier", [
    ("gsm8k", "math"), ("math500", "math"), ("aime24", "math"), ("amc23", "math"),
    ("humaneval", "code"), ("mbpp", "code"),
])
def test_builtin_tasks_render_from_local_data(data_dir, name, verifier):
    task = build_task(task_cfg(name=name), data_dir=str(data_dir))
    split = task.splits[-1]
    samples = task.samples(split, limit=5)
    assert len(samples) == 5
    for s in samples:
        assert s.prompt[-1]["role"] == "user" and len(s.prompt[-1]["content"]) > 20
        assert s.verifiers == (verifier,)
        assert s.answer not in (None, "", {})
    first = samples[0]
    if name == "gsm8k":
        assert first.answer == "18" and "<<" not in first.solution and first.solution.endswith("\\boxed{18}")
    if name == "amc23":
        assert first.answer == "27"  # stored as the float 27.0
    if name == "humaneval":
        assert set(first.answer) == {"test", "entry_point"} and first.id == "HumanEval/0"
    if name == "mbpp":
        assert set(first.answer) == {"test_list", "test_setup_code"} and first.answer["test_list"][0] in first.prompt[-1]["content"]


def test_generic_task_reads_a_local_jsonl_with_a_column_mapping(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps({"q": f"What is {i}+1?", "a": i + 1, "why": f"{i}+1={i+1}"}) for i in range(4)))
    task = build_task(task_cfg(name="generic", path=str(path), prompt_column="q", answer_column="a",
                               solution_column="why", verifiers=["math"], system_prompt="Be brief."))
    samples = task.samples("train")
    assert len(samples) == 4
    assert samples[2].prompt == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+1?"}]
    assert samples[2].answer == 3 and samples[2].solution.endswith("\\boxed{3}")


def test_generic_task_missing_column_says_which_and_how_to_fix(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"question": "x", "answer": 1}) + "\n")
    task = build_task(task_cfg(name="generic", path=str(path)))
    with pytest.raises(DataSourceError, match=r"missing column\(s\) \['prompt'\].*available: \['answer', 'question'\].*prompt_column"):
        task.samples("train")


def test_unreadable_source_is_a_data_source_error(tmp_path):
    bad = tmp_path / "rows.txt"
    bad.write_text("hello")
    with pytest.raises(DataSourceError, match="unsupported file type"):
        build_task(task_cfg(name="generic", path=str(bad))).samples("train")


def test_registry_rejects_duplicates_and_lists_names_on_a_miss():
    class Impostor(Task):
        name = "arith"
        splits = ["train"]

        def samples(self, split, limit=None):
            return []

    with pytest.raises(ValueError, match="already registered"):
        register_task(Impostor)
    assert TASKS["arith"] is not Impostor
    with pytest.raises(KeyError, match="valid tasks: " + ", ".join(available_tasks())):
        build_task(task_cfg(name="nope"))


def test_tasks_cli_lists_and_renders(capsys, data_dir):
    from rlvr.cli import main

    assert main(["tasks", f"data_dir={data_dir}"]) == 0
    listing = capsys.readouterr().out
    for name in available_tasks():
        assert name in listing
    assert main(["tasks", "arith", "split=test_ops2", "index=3"]) == 0
    shown = capsys.readouterr().out
    assert "<|im_start|>user" in shown and "<|im_start|>assistant" in shown and "\\boxed{" in shown
