"""``--multirun``: Hydra's sweep expansion, every job validated before any starts, jobs in DIR/0, DIR/1, ... through
Hydra's launcher (the basic one and a third-party plugin), and single runs left exactly as they were.

The command bodies here only record what they were given: what a real job does is test_multirun.py's (slow)."""

from __future__ import annotations

import os
import textwrap

import pytest
from omegaconf import DictConfig

from rlvr.config.loading import ConfigError, run_command
from rlvr.config.sweep import expand_sweep, run_multirun, validate_sweep, varying
from rlvr.train.sft import validate as sft_validate

CALLS: list[dict] = []  # what each body saw; module level so that a launcher can pickle the body by name


def no_problems(cfg: DictConfig) -> list:
    return []


def record(cfg: DictConfig) -> int:
    from hydra.core.hydra_config import HydraConfig

    job = HydraConfig.get().job if HydraConfig.initialized() else None
    CALLS.append({"output_dir": cfg.output_dir, "max_steps": cfg.sft.max_steps, "cwd": os.getcwd(),
                  "job_id": None if job is None else str(job.id)})
    return 0


@pytest.fixture(autouse=True)
def _fresh_calls():
    CALLS.clear()


def test_expand_sweep_is_hydras_cartesian_product_in_its_order():
    jobs = expand_sweep(["sft.max_steps=2,3", "sft.batch_size=4,8", "logger=none"])
    assert jobs == [["sft.max_steps=2", "sft.batch_size=4", "logger=none"],
                    ["sft.max_steps=2", "sft.batch_size=8", "logger=none"],
                    ["sft.max_steps=3", "sft.batch_size=4", "logger=none"],
                    ["sft.max_steps=3", "sft.batch_size=8", "logger=none"]]
    assert expand_sweep(["sft.max_steps=range(1,3)"]) == [["sft.max_steps=1"], ["sft.max_steps=2"]]
    assert expand_sweep(["logger=none"]) == [["logger=none"]]
    assert varying(jobs)[1] == ["sft.max_steps=2", "sft.batch_size=8"]  # logger=none is the same in all
    with pytest.raises(ConfigError) as info:
        expand_sweep(["sft.max_steps=[1,", "ok=1", "x=interval(0,1)"])
    assert "sft.max_steps" in str(info.value)


def test_every_problem_of_every_job_at_once_shared_ones_once():
    jobs = expand_sweep(["sft.max_steps=2,-1,-2", "sft.batch_size=0"])
    found = validate_sweep("sft", jobs, sft_validate)
    where = [(w, p.key) for w, p in found]
    assert where == [("every job", "sft.batch_size"), ("job 1 (sft.max_steps=-1)", "sft.max_steps"),
                     ("job 2 (sft.max_steps=-2)", "sft.max_steps")]
    assert validate_sweep("sft", expand_sweep(["sft.max_steps=2,3"]), sft_validate) == []


def test_composition_errors_of_one_job_are_reported_with_the_others():
    found = validate_sweep("sft", expand_sweep(["model=tiny,gpt5", "sft.max_steps=-1"]), sft_validate)
    assert any(w.startswith("job 1 (model=gpt5") and "gpt5" in p.what for w, p in found)
    assert any(w == "every job" and p.key == "sft.max_steps" for w, p in found)


def test_jobs_sharing_an_explicit_output_dir_are_refused(tmp_path):
    found = validate_sweep("sft", expand_sweep(["sft.max_steps=2,3", f"output_dir={tmp_path}"]), no_problems)
    assert [(w, p.key) for w, p in found] == [("jobs 0, 1", "output_dir")]
    swept = expand_sweep([f"output_dir={tmp_path / 'a'},{tmp_path / 'b'}"])
    assert validate_sweep("sft", swept, no_problems) == []


def test_an_invalid_job_starts_no_job(tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    code = run_multirun("sft", ["sft.max_steps=2,-1", f"hydra.sweep.dir={sweep_dir}"], sft_validate, record)
    err = capsys.readouterr().err
    assert code == 2 and CALLS == [] and not sweep_dir.exists()
    assert "no job was started" in err and "job 1 (sft.max_steps=-1): sft.max_steps" in err


def test_basic_launcher_gives_each_job_its_folder_and_keeps_the_cwd(tmp_path):
    cwd = os.getcwd()
    code = run_command("sft", ["-m", "sft.max_steps=2,3", f"hydra.sweep.dir={tmp_path}"], no_problems, record)
    assert code == 0 and os.getcwd() == cwd
    assert [(c["output_dir"], c["max_steps"], c["cwd"]) for c in CALLS] == [
        (str(tmp_path / "0"), 2, cwd), (str(tmp_path / "1"), 3, cwd)]
    assert (tmp_path / "multirun.yaml").is_file()
    assert (tmp_path / "1" / ".hydra" / "overrides.yaml").read_text().strip() == "- sft.max_steps=3"


def test_an_explicit_output_dir_is_kept(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_command("sft", ["--multirun", f"output_dir={a},{b}", f"hydra.sweep.dir={tmp_path / 's'}"],
                       no_problems, record) == 0
    assert [c["output_dir"] for c in CALLS] == [str(a), str(b)]


def test_single_run_is_unchanged(tmp_path, monkeypatch):
    """No Hydra job: no outputs/ or multirun/ folder, no chdir, output_dir left to the command."""
    monkeypatch.chdir(tmp_path)
    assert run_command("sft", ["sft.max_steps=2"], no_problems, record) == 0
    assert CALLS == [{"output_dir": None, "max_steps": 2, "cwd": str(tmp_path), "job_id": None}]
    assert list(tmp_path.iterdir()) == []


LAUNCHER = '''
    """A third-party launcher, as a plugin: ships the task function pickled (as submitit, joblib and ray do) and
    runs the jobs in its own order with its own job ids."""
    import pickle

    from hydra.core.config_store import ConfigStore
    from hydra.core.utils import run_job
    from hydra.plugins.launcher import Launcher
    from omegaconf import open_dict


    class PicklingLauncher(Launcher):
        def setup(self, *, hydra_context, task_function, config):
            self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

        def launch(self, job_overrides, initial_job_idx):
            task = pickle.loads(pickle.dumps(self.task_function))
            runs = {}
            for idx in reversed(range(len(job_overrides))):
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(job_overrides[idx]))
                with open_dict(cfg):
                    cfg.hydra.job.id = f"pickled_{idx}"
                    cfg.hydra.job.num = initial_job_idx + idx
                runs[idx] = run_job(hydra_context=self.hydra_context, task_function=task, config=cfg,
                                    job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
            return [runs[i] for i in range(len(job_overrides))]


    ConfigStore.instance().store(group="hydra/launcher", name="rlvr_pickling",
                                 node={"_target_": "hydra_plugins.rlvr_pickling_launcher.PicklingLauncher"})
'''


def test_a_launcher_plugin_selected_with_hydra_launcher(tmp_path, monkeypatch):
    import importlib

    from hydra.core.plugins import Plugins

    plugin_root = tmp_path / "plugins"
    (plugin_root / "hydra_plugins").mkdir(parents=True)
    (plugin_root / "hydra_plugins" / "rlvr_pickling_launcher.py").write_text(textwrap.dedent(LAUNCHER))
    monkeypatch.syspath_prepend(str(plugin_root))
    importlib.invalidate_caches()
    module = importlib.import_module("hydra_plugins.rlvr_pickling_launcher")
    Plugins.instance().register(module.PicklingLauncher)  # what Hydra's plugin scan does at start-up

    sweep_dir = tmp_path / "sweep"
    argv = ["-m", "hydra/launcher=rlvr_pickling", "sft.max_steps=2,3", f"hydra.sweep.dir={sweep_dir}"]
    code = run_command("sft", argv, no_problems, record)
    assert code == 0
    assert [(c["job_id"], c["output_dir"], c["max_steps"]) for c in CALLS] == [
        ("pickled_1", str(sweep_dir / "1"), 3), ("pickled_0", str(sweep_dir / "0"), 2)]
    # an unknown launcher is a configuration error before anything runs, listing the installed ones
    CALLS.clear()
    assert run_command("sft", ["-m", "hydra/launcher=nope", f"hydra.sweep.dir={sweep_dir}2"], no_problems, record) == 2
    assert CALLS == [] and not (tmp_path / "sweep2").exists()
