"""``speechdistill`` command line: one subcommand per pipeline stage, thin over the library.

Each command module in this package (one per command, named like it) has ``register(subparsers)``,
which adds its parser and sets ``func`` (called with the parsed namespace; its return value is the
exit status). Only the modules in :data:`COMMANDS` are commands; ``options`` holds shared
argument-parsing helpers (the argparse types that refuse bad numbers and paths when parsed).
A user error (bad input, a failed write, see :func:`library_errors`) is logged as one line and
exits 1; ``-v`` shows its traceback; any other exception is a bug and keeps its traceback.
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
    "prune",
    "final_distill",
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


def library_errors() -> tuple[type[BaseException], ...]:
    """Exception types of the libraries speechdistill calls that mean bad input or a failed
    write, never a bug (a garbage safetensors or pickle file, unreadable audio, a malformed YAML
    file): shown as one line like OSError, ValueError and RuntimeError. Looked up when an error
    happens, so that building the parser imports none of these libraries."""
    import pickle

    types: list[type[BaseException]] = [OSError, ValueError, RuntimeError, pickle.UnpicklingError]
    for module, name in (
        ("safetensors", "SafetensorError"),
        ("soundfile", "SoundFileError"),
        ("yaml", "YAMLError"),
    ):
        lib = sys.modules.get(module)  # loaded if it raised
        if lib is not None and hasattr(lib, name):
            types.append(getattr(lib, name))
    return tuple(types)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception as e:  # user-facing errors: one line, no traceback (-v: with it)
        if args.verbose or not isinstance(e, library_errors()):
            raise  # a bug (AssertionError, TypeError, …) keeps its traceback
        text = (
            str(e)
            if isinstance(e, (OSError, ValueError, RuntimeError))
            else f"{type(e).__name__}: {e}"
        )
        log.error("%s", " ".join(line.strip() for line in text.splitlines() if line.strip()))
        return 1


if __name__ == "__main__":
    sys.exit(main())
