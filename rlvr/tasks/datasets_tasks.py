"""Tasks backed by real datasets: GSM8K, MATH-500, AIME24, AMC23 (math), HumanEval, MBPP (code), and a
generic task for any dataset given a column mapping.

Each loads from ``task.path`` (local file/folder or hub id), else from the task's file in ``data_dir``, else
from its default hub id. Rows become ``Sample``s; where the data has a worked solution it is rendered in the
response format so the task can also feed SFT.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from rlvr.tasks.base import Sample, Task
from rlvr.tasks.loading import load_rows, require_columns, resolve_source


class DatasetTask(Task):
    # split -> file name inside data_dir (the layout of the project's shared benchmark data)
    default_files: ClassVar[dict[str, str]] = {}
    default_hub_id: ClassVar[str | None] = None
    default_hub_config: ClassVar[str | None] = None
    required_columns: ClassVar[list[str]] = []

    @property
    def splits(self) -> list[str]:
        return list(self.default_files) or ["train", "test"]

    def source(self, split: str) -> str:
        return resolve_source(
            self.cfg.path, self.data_dir, self.default_files.get(split), self.cfg.hub_id or self.default_hub_id
        )

    def rows(self, split: str, limit: int | None = None) -> list[dict[str, Any]]:
        source = self.source(split)
        rows = load_rows(source, split=split, hub_config=self.cfg.hub_config or self.default_hub_config, limit=limit)
        require_columns(rows, self.required_columns, source)
        return rows

    def samples(self, split: str, limit: int | None = None) -> list[Sample]:
        if self.cfg.path is None:
            self.check_split(split)
        return [self.to_sample(row, i, split) for i, row in enumerate(self.rows(split, limit))]

    def to_sample(self, row: dict[str, Any], index: int, split: str) -> Sample:
        raise NotImplementedError


def _plain_number(value: Any) -> str:
    """27.0 -> "27" (AMC stores integers as floats); anything else as its string."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


_CALCULATOR = re.compile(r"<<[^>]*>>")


class GSM8KTask(DatasetTask):
    name = "gsm8k"
    description = "GSM8K grade-school word problems (answer after '####')"
    default_files = {"train": "math/gsm8k_train.jsonl", "test": "math/gsm8k_test.jsonl"}
    default_hub_id = "openai/gsm8k"
    default_hub_config = "main"
    required_columns = ["question", "answer"]

    def to_sample(self, row, index, split):
        reasoning, _, final = row["answer"].rpartition("####")
        final = final.strip().replace(",", "")
        return Sample(
            id=f"gsm8k/{split}/{index}",
            prompt=self.prompt_messages(row["question"]),
            answer=final,
            verifiers=self.verifier_specs(),
            meta={"split": split},
            solution=self.response_format.render(_CALCULATOR.sub("", reasoning).strip(), final),
        )


class CompetitionMathTask(DatasetTask):
    required_columns = ["problem", "answer"]

    def to_sample(self, row, index, split):
        answer = _plain_number(row["answer"])
        solution = row.get("solution")
        return Sample(
            id=f"{self.name}/{split}/{row.get('unique_id', row.get('id', index))}",
            prompt=self.prompt_messages(row["problem"]),
            answer=answer,
            verifiers=self.verifier_specs(),
            meta={k: row[k] for k in ("subject", "level") if k in row} | {"split": split},
            solution=self.response_format.render(solution.strip(), answer) if solution else None,
        )


class Math500Task(CompetitionMathTask):
    name = "math500"
    description = "MATH-500, the PRM800K test subset of MATH (LaTeX answers)"
    default_files = {"test": "math/math500_test.jsonl"}
    default_hub_id = "HuggingFaceH4/MATH-500"


class AIME24Task(CompetitionMathTask):
    name = "aime24"
    description = "AIME 2024 (30 problems, integer answers 0-999)"
    default_files = {"test": "math/aime24_test.jsonl"}
    default_hub_id = "HuggingFaceH4/aime_2024"
    required_columns = ["problem", "answer"]


class AMC23Task(CompetitionMathTask):
    name = "amc23"
    description = "AMC 2023 (40 problems)"
    default_files = {"test": "math/amc23_test.jsonl"}
    default_hub_id = "math-ai/amc23"


def _fenced(code: str) -> str:
    return f"```python\n{code.rstrip()}\n```"


class HumanEvalTask(DatasetTask):
    name = "humaneval"
    description = "HumanEval: complete a Python function from its signature and docstring"
    default_files = {"test": "code/humaneval.jsonl"}
    default_hub_id = "openai/openai_humaneval"
    required_columns = ["task_id", "prompt", "test", "entry_point"]
    default_verifiers = ("code",)

    def to_sample(self, row, index, split):
        user = (
            "Complete the following Python function. Reply with the whole function in one ```python block.\n\n"
            + _fenced(row["prompt"])
        )
        canonical = row.get("canonical_solution")
        return Sample(
            id=row["task_id"],
            prompt=self.prompt_messages(user),
            answer={"test": row["test"], "entry_point": row["entry_point"]},
            verifiers=self.verifier_specs(),
            meta={"split": split, "entry_point": row["entry_point"]},
            solution=_fenced(row["prompt"] + canonical) if canonical else None,
        )


class MBPPTask(DatasetTask):
    name = "mbpp"
    description = "MBPP: write a Python function from a one-line description and example asserts"
    default_files = {"test": "code/mbpp.jsonl"}
    default_hub_id = "google-research-datasets/mbpp"
    default_hub_config = "full"
    required_columns = ["task_id", "text", "test_list"]
    default_verifiers = ("code",)

    def to_sample(self, row, index, split):
        tests = list(row["test_list"])
        user = (
            f"{row['text']}\nYour code should pass this test:\n{tests[0]}\n"
            "Reply with the code in one ```python block."
        )
        code = row.get("code")
        return Sample(
            id=f"mbpp/{row['task_id']}",
            prompt=self.prompt_messages(user),
            answer={"test_list": tests, "test_setup_code": row.get("test_setup_code") or ""},
            verifiers=self.verifier_specs(),
            meta={"split": split},
            solution=_fenced(code.replace("\r\n", "\n")) if code else None,
        )


class GenericTask(DatasetTask):
    """Any dataset: ``task.path`` plus a column mapping (prompt, answer, optional solution) and verifiers."""

    name = "generic"
    description = "any dataset (task.path=...) with a column mapping and verifiers from the config"

    @property
    def splits(self) -> list[str]:
        return ["train", "test", "validation"]

    @property
    def required_columns(self) -> list[str]:  # type: ignore[override]
        return [self.cfg.prompt_column, self.cfg.answer_column]

    def to_sample(self, row, index, split):
        answer = row[self.cfg.answer_column]
        solution_col = self.cfg.solution_column
        solution = row.get(solution_col) if solution_col else None
        prompt = row[self.cfg.prompt_column]
        messages = prompt if isinstance(prompt, list) else self.prompt_messages(str(prompt))
        return Sample(
            id=str(row.get("id", f"generic/{split}/{index}")),
            prompt=messages,
            answer=answer,
            verifiers=self.verifier_specs(),
            meta={"split": split},
            solution=self.response_format.render(str(solution).strip(), _plain_number(answer)) if solution else None,
        )
