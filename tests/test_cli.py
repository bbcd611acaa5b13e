"""The console script: every subcommand is listed in --help."""

from __future__ import annotations

import subprocess
import sys

from speechdistill.cli import COMMANDS, build_parser


def test_help_lists_every_subcommand():
    out = subprocess.run(
        [sys.executable, "-m", "speechdistill", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in COMMANDS:
        assert f"    {name.replace('_', '-')}" in out


def test_unknown_subcommand_is_an_error(capsys):
    parser = build_parser()
    try:
        parser.parse_args(["no-such-stage"])
    except SystemExit as e:
        assert e.code == 2
    else:
        raise AssertionError("unknown subcommand accepted")
