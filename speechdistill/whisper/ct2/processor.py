"""The processor of a CTranslate2 Whisper directory: its vocabulary, language tokens, a
transformers tokenizer and feature extractor, built from ``tokenizer.json``, ``vocabulary.*``,
``config.json`` and ``preprocessor_config.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from speechdistill.whisper.ct2.binary import ConversionError
from speechdistill.whisper.tokens import MULTILINGUAL_MIN_VOCAB

__all__ = [
    "build_feature_extractor",
    "build_tokenizer",
    "language_ids",
    "read_json",
    "read_processor",
    "read_vocabulary",
]

_NON_LANGUAGE_SPECIALS = {
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|nospeech|>",
    "<|notimestamps|>",
}
_TIMESTAMP_RE = re.compile(r"^<\|\d+\.\d\d\|>$")
_LANGUAGE_RE = re.compile(r"^<\|[a-z]{2,3}(?:_[a-z]+)?\|>$")


def read_json(path: Path) -> Any:
    """The JSON content of ``path``; a missing or invalid file is a :class:`ConversionError`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConversionError(f"{path}: missing (required for the import)") from e
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path}: invalid JSON: {e}") from e


def read_vocabulary(src: Path) -> list[str]:
    """CT2's vocabulary: ``vocabulary.json`` (a list; newer converters) or ``vocabulary.txt``."""
    if (src / "vocabulary.json").is_file():
        vocab = read_json(src / "vocabulary.json")
        if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
            raise ConversionError(f"{src / 'vocabulary.json'}: expected a list of tokens")
        return vocab
    if (src / "vocabulary.txt").is_file():
        text = (src / "vocabulary.txt").read_text(encoding="utf-8")
        return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
    raise ConversionError(f"{src}: missing vocabulary.json / vocabulary.txt")


def language_ids(ct2_config: dict, vocab: list[str]) -> list[int]:
    """Language-token ids: CT2's ``lang_ids`` if given, else the ``<|xx|>`` run after the SOT."""
    ids = [int(i) for i in ct2_config.get("lang_ids") or []]
    if ids:
        bad = [i for i in ids if not 0 <= i < len(vocab) or not _LANGUAGE_RE.match(vocab[i])]
        if bad:
            raise ConversionError(f"config.json: lang_ids {bad[:5]} are not language tokens")
        return sorted(set(ids))
    sot = vocab.index("<|startoftranscript|>")
    out = []
    for i in range(sot + 1, len(vocab)):
        if vocab[i] in _NON_LANGUAGE_SPECIALS or not _LANGUAGE_RE.match(vocab[i]):
            break
        out.append(i)
    return out


def build_tokenizer(src: Path, vocab: list[str]):
    """WhisperTokenizerFast from ``tokenizer.json``, every special token registered, plus the
    timestamp tokens that exist only in CT2's vocabulary (so ``len(tokenizer) == vocab size``)."""
    from transformers import AddedToken, WhisperTokenizerFast

    tok_path = src / "tokenizer.json"
    data = read_json(tok_path)
    added = sorted(data.get("added_tokens", []), key=lambda a: a["id"])
    # Timestamp tokens are never registered as special: transformers finds the first timestamp id
    # as "last special id + 1", so the special tokens must end with <|notimestamps|>.
    specials = [
        a["content"]
        for a in added
        if a.get("special")
        and a["content"] != "<|endoftext|>"
        and not _TIMESTAMP_RE.match(a["content"])
    ]
    tokenizer = WhisperTokenizerFast(
        tokenizer_file=str(tok_path),
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        extra_special_tokens=specials,
    )
    base = len(tokenizer)
    if base > len(vocab):
        raise ConversionError(
            f"{tok_path}: the tokenizer has {base} tokens, more than the model's {len(vocab)}"
        )
    extra = vocab[base:]
    not_ts = [t for t in extra if not _TIMESTAMP_RE.match(t)]
    if not_ts:
        raise ConversionError(
            f"{tok_path}: tokens {not_ts[:3]} of the model vocabulary (from id {base}) are "
            "missing from the tokenizer"
        )
    if extra:
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in extra])
    got = tokenizer.convert_ids_to_tokens(list(range(len(vocab))))
    diff = [i for i, (a, b) in enumerate(zip(got, vocab, strict=False)) if a != b]
    if len(got) != len(vocab) or diff:
        i = diff[0] if diff else min(len(got), len(vocab))
        raise ConversionError(
            f"{tok_path} does not match the model vocabulary: id {i} is "
            f"{got[i] if i < len(got) else None!r} in the tokenizer, "
            f"{vocab[i] if i < len(vocab) else None!r} in the vocabulary"
        )
    if tokenizer.all_special_ids[-1] != vocab.index("<|notimestamps|>"):
        raise ConversionError(
            f"{tok_path}: the last special token must be <|notimestamps|> (timestamps would "
            "decode shifted)"
        )
    return tokenizer


def build_feature_extractor(src: Path, n_mels: int):
    """``preprocessor_config.json``'s WhisperFeatureExtractor (checked against ``n_mels``), or the
    default one for ``n_mels`` mel bins when the file is missing."""
    from transformers import WhisperFeatureExtractor

    pre = src / "preprocessor_config.json"
    if pre.is_file():
        fe = WhisperFeatureExtractor.from_pretrained(str(src))
        if fe.feature_size != n_mels:
            raise ConversionError(
                f"{pre}: feature_size={fe.feature_size}, but encoder/conv1 expects {n_mels} mels"
            )
        return fe
    return WhisperFeatureExtractor(feature_size=n_mels)


def read_processor(src: Path, n_mels: int) -> tuple[Any, Any, dict[str, int]]:
    """Tokenizer, feature extractor and language tokens (token → id; empty for English-only
    models) of the CTranslate2 Whisper directory ``src``, built as the importer builds them."""
    vocab = read_vocabulary(src)
    lang_to_id = {}
    if len(vocab) >= MULTILINGUAL_MIN_VOCAB and "<|translate|>" in vocab:
        ct2_config = read_json(src / "config.json")
        lang_to_id = {vocab[i]: i for i in language_ids(ct2_config, vocab)}
    return build_tokenizer(src, vocab), build_feature_extractor(src, n_mels), lang_to_id
