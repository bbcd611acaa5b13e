"""The sentences of mini_pt: loading, de-duplication keys and the split pools.

The bundled sentences (:data:`TEXT_DIR`, ``sentences/``) were written for speechdistill in the
style of NURC-SP's spontaneous speech; see its README for the licence.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from data_prep.mini_en import seeds
from data_prep.mini_en.text import read_sentences, text_files
from speechdistill.utils import PathLike

log = logging.getLogger(__name__)

#: The bundled text: every ``*.txt`` file in this directory, one sentence a line.
TEXT_DIR = Path(__file__).resolve().parent / "sentences"

_KEY_RE = re.compile(r"[\W_]+")


def sentence_key(sentence: str) -> str:
    """The key two sentences must differ in: lower-case letters (accents kept) and digits."""
    return _KEY_RE.sub(" ", sentence.lower()).strip()


def load_sentences(paths: Sequence[PathLike] | None = None) -> list[str]:
    """Sentences of ``paths`` (files, or folders of ``*.txt`` in name order; default the bundled
    text), one a line, blank lines and ``#`` comments skipped, whitespace collapsed; a sentence
    whose :func:`sentence_key` repeats an earlier one is dropped (counted in the log)."""
    return read_sentences(text_files([TEXT_DIR] if paths is None else paths), sentence_key)


def split_sentences(
    sentences: Sequence[str], num_dev: int, num_test: int, seed: int
) -> dict[str, list[str]]:
    """Disjoint pools, independent of the train size: ``test`` and ``dev`` (the sizes asked)
    and ``train`` (the rest), in a seeded order."""
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
