"""What every Whisper model shares: its input window, its vocabulary layouts, its language tokens.

Kept in one place so that decoding, pseudo-labelling (transformers and CTranslate2), training
prompts, the CTranslate2 importer and the model card agree on them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ENGLISH_NAMES",
    "MAX_INITIAL_TIMESTAMP_INDEX",
    "MAX_TARGET_POSITIONS",
    "MULTILINGUAL_MIN_VOCAB",
    "SAMPLE_RATE",
    "WINDOW_SAMPLES",
    "WINDOW_SECONDS",
    "is_multilingual",
    "language_token",
]

#: Whisper's input rate.
SAMPLE_RATE = 16000
#: The encoder sees 30 s windows (3000 log-mel frames at hop 160, 1500 encoder frames).
WINDOW_SECONDS = 30.0
WINDOW_SAMPLES = int(WINDOW_SECONDS * SAMPLE_RATE)
#: Multilingual vocabularies have ≥ 51865 entries (English-only: 51864); the rule openai-whisper
#: and CTranslate2 use.
MULTILINGUAL_MIN_VOCAB = 51865
#: Decoder positions (prompt + generated tokens), every Whisper size.
MAX_TARGET_POSITIONS = 448
#: Whisper's timestamp rules: the first timestamp is at most 1.0 s (50 × 0.02 s).
MAX_INITIAL_TIMESTAMP_INDEX = 50
#: The ways of asking an English-only model for its one language.
ENGLISH_NAMES = (None, "en", "english", "<|en|>")


def is_multilingual(generation_config: Any) -> bool:
    """Whether a transformers Whisper generation config is multilingual."""
    return bool(getattr(generation_config, "is_multilingual", False))


def language_token(language: str, lang_to_id: dict[str, int]) -> str:
    """``pt``, ``<|pt|>`` or ``portuguese`` → ``<|pt|>``, which must be in ``lang_to_id``."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    lang = language.strip().lower()
    if lang.startswith("<|"):
        token = lang
    elif lang in LANGUAGES:
        token = f"<|{lang}|>"
    elif lang in TO_LANGUAGE_CODE:
        token = f"<|{TO_LANGUAGE_CODE[lang]}|>"
    else:
        raise ValueError(f"unknown language {language!r}")
    if token not in lang_to_id:
        raise ValueError(f"the model has no language token {token}")
    return token
