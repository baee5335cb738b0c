"""scripts/check_structure.py finds import cycles (lazy imports count, TYPE_CHECKING ones don't), long files and
long functions, on small synthetic trees."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_structure.py"


def load_checker():
    spec = importlib.util.spec_from_file_location("check_structure", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_lazy_import_cycle_is_found(tmp_path):
    checker = load_checker()
    root = tree(tmp_path, {"rlvr/__init__.py": "", "rlvr/a.py": "from rlvr.b import f\n",
                           "rlvr/b.py": "def f():\n    from rlvr import a\n    return a\n"})
    assert checker.check(root) == ["import cycle: rlvr.a <-> rlvr.b"]


def test_type_checking_imports_and_parent_packages_are_not_edges(tmp_path):
    checker = load_checker()
    root = tree(tmp_path, {
        "rlvr/__init__.py": "",
        "rlvr/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rlvr.b import f\n",
        "rlvr/b.py": "from rlvr.a import x\n",
        # a package that re-exports its submodule is not in a cycle with it
        "rlvr/config/__init__.py": "from rlvr.config.options import opt\n",
        "rlvr/config/options.py": "opt = 1\n",
        "rlvr/c.py": "from rlvr.config.options import opt\n",
    })
    assert checker.check(root) == []


def test_mapped_packages_and_sizes(tmp_path):
    checker = load_checker()
    body = "\n".join(f"    x{i} = {i}" for i in range(101))
    root = tree(tmp_path, {
        "rlvr/__init__.py": "", "verifiers/__init__.py": "from rlvr.verifiers.base import V\n",
        "verifiers/base.py": "import rlvr.verifiers.other\nV = 1\n",
        "verifiers/other.py": "from rlvr.verifiers import base\n",
        "rlvr/long.py": "def f():\n" + body + "\n" + "\n" * 400,
    })
    problems = checker.check(root)
    assert "import cycle: rlvr.verifiers.base <-> rlvr.verifiers.other" in problems
    assert any(p.startswith("rlvr/long.py: function f is 102 lines") for p in problems)
    assert any(p.startswith("rlvr/long.py: 50") and "lines (> 500)" in p for p in problems)
