"""Derived defaults follow their source unless set; one source of truth for the algorithm presets."""

from __future__ import annotations

from dataclasses import fields

import pytest
from omegaconf import OmegaConf

from rlvr.config import AlgoConfig, EvalConfig, GRPORunConfig, default_k_list
from rlvr.config.algo import preset_knobs
from rlvr.config.derived import follow_n
from rlvr.config.loading import compose_config, load_config


@pytest.mark.parametrize(("n", "ks"), [(1, [1]), (2, [1, 2]), (4, [1, 4]), (8, [1, 4, 8]), (16, [1, 4, 16]),
                                       (32, [1, 4, 16, 32]), (0, [1])])
def test_default_k_list(n, ks):
    assert default_k_list(n) == ks


def test_eval_n_alone_is_valid_and_k_list_follows_it():
    from rlvr.eval.cli import validate

    cfg = load_config("eval", ["eval.n=4"], validate)  # before: "eval.k_list: [1, 4, 8] needs k <= n"
    assert list(cfg.eval.k_list) == [1, 4]
    assert list(compose_config("eval", []).eval.k_list) == [1, 4, 8]
    assert list(compose_config("eval", ["eval.n=2", "eval.k_list=[2]"]).eval.k_list) == [2]  # set: kept


def test_every_eval_section_follows_its_own_n():
    cfg = compose_config("grpo", ["budget_eval.n=2"])
    assert list(cfg.budget_eval.k_list) == [1, 2]
    assert list(compose_config("pipeline", ["eval.n=8"]).eval.k_list) == [1, 4, 8]
    # structured + merge (how the pipeline builds stage configs) follows n too; resolved at load, not at access
    node = OmegaConf.merge(OmegaConf.structured(GRPORunConfig), OmegaConf.from_dotlist(["budget_eval.n=16"]))
    assert list(node.budget_eval.k_list) == [1, 4, 16]
    assert not OmegaConf.is_interpolation(compose_config("eval", []).eval, "k_list")


def test_follow_n_only_moves_a_derived_k_list():
    before = compose_config("pipeline", [])
    after = OmegaConf.merge(before, OmegaConf.from_dotlist(["eval.n=2"]))
    assert follow_n(before.eval, after.eval) and list(after.eval.k_list) == [1, 2]
    chosen = compose_config("pipeline", ["eval.k_list=[1]"])
    after = OmegaConf.merge(chosen, OmegaConf.from_dotlist(["eval.n=2"]))
    assert not follow_n(chosen.eval, after.eval) and list(after.eval.k_list) == [1]


# ------------------------------------------------------------------------------------------------ presets
def test_algo_config_is_the_grpo_preset():
    from rlvr.algo.presets import resolve_algo

    assert AlgoConfig() == resolve_algo("grpo") and AlgoConfig().kl_beta == 0.04
    assert AlgoConfig(**compose_config("grpo", ["algo=grpo"]).algo) == AlgoConfig()


def test_preset_files_list_only_their_changes():
    """Every default once: a preset file restating an AlgoConfig default would be a second copy of it."""
    defaults = AlgoConfig()
    table = preset_knobs()
    assert sorted(table) == ["cispo", "dapo", "dr_grpo", "grpo", "gspo"] and table["grpo"] == {}
    for name, knobs in table.items():
        same = [k for k, v in knobs.items() if getattr(defaults, k) == v]
        assert not same, f"conf/algo/{name}.yaml restates defaults {same}"


def test_presets_table_is_derived_from_the_files():
    from rlvr.algo.presets import PRESETS

    changed = {k for knobs in preset_knobs().values() for k in knobs}
    for name, knobs in PRESETS.items():
        assert set(knobs) == changed
        composed = compose_config("grpo", [f"algo={name}"]).algo
        assert knobs == {k: composed[k] for k in knobs}, name


def test_preset_file_errors_name_the_file(tmp_path):
    (tmp_path / "mine.yaml").write_text("name: mine\nclip_hgh: 0.3\n")
    with pytest.raises(ValueError, match=r"mine.yaml.*clip_hgh"):
        preset_knobs(tmp_path)
    (tmp_path / "mine.yaml").write_text("name: other\n")
    with pytest.raises(ValueError, match="name: mine"):
        preset_knobs(tmp_path)
    (tmp_path / "mine.yaml").write_text("name: mine\nkl_beta: 0.1\n")
    assert preset_knobs(tmp_path) == {"mine": {"kl_beta": 0.1}}


def test_norm_constant_help_names_the_generation_budget():
    helps = {f.name: f.metadata["help"] for f in fields(AlgoConfig)}
    assert "grpo.max_new_tokens" in helps["norm_constant"]
    assert "follows n" in {f.name: f.metadata["help"] for f in fields(EvalConfig)}["k_list"]


def test_no_stale_not_implemented_notes():
    from pathlib import Path

    from rlvr.config.help import command_help

    conf = Path(__file__).resolve().parents[2] / "conf"
    texts = [command_help("grpo"), command_help("distill"), *(p.read_text() for p in conf.rglob("*.yaml"))]
    assert not [t for t in texts if "not implemented" in t.lower()]
