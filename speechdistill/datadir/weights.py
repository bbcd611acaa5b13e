"""``utt2weight``: per-utterance loss weights, ``<utt-id> <float>``, each in (0, 1].

The filter stage writes it (``--mode weight``, ``--weight SCORE``) and Whisper KD training
multiplies every token loss of an utterance by its weight. Not Kaldi's.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from pathlib import Path

from speechdistill.datadir.core import DataDirError, read_kv, write_kv
from speechdistill.utils import PathLike

#: The file's name in a data dir.
UTT2WEIGHT = "utt2weight"


def is_weight(w: float) -> bool:
    """Whether ``w`` is a loss weight: a finite number in (0, 1]."""
    return math.isfinite(w) and 0 < w <= 1


def weight_problem(value: str) -> str | None:
    """Why ``value`` is not a weight (a number in (0, 1]), or None."""
    try:
        w = float(value)
    except ValueError:
        return f"expected one number in (0, 1], got {value!r}"
    if not is_weight(w):
        return f"weight must be in (0, 1], got {value}"
    return None


def read_weights(path: PathLike) -> dict[str, float]:
    """Read a ``utt2weight`` file; a bad line is a :class:`DataDirError` naming file and line."""
    out: dict[str, float] = {}
    for lineno, (utt, value) in enumerate(read_kv(path).items(), 1):
        problem = weight_problem(value)
        if problem is not None:
            raise DataDirError(f"{utt!r}: {problem}", path, lineno)
        out[utt] = float(value)
    return out


def write_weights(path: PathLike, weights: Mapping[str, float]) -> None:
    """Write ``weights`` (each in (0, 1]) atomically, C-sorted, 6 significant digits."""
    for utt, w in weights.items():
        if not is_weight(w):
            raise ValueError(f"{path}: weight of {utt!r} must be in (0, 1], got {w}")
    write_kv(path, {u: f"{w:.6g}" for u, w in weights.items()})


def weights_sha256(path: PathLike) -> str:
    """SHA-256 of a ``utt2weight`` file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
