"""Small shared helpers: atomic file and model-directory writes, logging set-up."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import inspect
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "LOCK_FILE",
    "MODEL_FILE_PATTERNS",
    "PathLike",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "fix_permissions",
    "locks_run",
    "process_umask",
    "run_lock",
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


#: The lock file of a run, inside the directory it writes.
LOCK_FILE = ".speechdistill.lock"


@contextlib.contextmanager
def run_lock(directory: PathLike, name: str = LOCK_FILE) -> Iterator[Path]:
    """Hold ``directory/name`` locked (``fcntl.flock``) while a run writes ``directory``.

    A second run on the same directory fails at once with a :class:`RuntimeError` naming the
    holder (pid, start time). The kernel releases the lock when its process dies, even by
    ``kill -9``, so a stale file left behind is harmless; a clean exit removes it.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "pid ?"
            os.close(fd)
            raise RuntimeError(
                f"{directory}: another speechdistill run ({holder}) is using this directory"
            ) from None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break  # not removed by a finishing holder between our open and flock
        os.close(fd)
    try:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {started}\n".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)  # releases the lock


def locks_run(directory: str | Callable[..., PathLike]) -> Callable:
    """Decorate a stage function to hold :func:`run_lock` on the directory it writes: the
    argument named ``directory``, or ``directory(*args, **kwargs)``."""

    def wrap(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            if callable(directory):
                path = directory(*args, **kwargs)
            else:
                path = signature.bind(*args, **kwargs).arguments[directory]
            with run_lock(path):
                return fn(*args, **kwargs)

        return run

    return wrap


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
