"""Small shared helpers: atomic file and model-directory writes, ownership markers of the
directories the toolkit writes, logging set-up."""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import functools
import inspect
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = [
    "CLAIM_IGNORED",
    "LOCK_FILE",
    "MODEL_FILE_PATTERNS",
    "OWNER_FILE",
    "PathLike",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_owned",
    "claim_dir",
    "dir_owner",
    "fix_permissions",
    "locks_run",
    "mark_owned",
    "process_umask",
    "replace_dir",
    "run_lock",
    "setup_logging",
    "staging_dir",
]

PathLike = str | os.PathLike

log = logging.getLogger(__name__)

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


def file_stat(path: PathLike) -> list[int] | None:
    """``[size, mtime_ns]`` of a file, or None when it cannot be stat'ed: what a manifest
    records to tell whether a source or an output changed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


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


#: The ownership marker: written (atomically) into every directory the toolkit creates and may
#: later replace or write over, naming the command that owns it (see :func:`check_owned`).
OWNER_FILE = ".speechdistill.json"


#: What a recipe may leave in an output directory before its stage runs (job logs, stage
#: markers); it does not make the directory someone else's.
CLAIM_IGNORED = ("log", ".*")


def dir_owner(directory: PathLike) -> str | None:
    """The command named by ``directory``'s :data:`OWNER_FILE`, or None (absent or unreadable)."""
    try:
        found = json.loads((Path(directory) / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found.get("owner") if isinstance(found, dict) else None


def mark_owned(directory: PathLike, owner: str) -> None:
    """Write ``directory``'s :data:`OWNER_FILE`: the command ``owner`` wrote it."""
    atomic_write_text(Path(directory) / OWNER_FILE, json.dumps({"owner": owner}) + "\n")


def check_owned(
    out: PathLike,
    owner: str,
    *,
    legacy_record: Sequence[str] = (),
    legacy: Sequence[str] = ("*",),
    ignore: Sequence[str] = (),
    hint: str = "choose another output directory or remove it yourself",
) -> None:
    """Refuse (``ValueError`` naming ``out`` and ``hint``, the way out) to replace or write over
    ``out`` unless it is absent, empty (but for the ``ignore`` names) or owned by ``owner``.

    Ownership: ``out``'s :data:`OWNER_FILE` names ``owner``; or, for outputs of releases that
    wrote no marker, ``out`` holds one of ``legacy_record`` (the record the command writes) and
    every entry but a recipe's ``.*done`` markers matches one of the ``legacy`` glob patterns.
    ``ignore``: glob patterns of entries that do not count (e.g. a recipe's ``log``).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory; {hint}")
    if not out.is_dir():
        return
    names = [p.name for p in out.iterdir() if not _matches(p.name, ignore)]
    if not names:
        return
    found = dir_owner(out)
    if found == owner:
        return
    if found is not None:
        raise ValueError(
            f"{out}: written by `speechdistill {found}`, not `speechdistill {owner}`; "
            f"not replacing it: {hint}"
        )
    if any(r in names for r in legacy_record) and all(
        _matches(n, (".*done", *legacy)) for n in names
    ):
        log.info("%s: output of an earlier speechdistill %s (no %s)", out, owner, OWNER_FILE)
        return
    raise ValueError(
        f"{out}: not empty and not written by `speechdistill {owner}` (no {OWNER_FILE}); "
        f"not replacing it: {hint}"
    )


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pat) for pat in patterns)


def claim_dir(out: PathLike, owner: str, **check: Any) -> Path:
    """:func:`check_owned` (keywords ``check``), then create ``out`` and mark it ``owner``'s."""
    out = Path(out)
    check_owned(out, owner, **check)
    out.mkdir(parents=True, exist_ok=True)
    if dir_owner(out) != owner:
        mark_owned(out, owner)
    return out


def replace_dir(new: PathLike, out: PathLike, owner: str, **check: Any) -> None:
    """Move the finished directory ``new`` to ``out`` (marked ``owner``'s), replacing a previous
    ``out`` only if :func:`check_owned` (keywords ``check``) accepts it. The previous ``out`` is
    kept until ``new`` is in place; on error it is put back."""
    new, out = Path(new), Path(out)
    check_owned(out, owner, **check)
    mark_owned(new, owner)
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "dir")
    try:
        os.rename(new, out)
    except OSError:
        if old is not None:
            os.replace(old / "dir", out)
            old.rmdir()
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
def staging_dir(
    out_dir: PathLike, owner: str, *, legacy_record: Sequence[str] = ()
) -> Iterator[Path]:
    """Write a model into a hidden temporary directory inside ``out_dir``; on success its files
    replace the model files of ``out_dir`` (see :data:`MODEL_FILE_PATTERNS`; other files, such as
    a recipe's notes, stay). On error ``out_dir`` keeps its previous model.

    ``out_dir`` must be absent, empty (but for :data:`CLAIM_IGNORED`) or the command ``owner``'s
    (:func:`claim_dir`; an older
    release's output holds one of ``legacy_record``). Raises :class:`ValueError` otherwise, if
    ``out_dir`` is a file or if it holds a CTranslate2 model.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    if (out / "model.bin").exists():
        raise ValueError(
            f"{out}: holds a CTranslate2 model (model.bin); write the transformers model elsewhere"
        )
    claim_dir(out, owner, legacy_record=legacy_record, ignore=CLAIM_IGNORED)
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
