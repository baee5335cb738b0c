"""arith_steps: each line judged on the value the model carried into it; None outside arith."""

import pytest

from rlvr.verifiers import available, load

PROGRAM = {"program": {"start": 88, "ops": [["+", 9], ["-", 4]]}}


@pytest.fixture(scope="module")
def verifier():
    return load("arith_steps")


@pytest.mark.parametrize("thinking, score", [
    ("88+9=97\n97-4=93", 1.0),   # all right
    ("88+9=96\n96-4=92", 0.5),   # line 2 is right arithmetic on the wrong carried value: credited
    ("88+9=96\n96-4=93", 0.0),   # compensating error lands on the right answer: no step credit
    ("88+9=97", 0.5),            # a missing line scores 0
    ("88+9=97\n97-4=93\n93+1=94", 2 / 3),  # an extra line counts against the score
    ("88-9=79\n79-4=75", 0.5),   # wrong operation on line 1
    ("80+9=89\n89-4=85", 0.5),   # did not start from the start value
    ("", 0.0),
])
def test_scores(verifier, thinking, score):
    result = verifier(f"<think>\n{thinking}\n</think>\n\\boxed{{93}}", "93", meta=PROGRAM)
    assert result.error is None
    assert result.score == pytest.approx(score)


def test_answer_lines_outside_thinking_are_ignored(verifier):
    result = verifier("<think>\n88+9=97\n</think>\n97-4=93 \\boxed{93}", "93", meta=PROGRAM)
    assert result.score == pytest.approx(0.5)


def test_does_not_apply_without_a_program(verifier):
    assert verifier("<think>1+1=2</think>", "2", meta={}).score is None
    assert verifier("<think>1+1=2</think>", "2", meta=None).score is None


def test_registered_and_arith_samples_carry_the_program():
    from omegaconf import OmegaConf

    from rlvr.config import TaskConfig
    from rlvr.tasks import build_task

    assert "arith_steps" in available()
    task = build_task(OmegaConf.structured(TaskConfig()), data_dir=None)
    sample = task.samples("test_ops3", limit=1)[0]
    ok = load("arith_steps")(sample.solution, sample.answer, meta=sample.meta)
    assert ok.score == 1.0  # the reference trace is fully correct


def test_steps_give_each_lines_verdict_and_where_it_ends(verifier):
    completion = "<think>\n88+9=96\n96-4=92\n92+1=93\n</think>\n\\boxed{93}"
    result = verifier(completion, "93", meta=PROGRAM)
    assert [score for _, score in result.steps] == [0.0, 1.0, 0.0]  # line 3 is past the last operation
    assert [completion[:end].rsplit("\n", 1)[-1] for end, _ in result.steps] == ["88+9=96", "96-4=92", "92+1=93"]
    assert result.score == pytest.approx(1 / 3)


def test_no_lines_no_steps(verifier):
    assert verifier("<think>\nhmm\n</think>\n\\boxed{93}", "93", meta=PROGRAM).steps == ()
