"""``speechdistill`` command line: one subcommand per pipeline stage, thin over the library.

Each command module in this package (one per command, named like it) has ``register(subparsers)``,
which adds its parser and sets ``func`` (called with the parsed namespace; its return value is the
exit status). Only the modules in :data:`COMMANDS` are commands; ``options`` holds shared
argument-parsing helpers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from speechdistill import __version__
from speechdistill.utils import setup_logging

# Command modules, in the order of the pipeline.
COMMANDS = (
    "data",
    "format",
    "teacher",
    "hubert_teacher",
    "pseudo_label",
    "filter",
    "init_student",
    "train",
    "ctc_finetune",
    "decode",
    "ctc_decode",
    "score",
    "speed",
    "results",
    "compare",
    "publish",
)

log = logging.getLogger("speechdistill")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechdistill",
        description="Distil big speech-recognition models into small, fast ones.",
    )
    parser.add_argument("--version", action="version", version=f"speechdistill {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"speechdistill.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except (OSError, ValueError, RuntimeError) as e:  # user-facing errors: one line, no traceback
        if args.verbose:
            raise
        log.error("%s", e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
