"""Hallucination heuristics of a transcript, from its text alone: Whisper's compression ratio,
repeated word n-grams, characters per second.

Pseudo-labelling writes them (``utt2compression_ratio``, …) and filtering scores them; a label
that loops compresses well, repeats an n-gram, or says too much for its audio.
"""

from __future__ import annotations

import zlib

__all__ = ["TEXT_STATS", "compression_ratio", "max_ngram_repeat", "text_stats"]

#: The text statistics, one ``utt2<name>`` file each in a pseudo-labelled data dir.
TEXT_STATS = ("compression_ratio", "max_ngram_repeat", "chars_per_sec")


def compression_ratio(text: str) -> float:
    """Bytes of the UTF-8 text over bytes of its zlib compression (Whisper's repetition check).

    Repetitive text compresses well, so loops score high (Whisper's threshold is 2.4);
    0.0 for an empty text.
    """
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def max_ngram_repeat(text: str, max_n: int = 4) -> int:
    """Largest number of consecutive repetitions of any word n-gram (n = 1..max_n).

    1 means no n-gram is immediately repeated; "a b a b a b" gives 3, and so does "no, no, no."
    (punctuation at the ends of words is ignored); 0 for an empty text.
    """
    words = [w.strip(".,;:!?\"'()[]") for w in text.lower().split()]
    words = [w for w in words if w]
    if not words:
        return 0
    best = 1
    for n in range(1, max_n + 1):
        for start in range(len(words) - n + 1):
            gram = words[start : start + n]
            count = 1
            pos = start + n
            while words[pos : pos + n] == gram:
                count += 1
                pos += n
            best = max(best, count)
    return best


def text_stats(text: str, duration: float) -> dict[str, float]:
    """``compression_ratio``, ``max_ngram_repeat`` and ``chars_per_sec`` of a transcript."""
    return {
        "compression_ratio": compression_ratio(text),
        "max_ngram_repeat": max_ngram_repeat(text),
        "chars_per_sec": len(text) / duration if duration > 0 else 0.0,
    }
