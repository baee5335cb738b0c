"""End to end: pip-install the example plugin package, then use it by name from a reward config.

The package is installed with pip into a temporary target folder (not into the venv, so other tests do not see
it) and exercised in a fresh interpreter, exactly as a user's training run would discover it: through the
``rlvr.verifiers`` entry point of an installed distribution, loaded inside the reward worker processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "rlvr-keyword-verifier"

SCRIPT = textwrap.dedent("""
    import json
    from rlvr.rewards.runtime import RewardRuntime, RewardsConfig
    from rlvr.verifiers import available, load
    from rlvr.verifiers.testing import check_verifier

    if __name__ == "__main__":
        specs = [{"name": "math", "weight": 1.0}, {"name": "keyword", "keywords": ["therefore"], "weight": 0.5}]
        with RewardRuntime(RewardsConfig(num_workers=1, timeout_s=30)) as rt:
            batch = rt.score(["<think>x</think> therefore \\\\boxed{4}", "\\\\boxed{5}"], ["4", "4"], specs)
        check_verifier(load("keyword", keywords=["so"]), [("so 4", None, 1.0), ("4", None, 0.0)])
        print(json.dumps({"available": available(), "rewards": batch.rewards,
                          "errors": batch.last_errors}))
""")


def test_example_plugin_installs_and_scores_from_a_config(tmp_path):
    pytest.importorskip("setuptools", reason="building the example plugin without network needs setuptools")
    target = tmp_path / "site"
    source = tmp_path / "src"  # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    if pip.returncode != 0 and "No module named pip" in pip.stderr:
        pytest.skip("pip is not available in this interpreter")
    assert pip.returncode == 0, pip.stderr
    script = tmp_path / "use_plugin.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert "keyword" in out["available"]
    assert out["errors"] == {}
    assert out["rewards"] == [1.5, 0.0]   # math 1.0 + 0.5 * keyword 1.0; then math 0 + 0.5 * 0
