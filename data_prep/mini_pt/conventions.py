"""NURC-SP transcription conventions inserted into mini_pt's reference text.

NURC transcripts mark non-speech and prosody in the text; the ``pt_br`` normaliser
(:func:`speechdistill.text.pt_br_normalizer`) removes each mark used here, so a marked reference
normalises to the same words as the plain sentence that espeak-ng speaks:

* ``((risos))``, ``((tosse))`` …: a transcriber's comment (removed with its content);
* ``(( ))``: an unintelligible stretch (removed; the row's ``quality`` becomes ``low``, as the
  corpus rates segments with parts that could not be transcribed);
* ``::`` after a vowel: a lengthened sound (``e::``, ``mu::ito``; deleted);
* ``/`` after a word: a cut-off or reformulated phrase (``a gente/ a gente ia``; a space);
* ``...`` after a word: a pause (punctuation: a space);
* a word in capitals: emphasis (``MUITO``; lower-cased).

NURC's ``(hipótese)`` (words heard uncertainly) is not inserted: the normaliser drops the words
inside, so the reference would lose words the audio has.
"""

from __future__ import annotations

import random

#: Transcriber comments ``((…))``.
COMMENTS = (
    "((risos))", "((rindo))", "((tosse))", "((ruído))", "((pausa longa))", "((falando baixo))",
    "((barulho de porta))", "((telefone tocando))", "((suspiro))", "((vozes ao fundo))",
)  # fmt: skip
#: An unintelligible stretch.
UNINTELLIGIBLE = "(( ))"
#: Kinds of marks, drawn with these weights.
KINDS = {"comment": 3, "unintelligible": 1, "lengthening": 3, "truncation": 2, "pause": 3,
         "emphasis": 2}  # fmt: skip
#: Share of segments that get marks, and at most how many marks one segment gets.
MARKED_SHARE = 0.35
MAX_MARKS = 2

_VOWELS = set("aeiouáéíóúâêôãõà")


def _lengthen(word: str, rng: random.Random) -> str | None:
    spots = [i + 1 for i, ch in enumerate(word) if ch in _VOWELS]
    if not spots:
        return None
    # mostly the last vowel ("então::", "e::"), sometimes an inner one ("mu::ito")
    i = spots[-1] if rng.random() < 0.7 else rng.choice(spots)
    return word[:i] + "::" + word[i:]


def mark_one(words: list[str], kind: str, rng: random.Random) -> bool:
    """Apply one mark of ``kind`` to ``words`` in place; False when it does not fit."""
    if kind in ("comment", "unintelligible"):
        mark = rng.choice(COMMENTS) if kind == "comment" else UNINTELLIGIBLE
        words.insert(rng.randint(0, len(words)), mark)
        return True
    plain = [i for i, w in enumerate(words) if w.isalpha() and w.islower()]
    if kind in ("truncation", "pause"):
        plain = [i for i in plain if i < len(words) - 1]  # not after the last word
    if kind == "emphasis":
        plain = [i for i in plain if len(words[i]) > 2]
    if not plain:
        return False
    i = rng.choice(plain)
    if kind == "lengthening":
        new = _lengthen(words[i], rng)
        if new is None:
            return False
        words[i] = new
    elif kind == "truncation":
        words[i] += "/"
    elif kind == "pause":
        words[i] += "..."
    elif kind == "emphasis":
        words[i] = words[i].upper()
    else:
        raise ValueError(f"unknown NURC mark kind {kind!r}")
    return True


def annotate(sentence: str, rng: random.Random) -> tuple[str, list[str]]:
    """``sentence`` with NURC marks for :data:`MARKED_SHARE` of calls (one to
    :data:`MAX_MARKS`), and the kinds applied."""
    if rng.random() >= MARKED_SHARE:
        return sentence, []
    words = sentence.split()
    kinds: list[str] = []
    for _ in range(rng.randint(1, MAX_MARKS)):
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        if mark_one(words, kind, rng):
            kinds.append(kind)
    return " ".join(words), kinds
