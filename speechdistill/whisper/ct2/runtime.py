"""The CTranslate2 runtime for Whisper: the ``ctranslate2`` package (an optional dependency),
compute types, devices, and the converted-once CTranslate2 copy of a transformers teacher.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from speechdistill.teachers.identity import teacher_identity
from speechdistill.utils import PathLike, atomic_write_text, check_owned, process_umask
from speechdistill.whisper.ct2.binary import MissingDependencyError, is_ct2_model_dir
from speechdistill.whisper.ct2.export import CT2_ENTRIES, OWNER, export_ct2

log = logging.getLogger(__name__)

__all__ = [
    "CACHE_PREFIX",
    "COMPUTE_TYPES",
    "INSTALL",
    "MIN_CTRANSLATE2",
    "STAMP",
    "converted_teacher",
    "import_ctranslate2",
    "parse_device",
    "resolve_compute_type",
]

#: The teacher's CTranslate2 copy lives in ``<teacher>/ct2-<compute type>/``.
CACHE_PREFIX = "ct2-"
#: What the cached copy was made from (checked before reuse).
STAMP = "speechdistill_ct2.json"
#: ``config.dtype`` values the backend accepts (CTranslate2 compute types).
COMPUTE_TYPES = (
    "float32",
    "float16",
    "bfloat16",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
)
#: Whisper's ``generate`` returns per-step logits from this version on.
MIN_CTRANSLATE2 = (4, 6)
#: How to install the optional dependency.
INSTALL = "pip install 'speechdistill[ct2]'"


def import_ctranslate2(what: str):
    """The ``ctranslate2`` module; :class:`MissingDependencyError` names the extra to install if it
    is missing or older than :data:`MIN_CTRANSLATE2` (``what`` names who needs it)."""
    try:
        import ctranslate2
    except ImportError as e:
        raise MissingDependencyError(f"{what} needs the `ctranslate2` package: {INSTALL}") from e
    version = tuple(int(p) for p in ctranslate2.__version__.split(".")[:2] if p.isdigit())
    if version < MIN_CTRANSLATE2:
        raise MissingDependencyError(
            f"{what} needs ctranslate2 >= "
            f"{'.'.join(map(str, MIN_CTRANSLATE2))} (per-step logits of Whisper), found "
            f"{ctranslate2.__version__}: pip install -U 'speechdistill[ct2]'"
        )
    return ctranslate2


def resolve_compute_type(dtype: str | None, device: str) -> str:
    """CTranslate2 compute type of ``config.dtype``: None → float32 on CPU, float16 on CUDA."""
    if dtype is None:
        return "float16" if str(device).startswith("cuda") else "float32"
    if dtype not in COMPUTE_TYPES:
        raise ValueError(
            f"dtype {dtype!r} is not a CTranslate2 compute type: choose one of "
            f"{', '.join(COMPUTE_TYPES)}"
        )
    return dtype


def parse_device(device: str) -> tuple[str, int]:
    """``cpu``, ``cuda``, ``cuda:1`` → (CTranslate2 device, index)."""
    kind, _, index = str(device).partition(":")
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: the ct2 backend runs on cpu or cuda[:N]")
    return kind, int(index or 0)


def _stamp_matches(path: Path, stamp: dict[str, Any]) -> bool:
    try:
        found = json.loads((path / STAMP).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return found == stamp and is_ct2_model_dir(path)


def converted_teacher(teacher: PathLike, quantization: str) -> Path:
    """The CTranslate2 copy of the transformers teacher dir ``teacher``, converted once.

    It lives in ``<teacher>/ct2-<quantization>/`` with a stamp of the teacher's identity
    (:func:`~speechdistill.teachers.identity.teacher_identity`) and is converted again when the teacher
    changed. The conversion is written to a temporary dir and renamed into place, so concurrent
    jobs never read half a model; a ``target`` the toolkit did not write is refused, not replaced
    (:func:`~speechdistill.utils.check_owned`). A read-only teacher dir is converted into a temporary dir
    (not kept).
    """
    src = Path(teacher)
    target = src / f"{CACHE_PREFIX}{quantization}"
    stamp = {"teacher": teacher_identity(src), "quantization": quantization}
    if _stamp_matches(target, stamp):
        return target
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=src))
    except OSError as e:
        out = Path(tempfile.mkdtemp(prefix="speechdistill-ct2-"))
        log.warning("%s is not writable (%s): converting the teacher into %s", src, e, out)
        export_ct2(src, out, quantization=quantization, force=True)
        return out
    try:
        log.info("converting %s to CTranslate2 (%s) → %s", src, quantization, target)
        export_ct2(src, tmp, quantization=quantization, force=True)
        atomic_write_text(tmp / STAMP, json.dumps(stamp, sort_keys=True) + "\n")
        os.chmod(tmp, 0o777 & ~process_umask())
        if target.exists():
            if _stamp_matches(target, stamp):  # another job finished first
                return target
            check_owned(target, OWNER, legacy_record=(STAMP,), legacy=(*CT2_ENTRIES, STAMP),
                        hint="move it out of the teacher directory")  # fmt: skip
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale.", dir=src))
            os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _stamp_matches(target, stamp):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
