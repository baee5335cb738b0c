"""scripts/check_structure.py finds import cycles (lazy imports count, TYPE_CHECKING ones don't), long files and
long functions: on small synthetic trees, and on this repository (which must have none)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "check_structure.py"


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
    assert checker.check(root) == ["import cycle: rlvr.a <-> rlvr.b\n    rlvr/a.py:1 imports rlvr.b\n"
                                   "    rlvr/b.py:2 imports rlvr.a"]


def test_scripts_are_top_level_modules_and_their_bare_imports_count(tmp_path):
    checker = load_checker()
    root = tree(tmp_path, {"scripts/a.py": "from b import f\n",
                           "scripts/b.py": "def f():\n    import a\n    return a\n",
                           "scripts/long.py": "x = 1\n" * (checker.MAX_FILE_LINES + 1)})
    assert checker.check(root) == ["import cycle: a <-> b\n    scripts/a.py:1 imports b\n"
                                   "    scripts/b.py:2 imports a",
                                   f"scripts/long.py: {checker.MAX_FILE_LINES + 1} lines (> {checker.MAX_FILE_LINES})"]


def test_the_repository_has_no_cycles_long_files_or_long_functions():
    problems = load_checker().check(REPO)
    assert problems == [], "\n".join(problems)


def test_relative_imports_import_module_literals_and_else_branches_are_edges(tmp_path):
    checker = load_checker()
    root = tree(tmp_path, {
        "rlvr/__init__.py": "",
        "rlvr/pkg/__init__.py": "",
        "rlvr/pkg/a.py": "from . import b\n",
        "rlvr/pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    pass\nelse:\n    from .c import x\n",
        "rlvr/pkg/c.py": "import importlib\ndef f():\n    return importlib.import_module('rlvr.pkg.a')\nx = 1\n",
    })
    problems = checker.check(root)
    assert len(problems) == 1 and problems[0].startswith("import cycle: rlvr.pkg.a <-> rlvr.pkg.b <-> rlvr.pkg.c")
    assert "rlvr/pkg/b.py:5 imports rlvr.pkg.c" in problems[0]


def test_methods_and_nested_functions_are_measured_on_their_own(tmp_path):
    checker = load_checker()
    inner = "\n".join(f"            y{i} = {i}" for i in range(100))
    root = tree(tmp_path, {"rlvr/__init__.py": "",
                           "rlvr/m.py": f"class C:\n    def outer(self):\n        def inner():\n{inner}\n        return 1\n"})
    assert checker.check(root) == ["rlvr/m.py: function C.outer is 103 lines (> 100)",
                                   "rlvr/m.py: function C.outer.<locals>.inner is 101 lines (> 100)"]


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
    assert any(p.startswith("import cycle: rlvr.verifiers.base <-> rlvr.verifiers.other\n") for p in problems)
    assert any(p.startswith("rlvr/long.py: function f is 102 lines") for p in problems)
    assert any(p.startswith("rlvr/long.py: 50") and "lines (> 500)" in p for p in problems)
