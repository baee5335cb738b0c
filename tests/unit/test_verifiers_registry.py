"""Verifier lookup: built-ins, entry-point plugins, duplicates, unknown names, broken plugins, conformance."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rlvr.verifiers import VerifierError, VerifyResult, available, load
from rlvr.verifiers.testing import check_verifier


def make_distribution(root: Path, dist: str, entry_points: dict[str, str], module: str | None = None,
                      source: str = "") -> None:
    """Write a real installed-distribution layout (dist-info + module) into ``root`` (a sys.path entry)."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[rlvr.verifiers]\n{lines}\n")
    if module:
        (root / f"{module}.py").write_text(textwrap.dedent(source))


GOOD_PLUGIN = """
    from rlvr.verifiers import VerifyResult

    class Echo:
        name = "echo"
        def __init__(self, expected="yes"):
            self.expected = expected
        def __call__(self, completion, answer=None, *, meta=None):
            return VerifyResult(score=1.0 if self.expected in str(completion) else 0.0)
"""


def test_builtins_are_listed_and_load():
    assert {"math", "format", "code"} <= set(available())
    assert load("math").name == "math"
    assert load("format").name == "format"


def test_unknown_name_lists_installed_and_how_to_register():
    with pytest.raises(VerifierError) as info:
        load("maths")
    message = str(info.value)
    assert "unknown verifier 'maths'" in message
    assert "math" in message and "format" in message            # what is installed
    assert 'entry-points."rlvr.verifiers"' in message           # how to register


def test_bad_config_is_a_clear_error():
    with pytest.raises(VerifierError, match="unknown option"):
        load("math", bogus=1)
    with pytest.raises(VerifierError, match="unknown extraction rule"):
        load("math", rules=["boxed", "psychic"])


def test_entry_point_plugin_is_found(tmp_path, monkeypatch):
    make_distribution(tmp_path, "echo-plugin", {"echo": "echo_plugin:Echo"}, "echo_plugin", GOOD_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "echo" in available()
    verifier = load("echo", expected="ok")
    assert verifier("it is ok", None) == VerifyResult(score=1.0)
    check_verifier(verifier, [("ok", None, 1.0), ("no", None, 0.0)])


def test_duplicate_names_name_both_distributions(tmp_path, monkeypatch):
    make_distribution(tmp_path, "first-plugin", {"dup": "first_plugin:V"})
    make_distribution(tmp_path, "second-plugin", {"dup": "second_plugin:V"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(VerifierError) as info:
        load("dup")
    assert "first-plugin" in str(info.value) and "second-plugin" in str(info.value)


def test_plugin_cannot_shadow_a_builtin(tmp_path, monkeypatch):
    make_distribution(tmp_path, "shadow-plugin", {"math": "shadow_plugin:V"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(VerifierError, match=r"rlvr \(built-in\).*shadow-plugin"):
        load("math")


def test_broken_plugin_fails_only_when_loaded(tmp_path, monkeypatch):
    make_distribution(tmp_path, "broken-plugin", {"broken": "no_such_module_xyz:V"})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "broken" in available()
    assert load("math").name == "math"                           # others unaffected
    with pytest.raises(VerifierError, match="broken-plugin.*could not be imported"):
        load("broken")


def test_non_verifier_target_is_rejected(tmp_path, monkeypatch):
    make_distribution(tmp_path, "odd-plugin", {"odd": "odd_plugin:make"}, "odd_plugin", "def make():\n    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(VerifierError, match="not a Verifier"):
        load("odd")


def test_import_path_names():
    assert load("rlvr.verifiers.testing:Raise", when="x").name == "raise"
    with pytest.raises(VerifierError, match="could not be imported"):
        load("rlvr.verifiers.nope:Thing")


def test_code_builtin_is_lazy():
    # "code" is listed even if its module is missing or broken; only loading it may fail, and then clearly.
    assert "code" in available()
    try:
        verifier = load("code")
    except VerifierError as exc:
        assert "code" in str(exc)
    else:
        assert verifier.name == "code"


def test_conformance_helper_catches_violations():
    class Bad:
        name = "bad"

        def __call__(self, completion, answer, *, meta=None):
            if not completion:
                raise RuntimeError("empty")
            return 2.0 if answer == "42" else VerifyResult(score=1.5)

    with pytest.raises(AssertionError) as info:
        check_verifier(Bad(), [("x", "1", 1.0)])
    text = str(info.value)
    assert "raised RuntimeError" in text
    assert "returned float" in text
    assert "outside [0, 1]" in text


def test_builtins_pass_conformance():
    check_verifier(load("math"), [("\\boxed{4}", "4", 1.0), ("\\boxed{5}", "4", 0.0), ("x", None, None)])
