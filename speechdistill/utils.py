"""Small shared helpers: atomic file and model-directory writes, logging set-up."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "MODEL_FILE_PATTERNS",
    "PathLike",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "fix_permissions",
    "process_umask",
    "setup_logging",
    "staging_dir",
]

PathLike = str | os.PathLike

# The process umask, read once at import (os.umask can only be read by setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    A crash or exception leaves the previous ``path`` (or nothing) behind, never a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    if "b" in mode:
        encoding = None
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if e.filename is None:  # a failed write or fsync (a full disk) names no file: name it
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def process_umask() -> int:
    """The process umask now (read by setting it, then restoring it)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def fix_permissions(root: Path, *, include_root: bool = False) -> None:
    """Give the entries below ``root`` (and ``root`` itself with ``include_root``) the usual umask
    modes (mkdtemp and some writers make owner-only ones)."""
    umask = process_umask()
    for p in [root, *root.rglob("*")] if include_root else root.rglob("*"):
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


#: The configuration files of a transformers Whisper model directory.
CONFIG_FILES = ("config.json", "generation_config.json")
#: The processor files (feature extractor and tokenizer) of a transformers model directory.
PROCESSOR_FILES = (
    "processor_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "normalizer.json",
)
#: Files of a transformers model/processor directory. Writing a model into a directory replaces
#: these (and removes those the new model lacks, e.g. stale shards); other files stay.
MODEL_FILE_PATTERNS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    *CONFIG_FILES,
    *PROCESSOR_FILES,
)


@contextlib.contextmanager
def staging_dir(out_dir: PathLike) -> Iterator[Path]:
    """Write a model into a hidden temporary directory inside ``out_dir``; on success its files
    replace the model files of ``out_dir`` (see :data:`MODEL_FILE_PATTERNS`; other files, such as
    a recipe's notes, stay). On error ``out_dir`` keeps its previous model.

    Raises :class:`ValueError` if ``out_dir`` is a file or holds a CTranslate2 model.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    if (out / "model.bin").exists():
        raise ValueError(
            f"{out}: holds a CTranslate2 model (model.bin); write the transformers model elsewhere"
        )
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".staging.", dir=out))
    try:
        yield tmp
        fix_permissions(tmp)
        new = {p.name for p in tmp.iterdir()}
        for pattern in MODEL_FILE_PATTERNS:
            for stale in out.glob(pattern):
                if stale.is_file() and stale.name not in new:
                    stale.unlink()
        # Weights first, configs last: a reader never sees new configs beside old weights.
        for p in sorted(tmp.iterdir(), key=lambda p: (p.suffix != ".safetensors", p.name)):
            os.replace(p, out / p.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def setup_logging(verbosity: int = 0) -> None:
    """Configure root logging for command-line use (``-v`` for debug, ``-q`` for warnings)."""
    level = logging.INFO
    if verbosity > 0:
        level = logging.DEBUG
    elif verbosity < 0:
        level = logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
