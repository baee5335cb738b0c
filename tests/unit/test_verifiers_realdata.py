"""Agreement of the math verifier with labelled real model outputs (../shared/data, see PROVENANCE.md).

Every row where we disagree with the source label must be listed below with the reason: these labels come from
the sources' own graders, and some are wrong. The benchmark (scripts/bench_math_verifier.py) adds math-verify side
by side and measures throughput; this test only guards agreement.
"""

from __future__ import annotations

import json

import pytest

from rlvr.verifiers import load

# row id -> why our verdict differs from the source label (we are right in each case)
KNOWN_WRONG_LABELS = {
    "qwen25math_cot100_labelled": {
        # gt "10{,}000" is 10000 with a LaTeX thousands separator; the model answered \boxed{10000}. Qwen's grader
        # compared the strings and marked it wrong (PROVENANCE.md notes this known label error).
        "72/7": "10{,}000 == 10000",
    },
    "gsm8k_model_solutions": {},
}


def _gsm8k_rows(path):
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        problem = json.loads(line)
        for model in ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification"):
            sol = problem[model]
            yield f"{i}/{model}", sol["solution"], problem["ground_truth"], bool(sol["is_correct"])


def _qwen_rows(path):
    for line in path.read_text(encoding="utf-8").splitlines():
        problem = json.loads(line)
        for j, (text, score) in enumerate(zip(problem["code"], problem["score"])):
            yield f"{problem['idx']}/{j}", text, problem["gt"], bool(score)


@pytest.mark.parametrize("name, reader, expected_rows", [
    ("gsm8k_model_solutions", _gsm8k_rows, 5276),
    ("qwen25math_cot100_labelled", _qwen_rows, 800),
])
def test_agreement_with_labels(data_dir, name, reader, expected_rows):
    path = data_dir / "math" / f"{name}.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not found (see ../shared/data/PROVENANCE.md)")
    verifier = load("math")
    rows = list(reader(path))
    assert len(rows) == expected_rows
    disagreements = {}
    for row_id, completion, reference, label in rows:
        result = verifier(completion, reference)
        assert result.error is None
        if (result.score == 1.0) != label:
            disagreements[row_id] = (label, result.extracted, reference[-40:])
    unexplained = {k: v for k, v in disagreements.items() if k not in KNOWN_WRONG_LABELS[name]}
    assert not unexplained, f"new disagreements with the labels (label, extracted, reference): {unexplained}"
