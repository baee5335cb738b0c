"""Run cards: fingerprints, collect/write/render, parent chains, ``rlvr card`` and ``rlvr diff-runs``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rlvr.cli import main
from rlvr.config.loading import compose_config
from rlvr.runs.diff_runs import diff
from rlvr.runs.provenance import (CARD_FILE, PROVENANCE_FILE, chain, code_info, collect, dataset_fingerprint, model_hash,
                             log_to_wandb, verifier_info, write_run_card, write_stage_card)
from rlvr.runs.runcard import render_card

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EVAL = [{"split": "test_ops1", "n": 8, "accuracy": 0.5}, {"split": "test_ops2", "n": 8, "accuracy": 0.25}]


@pytest.fixture()
def final_model(tmp_path, tiny_model_dir):
    """A copy of the tiny model as some stage's final/ folder."""
    def make(run: Path) -> Path:
        shutil.copytree(tiny_model_dir, run / "final")
        return run / "final"
    return make


def sft_prov(run: Path, *overrides: str, eval_table=EVAL, wall=10.0, final=None) -> dict:
    cfg = compose_config("sft", ["logger=none", f"output_dir={run}", *overrides])
    return collect(cfg, "sft", run, model_path=final, wall_seconds=wall, eval_table=eval_table,
                   verifiers=["math"], datasets=[dataset_fingerprint(["a", "b"], source="x", split="train",
                                                                     role="train")])


# ------------------------------------------------------------------------------------------------ fingerprints
def test_dataset_fingerprint_is_over_the_rows_used():
    from rlvr.config import TaskConfig
    from rlvr.tasks.arith import ArithTask

    task = ArithTask(TaskConfig())
    rows = task.samples("test_ops2", limit=20)
    fp = dataset_fingerprint(rows, source="arith", role="eval")
    assert (fp["count"], fp["split"], fp["role"]) == (20, "test_ops2", "eval") and len(fp["sha256"]) == 64
    assert dataset_fingerprint(task.samples("test_ops2", limit=20))["sha256"] == fp["sha256"]  # deterministic
    assert dataset_fingerprint(rows[::-1])["sha256"] != fp["sha256"]  # order is part of what was used
    assert dataset_fingerprint(rows[:19])["sha256"] != fp["sha256"]


def test_model_hash_streams_weight_files_and_state_dicts(tmp_path, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    h = model_hash(tiny_model_dir)
    assert h["method"] == "weight files" and h["files"] == ["model.safetensors"] and h["bytes"] > 1e6
    assert model_hash(str(tiny_model_dir))["sha256"] == h["sha256"]
    assert model_hash("Qwen/Qwen2.5-0.5B") is None  # a hub id that is not on disk: unknown, not an error
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    a = model_hash(model)
    assert a["method"] == "state_dict" and model_hash(model)["sha256"] == a["sha256"]
    with torch.no_grad():
        next(model.parameters())[0, 0] += 1.0
    assert model_hash(model)["sha256"] != a["sha256"]
    model.save_pretrained(tmp_path / "changed")
    assert model_hash(tmp_path / "changed")["sha256"] != h["sha256"]


def test_verifier_info_names_distribution_version_and_source(monkeypatch):
    from rlvr import __version__

    math = verifier_info({"name": "math", "weight": 0.5, "rules": ["boxed"]})
    assert (math["distribution"], math["version"], math["weight"]) == ("rlvr", __version__, 0.5)
    assert math["target"] == "rlvr.verifiers.math:MathVerifier" and len(math["source_sha256"]) == 64
    assert math["config"] == {"rules": ["boxed"]}
    monkeypatch.syspath_prepend(str(FIXTURES))
    hack = verifier_info({"name": "rlvr_hackable_verifier:BoxedAnythingVerifier", "label": "hackable"})
    assert hack["key"] == "hackable" and hack["distribution"].startswith("(not packaged")
    assert len(hack["source_sha256"]) == 64


def test_code_info_never_fails_without_git(monkeypatch):
    import subprocess

    info = code_info()
    assert info["version"] and len(info["code_sha256"]) == 64

    def no_git(*a, **k):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    info = code_info()
    assert info["git_commit"] is None and len(info["code_sha256"]) == 64


# ------------------------------------------------------------------------------------------------ cards
def test_card_records_every_item_in_both_folders(tmp_path, final_model):
    run = tmp_path / "sft"
    final = final_model(run)
    prov = sft_prov(run, "run_card.limitations=['eval is 8 problems per split','CPU only']", "seed=3", final=final)
    write_run_card(run, prov, also_into=final)
    for folder in (run, final):
        assert json.loads((folder / PROVENANCE_FILE).read_text())["stage"] == "sft"
    card = (final / CARD_FILE).read_text()
    for heading in ("## Lineage", "## Code", "## Models", "## Final evaluation", "## Datasets",
                    "## Verifiers and reward weights", "## Algorithm", "## Thinking budgets", "## Seeds",
                    "## Contamination check", "## Reward-hacking monitors", "## Hardware and software",
                    "## Known limitations", "## Full resolved config"):
        assert heading in card, heading
    assert prov["model"]["base"]["sha256"] == prov["model"]["final"]["sha256"] == model_hash(final)["sha256"]
    assert "- eval is 8 problems per split" in card and "- CPU only" in card
    assert prov["seeds"]["seed"] == 3 and prov["seeds"]["task.arith.seed"] == 0
    assert prov["thinking_budgets"]["sft.eval_max_new_tokens"] == 96
    assert prov["algorithm"]["preset"] == "sft" and prov["reward_weights"] == {"math": 1.0}
    assert "| test_ops1 | 8 | 0.5 |" in card
    assert prov["hardware"]["cpu_count"] >= 1 and "torch" in prov["software"]


def test_parent_chain_sft_grpo_eval(tmp_path, final_model):
    sft = tmp_path / "pipe" / "sft"
    write_run_card(sft, sft_prov(sft, final=final_model(sft)), also_into=sft / "final")
    grpo = tmp_path / "pipe" / "grpo"
    gcfg = compose_config("grpo", ["logger=none", f"output_dir={grpo}", f"model.name_or_path={sft / 'final'}",
                                   "algo=dr_grpo"])
    gprov = collect(gcfg, "grpo", grpo, model_path=final_model(grpo), monitors={"empty_thinking": {"count": 0}})
    assert gprov["parent"]["stage"] == "sft" and gprov["parent_path"] == str((sft / "final" / PROVENANCE_FILE))
    assert gprov["algorithm"]["preset"] == "dr_grpo" and gprov["algorithm"]["loop"]["group_size"] == 8
    write_run_card(grpo, gprov, also_into=grpo / "final")
    ecfg = compose_config("eval", ["logger=none", f"output_dir={tmp_path / 'pipe'}",
                                   f"model.name_or_path={grpo / 'final'}"])
    eprov = collect(ecfg, "eval", tmp_path / "pipe" / "eval", eval_table=[{"split": "test", "budget": 16,
                                                                          "pass@1": 0.4}])
    assert [p["stage"] for p in chain(eprov)] == ["sft", "grpo", "eval"]
    assert eprov["thinking_budgets"]["eval.budgets"] == [0, 4, 8, 16, 32, 64]
    card = render_card(eprov)
    lineage = card.split("## Lineage")[1].split("## Code")[0]
    assert lineage.index("| 1 | sft |") < lineage.index("| 2 | grpo |") < lineage.index("| 3 | eval |")
    assert "pass@1: test@16 0.4" in lineage


def test_write_stage_card_logs_an_artifact_and_never_raises(tmp_path, final_model, capsys):
    logged = []

    class Run:
        def log_artifact(self, artifact):
            logged.append(artifact)

    class Tracker:
        wandb_run = Run()

    run = tmp_path / "sft"
    cfg = compose_config("sft", ["logger=none", f"output_dir={run}"])
    prov = write_stage_card(cfg, "sft", run, tracker=Tracker(), final_dir=final_model(run), wall_seconds=1.0)
    assert prov is not None and (run / "final" / CARD_FILE).exists()
    assert logged and logged[0].type == "run-card" and logged[0].metadata["stage"] == "sft"
    assert log_to_wandb(None, run) is False
    (tmp_path / "file").write_text("")
    assert write_stage_card(cfg, "sft", tmp_path / "file") is None  # unwritable: reported, not raised
    assert "run card not written" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ diff + CLI
def test_diff_names_exactly_the_override_plus_outputs(tmp_path):
    a = sft_prov(tmp_path / "a", "sft.learning_rate=0.003", wall=10.0)
    b = sft_prov(tmp_path / "b", "sft.learning_rate=0.001", wall=12.0,
                 eval_table=[dict(EVAL[0], accuracy=0.375), EVAL[1]])
    groups = diff(a, b)
    assert [k for k, _, _ in groups["recipe"]] == ["config.sft.learning_rate"]
    assert groups["recipe"][0][1:] == (0.003, 0.001)
    for g in ("data", "verifiers", "models", "environment"):
        assert groups[g] == [], (g, groups[g])
    assert [k for k, _, _ in groups["outputs"]] == ["eval_table[test_ops1].accuracy"]
    assert [k for k, _, _ in groups["timing"]] == ["wall_seconds"]
    assert groups["locations"] == []  # each run's own folder is "<run>" on both sides
    assert all(v == [] for v in diff(a, a).values())


def test_diff_follows_the_chain_and_compares_paths_within_each_run(tmp_path, final_model):
    provs = []
    for name, lr in (("pa", "3e-5"), ("pb", "1e-4")):
        sft = tmp_path / name / "sft"
        write_run_card(sft, sft_prov(sft, final=final_model(sft)), also_into=sft / "final")
        cfg = compose_config("grpo", ["logger=none", f"output_dir={tmp_path / name / 'grpo'}",
                                      f"model.name_or_path={sft / 'final'}", f"grpo.learning_rate={lr}"])
        provs.append(collect(cfg, "grpo", tmp_path / name / "grpo", wall_seconds=5.0))
    groups = diff(*provs)
    assert [k for k, _, _ in groups["recipe"]] == ["config.grpo.learning_rate"]
    assert groups["models"] == [] and groups["data"] == []  # same base weights under different folders
    assert all(k.startswith(("output_dir", "config.output_dir", "parent.", "model.base.resolved", "parent_path"))
               for k, _, _ in groups["locations"])


def test_card_and_diff_runs_commands(tmp_path, capsys):
    for name, lr in (("a", "0.003"), ("b", "0.002")):
        write_run_card(tmp_path / name, sft_prov(tmp_path / name, f"sft.learning_rate={lr}"))
    assert main(["card", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out.startswith("# Run card — sft")
    assert main(["card", str(tmp_path / "a"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stage"] == "sft"
    assert main(["diff-runs", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "recipe (config): 1 difference" in out and "config.sft.learning_rate" in out and "data fingerprints: same" in out
    assert main(["diff-runs", str(tmp_path / "a"), str(tmp_path / "b"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recipe"][0]["key"] == "config.sft.learning_rate"
    (tmp_path / "old").mkdir()
    assert main(["diff-runs", str(tmp_path / "a"), str(tmp_path / "old")]) == 2
    err = capsys.readouterr().err
    assert "old has no provenance.json" in err and "Traceback" not in err
    assert main(["card", str(tmp_path / "nowhere")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_pipeline_chain_diff_lists_one_override_once_and_its_consequences(tmp_path, tiny_model_dir, final_model):
    """sft -> grpo -> eval -> pipeline card, twice, with one GRPO setting changed: the diff names that setting once
    (it is in both the pipeline's and the grpo stage's config) and puts the changed GRPO weights — and the eval
    stage's base model, which *is* those weights — under outputs."""
    import torch
    from transformers import AutoModelForCausalLM

    provs = []
    for name, lr, bump in (("pa", "3e-5", 0.0), ("pb", "1e-4", 0.5)):
        run = tmp_path / name
        write_run_card(run / "sft", sft_prov(run / "sft", final=final_model(run / "sft")), also_into=run / "sft/final")
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        with torch.no_grad():
            next(model.parameters())[0, 0] += bump  # "training" with a different LR gives different weights
        model.save_pretrained(run / "grpo" / "final")
        grpo_overrides = ["logger=none", f"grpo.learning_rate={lr}"]
        gcfg = compose_config("grpo", [*grpo_overrides, f"output_dir={run / 'grpo'}",
                                       f"model.name_or_path={run / 'sft' / 'final'}"])
        write_run_card(run / "grpo", collect(gcfg, "grpo", run / "grpo", model_path=run / "grpo" / "final",
                                             wall_seconds=20.0 + bump), also_into=run / "grpo" / "final")
        ecfg = compose_config("eval", ["logger=none", f"output_dir={run}", f"run_dir={run / 'grpo'}",
                                       f"model.name_or_path={run / 'grpo' / 'final'}"])
        write_run_card(run / "eval", collect(ecfg, "eval", run / "eval", wall_seconds=3.0,
                                             eval_table=[{"split": "test", "budget": 32, "pass@1": 0.5 - bump / 5}]))
        pcfg = compose_config("grpo", [*grpo_overrides, f"output_dir={run}"])  # stands in for the pipeline config
        provs.append(collect(pcfg, "pipeline", run, parent=run / "eval" / PROVENANCE_FILE, wall_seconds=30.0))
    assert [p["stage"] for p in chain(provs[0])] == ["sft", "grpo", "eval", "pipeline"]
    groups = diff(*provs)
    assert [k for k, _, _ in groups["recipe"]] == ["config.grpo.learning_rate"]
    for g in ("data", "verifiers", "models", "environment"):
        assert groups[g] == [], (g, groups[g])
    outputs = {k for k, _, _ in groups["outputs"]}
    assert "parent.parent.model.final.sha256" in outputs and "parent.model.base.sha256" in outputs
    assert "parent.eval_table[test/32].pass@1" in outputs
