"""The ``parity`` command (parity/cli.py): dispatch, pass-through of arguments, version, refusals."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from parity import cli

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "parity", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_unknown_command_is_one_line_exit_2(capsys):
    assert cli.main(["frobnicate", "--hub", "x"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == ""
    assert "unknown command 'frobnicate'" in lines[0]
    for name in ("report", "selftest", "fixtures", "compare", "show"):
        assert name in lines[0]


def test_unknown_option_and_no_command_exit_2(capsys):
    assert cli.main(["--frobnicate"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert cli.main([]) == 2
    assert "usage: parity COMMAND" in capsys.readouterr().err


def test_program_unknown_command(tmp_path):
    proc = _run("frobnicate", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "frobnicate" in proc.stderr


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("parity ") and out.split()[1][0].isdigit()


def test_help_lists_commands_and_exit_codes(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert f"  {name} " in out
    for code in ("0 ", "1 ", "2 ", "3 "):
        assert f"\n  {code}" in out


@pytest.mark.parametrize("name, module, func", [
    ("report", "parity.report.__main__", "main"),
    ("selftest", "parity.selftest", "main"),
    ("fixtures", "parity.fixtures", "main"),
    ("compare", "parity.inspection", "compare_main"),
    ("show", "parity.inspection", "show_main"),
])
def test_arguments_are_handed_on_unchanged(name, module, func, monkeypatch):
    import importlib

    seen = []

    def fake(argv):
        seen.append(argv)
        return 7

    monkeypatch.setattr(importlib.import_module(module), func, fake)
    args = ["--pair", "x", "--job-timeout", "5", "--help", "--", "-q", "a b"]
    assert cli.main([name, *args]) == 7
    assert seen == [args]


def test_subcommand_help_is_the_modules_own(capsys):
    from parity.report.__main__ import build_parser

    assert cli.main(["report", "--help"]) == 0
    out = capsys.readouterr().out
    assert "exit codes" in out
    for action in build_parser()._actions:
        for opt in action.option_strings:
            assert opt in out


def test_program_report_bad_usage_one_line(tmp_path):
    proc = _run("report", "--case", "no_such_case", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no_such_case" in lines[0]
    assert not (tmp_path / "reports").exists()
