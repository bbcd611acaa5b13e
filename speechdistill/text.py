"""Text normalisers for scoring, chosen by name.

``get_normalizer(name, **options)`` returns a ``str -> str`` function; ``normalize(text, name)`` applies
one. Every normaliser returns words separated by single spaces, without leading/trailing space.

- ``english``: Whisper's English normaliser (``transformers``' ``EnglishTextNormalizer``) with the
  British→American spelling map that ships with the ``whisper_normalizer`` package (the same table as
  the ``normalizer.json`` of the Hub's Whisper tokenizers). Its output equals
  ``WhisperTokenizer.normalize`` stripped of leading/trailing spaces; lower-cases, removes bracketed
  annotations and the hesitations *hmm, mm, mhm, mmm, uh, um*, expands contractions and titles
  ("Mr" → "mister"), writes numbers as digits ("twenty one" → "21", "1,000,000" → "1000000") and
  currency as symbols ("twenty dollars" → "$20"). Known quirk kept for comparability with published
  Whisper results: the possessive "'s" becomes " is" ("Smith's" → "smith is").
- ``basic``: Whisper's ``BasicTextNormalizer``: lower-case, bracketed annotations removed, every
  symbol and punctuation mark replaced by a space; diacritics kept unless ``remove_diacritics=True``.
- ``pt_br``: Brazilian Portuguese spontaneous speech (NURC-SP conventions); see
  :func:`pt_br_normalizer` for the rules and options.
- ``none``: identity apart from collapsing whitespace (the orthographic score).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import cache, lru_cache
from importlib.resources import files
from types import MappingProxyType
from typing import Any

Normalizer = Callable[[str], str]

_WS = re.compile(r"\s+")


def _collapse(text: str) -> str:
    return _WS.sub(" ", text).strip()


# --------------------------------------------------------------------------------------------------
# Whisper's normalisers (transformers)


@cache
def english_spelling_map() -> dict[str, str]:
    """Whisper's British→American spelling map, read from the installed ``whisper_normalizer``."""
    resource = files("whisper_normalizer").joinpath("normalizers/english.json")
    try:
        return json.loads(resource.read_text(encoding="utf-8"))
    except (FileNotFoundError, ModuleNotFoundError) as e:  # pragma: no cover - packaging error
        raise RuntimeError(
            "the 'english' normaliser needs whisper_normalizer's normalizers/english.json "
            "(pip install whisper-normalizer)"
        ) from e


def english_normalizer() -> Normalizer:
    """Whisper's English normaliser, as ``WhisperTokenizer.normalize`` applies it (then stripped)."""
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    impl = EnglishTextNormalizer(english_spelling_map())
    return lambda text: _collapse(impl(text))


def basic_normalizer(*, remove_diacritics: bool = False, split_letters: bool = False) -> Normalizer:
    """Whisper's ``BasicTextNormalizer`` (diacritics kept by default), stripped."""
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer

    impl = BasicTextNormalizer(remove_diacritics=remove_diacritics, split_letters=split_letters)
    return lambda text: _collapse(impl(text))


def none_normalizer() -> Normalizer:
    """No normalisation: whitespace collapsed only."""
    return _collapse


# --------------------------------------------------------------------------------------------------
# Brazilian Portuguese

#: Hesitation/filler tokens removed by ``pt_br`` (``remove_fillers=True``). Not "um" (a word in pt).
PT_FILLERS = frozenset(
    {"ah", "ahn", "eh", "ehn", "éh", "hum", "hm", "hmm", "mm", "mhm", "uh", "uhn"}
)

# annotations: ((…)) first, then (…), […], <…>, {…}
_PT_ANNOTATIONS = re.compile(r"\(\([^)]*\)\)|\([^)]*\)|\[[^\]]*\]|<[^>]*>|\{[^}]*\}")
_PT_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "´": "'", "`": "'"})
_PT_HYPHENS = str.maketrans({"\u2010": "-", "\u2011": "-"})
_PT_LENGTHENING = re.compile(r"(?<=\w):{2,}")  # NURC: "e::" / "po::rque" mark a lengthened sound
# a number: thousands with dots (2.000, 1.234.567, optional ,decimals) | decimal | integer
_NUM = r"\d{1,3}(?:\.\d{3})+(?:,\d+)?(?!\d|\.\d)|\d+[,.]\d+|\d+"
_PT_CURRENCY = re.compile(rf"r\$\s*({_NUM})")
_PT_ORDINAL = re.compile(r"(\d+)\.?([ºª])")
_PT_PERCENT = re.compile(rf"({_NUM})\s*%")
_PT_NUMBER = re.compile(_NUM)
_PT_THOUSANDS = re.compile(r"(?<![\d,.])\d{1,3}(?:\.\d{3})+(?:,\d+)?(?!\d|\.\d)")
_PT_DECIMAL_DOT = re.compile(r"(?<=\d)\.(?=\d)")
_PT_PERCENT_SPACE = re.compile(r"(?<=\d)\s+%")
_MAX_CARDINAL = 10**18  # num2words' limit for pt_BR


def _num2words(value: int | Decimal, **kwargs: Any) -> str:
    from num2words import num2words

    return num2words(value, lang="pt_BR", **kwargs)


def _pt_digits(digits: str) -> str:
    """Read a digit string one digit at a time (codes, leading zeros, huge numbers)."""
    return " ".join(_num2words(int(d)) for d in digits)


def _pt_integer(digits: str) -> str:
    if (len(digits) > 1 and digits.startswith("0")) or int(digits) >= _MAX_CARDINAL:
        return _pt_digits(digits)
    return _num2words(int(digits))


def _pt_number(token: str) -> str:
    """Spell one number as matched by ``_NUM`` (pt-BR separators)."""
    if re.fullmatch(r"\d{1,3}(?:\.\d{3})+(?:,\d+)?", token):
        token = token.replace(".", "")
    token = token.replace(".", ",")
    if "," not in token:
        return _pt_integer(token)
    whole, frac = token.split(",", 1)
    stripped = frac.lstrip("0")
    frac_words = " ".join(["zero"] * (len(frac) - len(stripped)))
    if stripped:
        frac_words = f"{frac_words} {_pt_integer(stripped)}".strip()
    return f"{_pt_integer(whole)} vírgula {frac_words}"


def _pt_ordinal(match: re.Match[str]) -> str:
    n = int(match.group(1))
    if n >= _MAX_CARDINAL:
        return match.group(0)
    words = _num2words(n, to="ordinal")
    if (
        match.group(2) == "ª"
    ):  # feminine: primeiro → primeira, vigésimo primeiro → vigésima primeira
        words = " ".join(w[:-1] + "a" if w.endswith("o") else w for w in words.split())
    return words


def _pt_currency(match: re.Match[str]) -> str:
    token = match.group(1)
    if re.fullmatch(r"\d{1,3}(?:\.\d{3})+(?:,\d+)?", token):
        token = token.replace(".", "")
    value = Decimal(token.replace(",", "."))
    if value >= _MAX_CARDINAL:
        return f"{_pt_number(match.group(1))} reais"
    return _num2words(value, to="currency")


def _pt_expand_numbers(text: str) -> str:
    text = _PT_CURRENCY.sub(_pt_currency, text)
    text = _PT_ORDINAL.sub(_pt_ordinal, text)
    text = _PT_PERCENT.sub(lambda m: f"{_pt_number(m.group(1))} por cento", text)
    return _PT_NUMBER.sub(lambda m: f" {_pt_number(m.group(0))} ", text)


def _pt_canonical_numbers(text: str) -> str:
    """Without expansion: 2.000 → 2000, 2.5 → 2,5, 1.º → 1º, 50 % → 50%."""
    text = _PT_THOUSANDS.sub(lambda m: m.group(0).replace(".", ""), text)
    text = _PT_DECIMAL_DOT.sub(",", text)
    text = _PT_ORDINAL.sub(r"\1\2", text)
    return _PT_PERCENT_SPACE.sub("%", text)


def _pt_strip_symbols(text: str, *, keep_hyphens: bool) -> str:
    """Punctuation and symbols to spaces, keeping the few that belong to a word."""
    out = []
    n = len(text)
    for i, ch in enumerate(text):
        if unicodedata.category(ch)[0] not in "PS":
            out.append(ch)
            continue
        prev = text[i - 1] if i > 0 else ""
        nxt = text[i + 1] if i + 1 < n else ""
        keep = (
            # guarda-chuva, fazê-lo, covid-19 (not 2-3)
            (
                ch == "-"
                and keep_hyphens
                and prev.isalnum()
                and nxt.isalnum()
                and not (prev.isdigit() and nxt.isdigit())
            )
            or (ch == "'" and prev.isalpha() and nxt.isalpha())  # d'água, pau-d'arco
            or (ch == "," and prev.isdigit() and nxt.isdigit())  # 1,5 (expand_numbers=False)
            or (ch == "%" and prev.isdigit())  # 50%
            or (ch == "$" and prev == "r" and (i < 2 or not text[i - 2].isalnum()))  # r$
        )
        out.append(ch if keep else " ")
    return "".join(out)


def pt_br_normalizer(
    *, expand_numbers: bool = True, remove_fillers: bool = True, split_hyphens: bool = False
) -> Normalizer:
    """Normaliser for Brazilian Portuguese spontaneous speech (NURC-SP transcripts, Whisper output).

    In order: Unicode NFC; lower-case; annotations ``((…))``, ``(…)``, ``[…]``, ``<…>``, ``{…}``
    removed (note: NURC overlap marks in brackets must be converted by the data preparer first);
    NURC lengthening ``::`` after a letter deleted ("e::" → "e", "po::rque" → "porque");
    apostrophe and hyphen variants unified (’ ´ ` → ', U+2010/2011 → -); numbers (below);
    punctuation and symbols → spaces; fillers removed; whitespace collapsed. Diacritics are kept.

    Hyphens and apostrophes inside a word are kept: pt orthographic words such as "guarda-chuva",
    "fazê-lo", "d'água" stay one word, as NURC and Whisper write them (``split_hyphens=True`` splits
    at hyphens, like Whisper's basic normaliser). Isolated, leading or trailing hyphens and dashes,
    and hyphens between two digits ("2-3"), become spaces.

    ``expand_numbers=True`` (default; NURC transcribes numbers in words while Whisper writes digits,
    so both sides must be in words to compare) spells numbers with num2words ``lang="pt_BR"`` before
    punctuation is removed, reading pt-BR separators: "2.000" → "dois mil" (dot + 3 digits =
    thousands); "1,5" → "um vírgula cinco" and "3,14" → "três vírgula catorze" (decimals read as a
    number, leading zeros as "zero": "1,05" → "um vírgula zero cinco"); "2.5" (dot, not 3 digits) is
    also a decimal; "1º"/"1.º" → "primeiro", "2ª" → "segunda" ("°", the degree sign, is not an
    ordinal); "50%" → "cinquenta por cento"; "R$ 20,50" → "vinte reais e cinquenta centavos";
    numbers with a leading zero ("007") or ≥ 10¹⁸ are read digit by digit. Cardinals are masculine
    ("2" → "dois"; the gender of the noun is unknown). ``expand_numbers=False`` keeps digits but
    makes the separators canonical: "2.000" → "2000", "1,5" and "2.5" → "1,5"/"2,5", "1.º" → "1º",
    "50 %" → "50%", "R$" kept as "r$".

    ``remove_fillers=True`` drops the hesitations in :data:`PT_FILLERS` (as Whisper's English
    normaliser drops "uh"/"um"); "né", "tá", "é" are words and stay.
    """

    def normalize_pt(text: str) -> str:
        s = unicodedata.normalize("NFC", text).lower()
        s = _PT_ANNOTATIONS.sub(" ", s)
        s = _PT_LENGTHENING.sub("", s)
        s = s.translate(_PT_APOSTROPHES).translate(_PT_HYPHENS)
        s = _pt_expand_numbers(s) if expand_numbers else _pt_canonical_numbers(s)
        s = _pt_strip_symbols(s, keep_hyphens=not split_hyphens)
        words = s.split()
        if remove_fillers:
            words = [w for w in words if w not in PT_FILLERS]
        return " ".join(words)

    return normalize_pt


# --------------------------------------------------------------------------------------------------
# registry

_REGISTRY: dict[str, Callable[..., Normalizer]] = {
    "english": english_normalizer,
    "basic": basic_normalizer,
    "pt_br": pt_br_normalizer,
    "none": none_normalizer,
}
#: Normaliser factories by name (read-only view; ``list(NORMALIZERS)`` gives the names).
NORMALIZERS: Mapping[str, Callable[..., Normalizer]] = MappingProxyType(_REGISTRY)


def register_normalizer(
    name: str, factory: Callable[..., Normalizer], *, overwrite: bool = False
) -> None:
    """Add a normaliser factory (``factory(**options) -> str -> str``) under ``name``."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"normaliser {name!r} is already registered")
    _REGISTRY[name] = factory
    _cached.cache_clear()


@lru_cache(maxsize=32)
def _cached(name: str, options: tuple[tuple[str, Any], ...]) -> Normalizer:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        valid = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown normaliser {name!r}; valid names: {valid}") from None
    try:
        return factory(**dict(options))
    except TypeError as e:
        raise ValueError(f"bad options for normaliser {name!r}: {e}") from None


def get_normalizer(name: str, **options: Any) -> Normalizer:
    """The normaliser called ``name`` with ``options``; an unknown name is a ValueError."""
    return _cached(name, tuple(sorted(options.items())))


def normalize(text: str, name: str = "english", **options: Any) -> str:
    """Normalise one string with the normaliser called ``name``."""
    return get_normalizer(name, **options)(text)
