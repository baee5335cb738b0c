"""``rlvr plot``: the three PNGs from a fixture run directory (synthetic sweeps), and the wandb offline run's charts."""

from __future__ import annotations

import json

import pytest

from rlvr.cli import main
from rlvr.eval.budget_sweep import with_checkpoint, write_sweep
from rlvr.eval.plots import PLOTS, budget_axis, make_plots
from rlvr.runs.layout import Checkpoint

BUDGETS = [0, 4, 8, 16, 32, 64, None]  # 0 and no cap: the two values a log axis cannot place by itself
SPLITS = {"test_ops1": 9, "test_ops2": 17, "test_ops3": 25}  # thinking tokens each split needs


def synthetic_rows(step: int | None, train_tokens: float | None, skill: float) -> list[dict]:
    """Accuracy = skill once the budget covers the split's chain (the staircase the tiny model shows)."""
    rows = []
    for split, need in SPLITS.items():
        for b in BUDGETS:
            used = need if b is None else min(b, need)
            acc = skill * (used / need) ** 4
            rows.append({"task": "arith", "split": split, "budget": b, "n_problems": 50, "n": 4, "pass@1": acc,
                         "problems_judged": 50.0, "pass@4": 1 - (1 - acc) ** 4, "maj@4": acc,
                         "mean_thinking_tokens": used, "tokens_per_answer": used + 8.0, "truncation_rate": 0.0,
                         "budget_forced_rate": float(used < need), "verifier_error_rate": 0.0,
                         "not_applicable_rate": 0.0, "test_tokens": 50 * (used + 8.0),
                         "seconds": 0.1})
    label = f"step {step}" if step is not None else "some-model"
    return with_checkpoint(rows, Checkpoint(f"/models/{label}", label, step, train_tokens))


@pytest.fixture(scope="module")
def plotted(tmp_path_factory):
    """A fixture run (3 checkpoints x 3 splits x 7 budgets), plotted once by `rlvr plot` with an offline wandb run
    (matplotlib takes seconds per figure on a loaded 2-core machine, so the tests share one invocation)."""
    run = tmp_path_factory.mktemp("plots") / "run"
    for step, tokens, skill in [(0, 1.0e6, 0.5), (50, 1.1e6, 0.7), (100, 1.2e6, 0.9)]:
        rows = synthetic_rows(step, tokens, skill)
        write_sweep(run, rows, f"step{step}", {"checkpoint": rows[0]["checkpoint"]})
    (run / "config.yaml").write_text("logger:\n  backend: none\n")  # --wandb offline overrides it
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_DIR", str(run))
        mp.setenv("WANDB_SILENT", "true")
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["plot", str(run), "--wandb", "offline"])
    return run, code, out.getvalue().split()


def assert_png(path, min_w=600, min_h=300):
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        w, h = img.size
        assert w >= min_w and h >= min_h, (path.name, img.size)
        assert len(set(img.convert("L").getdata())) > 20  # lines and text drawn, not a blank canvas


def test_budget_axis_places_zero_and_no_cap_explicitly():
    x = budget_axis([0, 4, 64, None])
    assert x == {4: 4.0, 64: 64.0, 0: 2.0, None: 128.0}
    assert all(v > 0 for v in x.values())  # everything is placeable on a log axis
    assert budget_axis([0]) == {0: 0.5} and budget_axis([None]) == {None: 2.0}


def test_plot_command_writes_three_readable_pngs(plotted):
    run_dir, code, printed = plotted
    assert code == 0
    for name in PLOTS:
        path = run_dir / "plots" / f"{name}.png"
        assert str(path) in printed
        assert_png(path)


def test_plots_without_training_position_still_render(tmp_path):
    # a standalone model: no step, no train tokens -> the step/compute panels say so instead of failing
    rows = [r for r in synthetic_rows(None, None, 0.8) if r["split"] == "test_ops2"]
    paths = make_plots(tmp_path, rows=rows, metric="maj@4")
    assert [p.name for p in paths] == [f"{n}.png" for n in PLOTS]
    for p in paths:
        assert_png(p, min_w=400)  # one split: a one-panel figure


def test_plot_errors_exit_2(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "no budget sweeps" in capsys.readouterr().err
    write_sweep(tmp_path, synthetic_rows(1, 1.0, 0.5), "x", {})
    assert main(["plot", str(tmp_path), "--metric", "pass@99", "--wandb", "off"]) == 2
    assert "available: maj@4, pass@1, pass@4" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "missing")]) == 2


def test_wandb_offline_run_contains_charts_table_and_images(plotted):
    run_dir, code, _ = plotted
    assert code == 0
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = runs[0] / "files"
    # the raw rows as a table, re-plottable in the UI
    (table,) = (files / "media" / "table" / "eval").glob("budget_sweep_*.table.json")
    data = json.loads(table.read_text())
    assert {"checkpoint", "step", "train_tokens", "split", "budget", "pass@1"} <= set(data["columns"])
    assert len(data["data"]) == 3 * len(SPLITS) * len(BUDGETS)
    budgets = {row[data["columns"].index("budget")] for row in data["data"]}
    assert None in budgets and 0 in budgets
    # one line-series chart per split (accuracy vs budget / vs step) plus the compute chart; each has its table
    chart_tables = {p.name.split("_table_")[0] for p in (files / "media" / "table").rglob("*_table_*.table.json")}
    for split in SPLITS:
        assert f"{split}" in chart_tables
    series = json.loads(next((files / "media" / "table").rglob("test_ops3_table_*.table.json")).read_text())
    assert series["columns"] == ["step", "lineKey", "lineVal"]
    assert {r[1] for r in series["data"]} >= {"step 0", "step 100"}
    log = next(runs[0].glob("run-*.wandb")).read_bytes()
    assert b"wandb/lineseries/v0" in log
    for key in (b"eval/pass@1_vs_budget/test_ops1", b"eval/pass@1_vs_step/test_ops2", b"eval/pass@1_vs_compute"):
        assert key in log
    # the PNGs as images
    images = sorted((files / "media" / "images" / "plots").glob("*.png"))
    assert sorted(p.name.rsplit("_", 2)[0] for p in images) == sorted(PLOTS)
    for png in images:
        assert_png(png)
