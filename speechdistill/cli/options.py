"""Argument-parsing helpers shared by the command modules (not a command itself): typed
validators for numeric options, model sources, data dirs to read and paths to write (argparse
refuses a bad value with its one-line usage error naming the option and the path) and
``KEY=VALUE`` lists."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "add_force_arg",
    "data_dir",
    "key_values",
    "model_dir",
    "model_source",
    "non_negative_float",
    "non_negative_int",
    "out_dir",
    "out_file",
    "positive_float",
    "positive_int",
    "probability",
    "unit_weight",
]


def add_force_arg(p: argparse.ArgumentParser) -> None:
    """A trainer's ``--force``: start over instead of resuming (see ``speechdistill.train.run``)."""
    p.add_argument(
        "--force",
        action="store_true",
        help="start over: remove OUT's previous training run (its checkpoints, model, logs) "
        "instead of resuming it; without it a rerun resumes only a run of the same settings "
        "and inputs and refuses any other",
    )


def _number(text: str, cast: type) -> Any:
    try:
        value = cast(text)
    except ValueError:
        kind = "an integer" if cast is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
    if cast is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _bounded(cast: type, ok: Callable[[Any], bool], expected: str, doc: str) -> Callable:
    """An argparse type: ``cast`` of the text, refused (naming ``expected``) unless ``ok``."""

    def parse(text: str):
        value = _number(text, cast)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__doc__ = doc
    return parse


positive_int = _bounded(int, lambda v: v >= 1, "an integer >= 1",
                        "An integer >= 1 (counts, sizes: --nj, --batch-size, --num-beams).")  # fmt: skip
non_negative_int = _bounded(int, lambda v: v >= 0, "an integer >= 0",
                            "An integer >= 0 (0 meaning none or off: --bootstrap 0, seeds).")  # fmt: skip
positive_float = _bounded(float, lambda v: v > 0, "a number > 0",
                          "A finite number > 0 (durations in seconds, temperatures).")  # fmt: skip
non_negative_float = _bounded(float, lambda v: v >= 0, "a number >= 0", "A finite number >= 0.")
probability = _bounded(float, lambda v: 0 <= v <= 1, "a number in [0, 1]", "A number in [0, 1].")
unit_weight = _bounded(float, lambda v: 0 < v <= 1, "a number in (0, 1]",
                       "A number in (0, 1] (loss weights: --weight-floor).")  # fmt: skip


def str2bool(text: str) -> bool:
    """``true``/``false`` (also yes/no, 1/0), as the recipes pass booleans."""
    low = text.lower()
    if low in ("true", "yes", "1"):
        return True
    if low in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def model_source(text: str) -> str:
    """A model directory or a Hub repo id; a missing local path is refused (see
    :func:`speechdistill.teachers.source.check_model_source`)."""
    from speechdistill.teachers.source import check_model_source

    try:
        check_model_source(text)
    except (OSError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def model_dir(text: str) -> str:
    """An existing local model directory."""
    from speechdistill.teachers.source import check_model_source

    try:
        check_model_source(text, hub=False)
    except (OSError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def data_dir(text: str) -> str:
    """An existing, non-empty directory (a Kaldi data dir to read)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such data directory")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: not a directory (a data dir is one)")
    if not any(path.iterdir()):
        raise argparse.ArgumentTypeError(f"{text}: empty directory (not a Kaldi data dir)")
    return text


def out_dir(text: str) -> str:
    """A directory to write: new, or an existing directory (never an existing file)."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a directory")
    return text


def out_file(text: str) -> str:
    """A file to write: new, or an existing file (never a directory)."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a directory (a file is written here)")
    return text


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def key_values(items: list[str] | None, flag: str) -> dict[str, Any]:
    """Repeated ``KEY=VALUE`` options as a dict (true/yes, false/no, ints and floats converted)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key] = _parse_value(value)
    return out
