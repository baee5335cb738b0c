"""``--help`` shows the composed config (the values a command runs with), ``--cfg job`` prints it as YAML."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from rlvr.config.help import command_help
from rlvr.config.loading import ConfigError, compose_config, config_yaml, run_command, split_flags


def value_of(text: str, key: str) -> str:
    match = re.search(rf"^{re.escape(key)} = (.*)$", text, flags=re.M)
    assert match, f"{key} not in the help"
    return match.group(1)


def test_grpo_help_shows_the_preset_the_command_selects():
    text = command_help("grpo")
    # conf/grpo.yaml selects dapo; the dataclass default would say grpo / sequence / no dynamic sampling
    assert (value_of(text, "algo.name"), value_of(text, "algo.aggregation"), value_of(text, "algo.dynamic_sampling")) \
        == ("'dapo'", "'token'", "True")
    assert "algo = dapo" in text  # the group choice, with the options next to it
    text = command_help("grpo", ["algo=grpo"])
    assert (value_of(text, "algo.name"), value_of(text, "algo.kl_beta")) == ("'grpo'", "0.04")


def test_pipeline_help_shows_the_experiment_sizes():
    text = command_help("pipeline")
    assert value_of(text, "sft.max_steps") == "1200"  # experiment=demo, not SFTConfig's 1400
    assert (value_of(text, "grpo.max_steps"), value_of(text, "grpo.prompts_per_step")) == ("100", "32")
    assert value_of(command_help("pipeline", ["grpo.max_steps=7"]), "grpo.max_steps") == "7"


def test_help_shows_derived_defaults_resolved_and_every_key_has_help():
    text = command_help("eval", ["eval.n=16"])
    assert value_of(text, "eval.k_list") == "[1, 4, 16]"
    options = text.split("\n\n")[-1].splitlines()
    keys, helps = options[0::2], options[1::2]
    assert len(keys) == len(helps) > 40
    missing = [k for k, h in zip(keys, helps) if not h.strip()]
    assert all(" = " in k for k in keys) and not missing, missing


def test_help_reports_bad_overrides():
    with pytest.raises(ConfigError, match="sft.max_stepz"):
        command_help("sft", ["sft.max_stepz=3"])


def test_help_does_not_import_torch():
    code = ("import sys; from rlvr.config.help import command_help; command_help('grpo'); command_help('pipeline'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_cfg_job_is_the_composed_config_as_yaml():
    text = config_yaml("grpo", ["algo=gspo", "grpo.max_steps=3"])
    assert OmegaConf.create(text) == compose_config("grpo", ["algo=gspo", "grpo.max_steps=3"])
    assert "hydra" not in OmegaConf.create(text)
    both = OmegaConf.create(config_yaml("sft", [], "all"))
    assert both.sft.max_steps == 1400 and "sweep" in both.hydra


def test_cfg_job_runs_nothing(capsys):
    ran = []
    code = run_command("grpo", ["--cfg", "job", "algo=grpo"], lambda cfg: ["never validated"], ran.append)
    assert code == 0 and ran == []
    assert OmegaConf.create(capsys.readouterr().out).algo.name == "grpo"
    assert run_command("grpo", ["--cfg", "everything"], lambda cfg: [], ran.append) == 2 and ran == []


def test_split_flags():
    flags, rest = split_flags(["-m", "a=1", "--cfg=job", "--resolve", "b=2,3"])
    assert (flags.multirun, flags.cfg, flags.help, rest) == (True, "job", False, ["a=1", "b=2,3"])
    flags, rest = split_flags(["--help", "-c", "hydra", "--multirun"])
    assert (flags.multirun, flags.cfg, flags.help, rest) == (True, "hydra", True, [])
    with pytest.raises(ConfigError, match="--cfg"):
        split_flags(["--cfg"])
