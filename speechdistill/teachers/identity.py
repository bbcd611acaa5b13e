"""What identifies a teacher: the sha256 of its weights, recorded in ``teacher.json``.

One definition serves every check that asks "is this the same teacher?": the pseudo-label plan
and caches, the CTranslate2 copy of a teacher, ``student.json`` and the DistilHuBERT heads. The
identity is content, not location: a moved directory with the same weights is the same teacher.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from speechdistill.utils import PathLike

__all__ = [
    "TEACHER_JSON",
    "is_prepared",
    "read_teacher_info",
    "sha256_file",
    "source_identity",
    "teacher_identity",
    "weights_sha256",
]

#: Written last into a prepared teacher directory: its name, source, weight hashes and config.
TEACHER_JSON = "teacher.json"
_CHUNK = 1 << 20


def sha256_file(path: PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def weights_sha256(model_dir: PathLike) -> dict[str, str]:
    """``{file name: sha256}`` of a model directory's weights (``*.safetensors``, CTranslate2's
    ``model.bin``)."""
    path = Path(model_dir)
    files = sorted(path.glob("*.safetensors")) + sorted(path.glob("model.bin"))
    return {p.name: sha256_file(p) for p in files}


def read_teacher_info(out_dir: PathLike) -> dict[str, Any] | None:
    """The ``teacher.json`` of a prepared teacher directory, or None."""
    path = Path(out_dir) / TEACHER_JSON
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def teacher_identity(teacher: PathLike) -> dict[str, Any]:
    """``{"weights_sha256": …}`` of a teacher directory: the hashes its ``teacher.json`` records,
    else those of its weight files; ``{"name": …}`` for a Hub id."""
    path = Path(teacher)
    if not path.is_dir():
        return {"name": str(teacher)}
    info = read_teacher_info(path)
    if info and info.get("weights_sha256"):
        return {"weights_sha256": info["weights_sha256"]}
    return {"weights_sha256": weights_sha256(path)}


def source_identity(source: dict[str, Any]) -> dict[str, Any]:
    """A teacher source description without its location (content, not path)."""
    return {k: v for k, v in source.items() if k != "path"}


def is_prepared(out: PathLike, source: dict[str, Any]) -> bool:
    """Whether ``out`` holds a finished copy of ``source`` whose weights still match their hashes."""
    info = read_teacher_info(out)
    if not info or source_identity(info.get("source") or {}) != source_identity(source):
        return False
    return bool(info.get("weights_sha256")) and info["weights_sha256"] == weights_sha256(out)
