"""The ``--language`` of every command, checked against the model before any work: one rule for
pseudo-labelling (both backends), training, dev decoding, decoding, speed and the filter's models.

- an English-only model (``generation_config.is_multilingual`` false, or a CTranslate2 model
  without language tokens) accepts no language or English (a no-op) and refuses any other;
- a multilingual model accepts a language it has a token for, as transformers does: a code
  (``pt``), a name (``portuguese``) or the token (``<|pt|>``); anything else is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from speechdistill.utils import PathLike
from speechdistill.whisper.ct2.processor import language_ids, read_json, read_vocabulary
from speechdistill.whisper.tokens import ENGLISH_NAMES, MULTILINGUAL_MIN_VOCAB, language_token

__all__ = ["check_model_language", "model_languages", "resolve_language"]


def resolve_language(
    language: str | None, lang_to_id: dict[str, int] | None, what: str = "the model"
) -> str | None:
    """The language token (``<|pt|>``) to force for ``language``, or None (detect, or an
    English-only model); ``lang_to_id`` is None for an English-only model. ``what`` names the
    model in the error."""
    if not lang_to_id:
        if language is not None and language.strip().lower() not in ENGLISH_NAMES:
            raise ValueError(
                f"--language {language}: {what} is English-only (it knows no other language); "
                "use a multilingual model, or --language en"
            )
        return None
    if language is None:
        return None
    try:
        return language_token(language, lang_to_id)
    except ValueError as e:
        raise ValueError(f"--language {language}: {e} ({what} knows {len(lang_to_id)} languages, "
                         f"e.g. {', '.join(sorted(lang_to_id)[:4])})") from None  # fmt: skip


def model_languages(model_dir: PathLike) -> dict[str, int] | None:
    """Language token → id of a local Whisper model directory (transformers: its generation
    config; CTranslate2: its vocabulary and config), None for an English-only one."""
    path = Path(model_dir)
    gen_path = path / "generation_config.json"
    if gen_path.is_file():
        try:
            gen = json.loads(gen_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"{gen_path}: unreadable ({e})") from None
        if not gen.get("is_multilingual"):
            return None
        lang_to_id = gen.get("lang_to_id") or {}
        if not lang_to_id:
            raise ValueError(f"{gen_path}: a multilingual model without lang_to_id")
        return {str(k): int(v) for k, v in lang_to_id.items()}
    if (path / "model.bin").is_file():  # CTranslate2
        vocab = read_vocabulary(path)
        if len(vocab) < MULTILINGUAL_MIN_VOCAB or "<|translate|>" not in vocab:
            return None
        return {vocab[i]: i for i in language_ids(read_json(path / "config.json"), vocab)}
    raise ValueError(f"{path}: no generation_config.json or model.bin (not a Whisper model dir)")


def check_model_language(
    model_dir: PathLike, language: str | None, what: str = "the model", *, required: bool = False
) -> str | None:
    """:func:`resolve_language` for the model in ``model_dir`` (read from its config files, no
    weights loaded). Directories that are not local Whisper models (a Hub id, a CTC model) are
    not checked here (their loader checks). ``required``: a multilingual model needs a language
    (a training prompt)."""
    path = Path(model_dir)
    if not (path / "generation_config.json").is_file() and not (path / "model.bin").is_file():
        return None
    lang_to_id = model_languages(path)
    token = resolve_language(language, lang_to_id, f"{what} ({path})")
    if required and lang_to_id and token is None:
        raise ValueError(f"{what} ({path}) is multilingual: give its language (--language)")
    return token
