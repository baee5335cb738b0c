"""Config validation: one test per error class, every error reported at once, exit code 2, no traceback."""

from __future__ import annotations

import pytest

from rlvr.cli import main as cli_main
from rlvr.config.loading import ConfigError, compose_config


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = cli_main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_defaults_compose_and_every_field_has_help():
    from dataclasses import fields, is_dataclass

    from rlvr.config import SCHEMAS

    cfg = compose_config("sft", [])
    assert cfg.model.name == "tiny" and cfg.task.name == "arith" and cfg.sft.max_steps > 0

    def walk(cls):
        for f in fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help string"
            default = f.default_factory() if callable(f.default_factory) else f.default
            if is_dataclass(default):
                walk(type(default))

    for schema in SCHEMAS.values():
        walk(schema)


def test_overrides_reach_the_config():
    cfg = compose_config("sft", ["sft.max_steps=7", "task.arith.max_ops=2", "logger=none", "model=smollm2-135m"])
    assert (cfg.sft.max_steps, cfg.task.arith.max_ops, cfg.logger.backend, cfg.model.name) == (7, 2, "none", "smollm2-135m")


def test_unknown_key(capsys):
    code, text = run_cli(capsys, "sft", "sft.max_stepz=3")
    assert code == 2
    assert "unknown key 'sft.max_stepz'" in text and "Traceback" not in text


def test_wrong_type(capsys):
    code, text = run_cli(capsys, "sft", "sft.max_steps=many")
    assert code == 2
    assert "sft.max_steps" in text and "wrong type" in text


def test_unknown_group_option_lists_valid_ones(capsys):
    code, text = run_cli(capsys, "sft", "model=gpt5")
    assert code == 2
    assert "tiny" in text and "smollm2-135m" in text


def test_unknown_task_and_model_names(capsys):
    code, text = run_cli(capsys, "sft", "task.name=nope", "model.name=nope")
    assert code == 2
    assert "unknown task 'nope'" in text and "arith" in text
    assert "unknown model 'nope'" in text


def test_missing_data_file(capsys, tmp_path):
    missing = tmp_path / "absent.jsonl"
    code, text = run_cli(capsys, "sft", "task=gsm8k", f"task.path={missing}")
    assert code == 2
    assert "does not exist" in text and str(missing) in text


def test_missing_model_folder(capsys, tmp_path):
    code, text = run_cli(capsys, "sft", f"model.name_or_path={tmp_path / 'no-model'}")
    assert code == 2 and "model.name_or_path" in text


def test_range_errors(capsys):
    code, text = run_cli(capsys, "sft", "sft.max_steps=0", "task.arith.min_ops=3", "task.arith.max_ops=2")
    assert code == 2
    assert "sft.max_steps" in text and "min_ops <= max_ops" in text


def test_all_errors_reported_at_once(capsys):
    code, text = run_cli(capsys, "sft", "sft.bogus=1", "sft.learning_rate=fast", "model=gpt5", "sft.batch_size=0")
    assert code == 2
    assert "4 configuration errors" in text
    for needle in ("sft.bogus", "sft.learning_rate", "gpt5", "sft.batch_size"):
        assert needle in text


def test_compose_error_object_lists_problems():
    with pytest.raises(ConfigError) as info:
        compose_config("sft", ["a.b.c=1", "sft.max_steps=x"])
    assert len(info.value.problems) == 2


def test_command_help_lists_options_with_help():
    from rlvr.config.help import command_help

    text = command_help("sft")
    assert "sft.max_steps = 1400" in text and "clicks" in text and "task.arith.max_ops = 3" in text
