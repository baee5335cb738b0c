from __future__ import annotations

import subprocess
import sys

from rlvr.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, help_) in COMMANDS.items():
        assert name in out and help_ in out


def test_unknown_command_exits_2(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "rlvr.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("rlvr ")
