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


def test_data_commands_start_without_torch(tmp_path):
    """Recipes call `speechdistill data …` many times: building the parser and validating a data
    dir must not import torch (seconds per call)."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text("s1-u1 /dev/null\n")
    (d / "utt2spk").write_text("s1-u1 s1\n")
    (d / "spk2utt").write_text("s1 s1-u1\n")
    (d / "text").write_text("s1-u1 hello\n")
    code = (
        "import sys\n"
        "from speechdistill.cli import main\n"
        f"rc = main(['data', 'validate', {str(d)!r}])\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print(rc, heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split("\n")[-2] == "0 []"
