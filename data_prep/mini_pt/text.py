"""The sentences of mini_pt: loading and de-duplication keys (the split pools are mini_en's
:func:`~data_prep.mini_en.text.split_sentences`).

The bundled sentences (:data:`TEXT_DIR`, ``sentences/``) were written for speechdistill in the
style of NURC-SP's spontaneous speech; see its README for the licence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from data_prep.mini_en.text import read_sentences, text_files
from speechdistill.utils import PathLike

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
