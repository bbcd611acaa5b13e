"""The sentences of mini_en: loading, de-duplication keys, fingerprints and the split pools.

The bundled sentences are package data: :data:`TEXT_DIR` (``sentences/``, drawn for every split)
and :data:`TRAIN_TEXT_DIR` (``sentences_train/``, train only); each has a README with the source
(written for speechdistill) and the licence (CC0-1.0).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from data_prep.mini_en import seeds
from speechdistill.utils import PathLike

log = logging.getLogger(__name__)

#: The bundled text: every ``*.txt`` file in this directory, one sentence a line.
TEXT_DIR = Path(__file__).resolve().parent / "sentences"
#: Bundled train-only text (``--train-text``): sentences never drawn for dev or test.
TRAIN_TEXT_DIR = Path(__file__).resolve().parent / "sentences_train"
#: The ``--train-text`` value that stands for :data:`TRAIN_TEXT_DIR` (``./bundled`` is a path).
BUNDLED = "bundled"

_KEY_RE = re.compile(r"[^0-9a-z]+")


def sentence_key(sentence: str) -> str:
    """The key two sentences must differ in: lower-case letters and digits only."""
    return _KEY_RE.sub(" ", sentence.lower()).strip()


def resolve_train_text(paths: PathLike | Sequence[PathLike] | None) -> list[PathLike] | None:
    """Train-only text sources (``--train-text``) with the literal ``bundled`` replaced by
    :data:`TRAIN_TEXT_DIR`; other values (files or directories) are kept as given, and one path
    may be given alone. ``None`` or nothing: ``None``."""
    if paths is None:
        return None
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = [TRAIN_TEXT_DIR if isinstance(p, str) and p == BUNDLED else p for p in paths]
    return out or None


def text_files(paths: Iterable[PathLike]) -> list[Path]:
    """Sentence files: each path a file, or a folder of ``*.txt`` in name order."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.txt")))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"text source not found: {p}")
    if not files:
        raise ValueError(f"no sentence files (*.txt) in {[str(p) for p in paths]}")
    return files


def read_sentences(files: Iterable[Path], key: Callable[[str], str]) -> list[str]:
    """The sentences of ``files``, one a line (blank lines and ``#`` comments skipped, whitespace
    collapsed), in file order; a sentence whose ``key`` is empty is skipped, one whose ``key``
    repeats an earlier one dropped (counted in the log). Shared by the mini corpora."""
    out: list[str] = []
    seen: set[str] = set()
    dropped = 0
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            s = " ".join(line.split())
            if not s or s.startswith("#"):
                continue
            k = key(s)
            if not k:
                continue
            if k in seen:
                dropped += 1
                continue
            seen.add(k)
            out.append(s)
    if dropped:
        log.warning("dropped %d duplicate sentences", dropped)
    return out


def load_sentences(paths: Sequence[PathLike] | None = None) -> list[str]:
    """Read sentence files (one a line; blank lines and ``#`` comments skipped).

    ``paths`` are files or directories (their ``*.txt`` in name order); the default is the
    bundled ``sentences/``. Whitespace is collapsed and sentences whose :func:`sentence_key`
    repeats an earlier one are dropped, so the result has distinct keys, in file order.
    """
    return read_sentences(text_files([TEXT_DIR] if paths is None else paths), sentence_key)


def text_fingerprint(paths: Sequence[PathLike] | None = None) -> dict[str, str]:
    """sha256 of each sentence file, for ``local/text_source.txt``."""
    files = text_files([TEXT_DIR] if paths is None else paths)
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def split_sentences(
    sentences: Sequence[str], num_dev: int, num_test: int, seed: int
) -> dict[str, list[str]]:
    """Disjoint sentence pools: ``test`` and ``dev`` (exactly the sizes asked) and ``train`` (the
    rest, in a seeded order). Independent of the train size."""
    if num_dev + num_test >= len(sentences):
        raise ValueError(
            f"{len(sentences)} sentences cannot give {num_dev} dev + {num_test} test and leave "
            "any for train"
        )
    order = seeds.rng(seed, "sentences").sample(list(sentences), len(sentences))
    return {
        "test": order[:num_test],
        "dev": order[num_test : num_test + num_dev],
        "train": order[num_test + num_dev :],
    }
