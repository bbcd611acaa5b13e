"""Normalisers: registry, Whisper parity (english/basic), Brazilian Portuguese rules."""

from __future__ import annotations

from importlib.resources import files

import pytest

from speechdistill import text as text_mod
from speechdistill.text import (
    NORMALIZERS,
    english_spelling_map,
    get_normalizer,
    normalize,
    register_normalizer,
)

# --- registry ---------------------------------------------------------------------------------


def test_registry_names_and_unknown_name():
    assert {"english", "basic", "pt_br", "none"} <= set(NORMALIZERS)
    with pytest.raises(ValueError, match=r"unknown normaliser 'klingon'.*basic, english, none"):
        get_normalizer("klingon")


def test_bad_option_is_a_value_error():
    with pytest.raises(ValueError, match="pt_br"):
        get_normalizer("pt_br", no_such_option=True)
    with pytest.raises(ValueError, match="english"):
        get_normalizer("english", expand_numbers=True)


def test_get_normalizer_is_cached_and_register_works():
    assert get_normalizer("pt_br", expand_numbers=False) is get_normalizer(
        "pt_br", expand_numbers=False
    )
    try:
        register_normalizer("upper_test", lambda: str.upper)
        assert normalize("abc", "upper_test") == "ABC"
        with pytest.raises(ValueError, match="already registered"):
            register_normalizer("upper_test", lambda: str.upper)
    finally:
        text_mod._REGISTRY.pop("upper_test", None)
        text_mod._cached.cache_clear()


# --- none / basic -------------------------------------------------------------------------------


def test_none_collapses_whitespace_only():
    assert normalize("  The\tCat,  sat. \n", "none") == "The Cat, sat."


def test_basic_keeps_diacritics_by_default():
    assert normalize("São Paulo, café! (risos) [ruído]", "basic") == "são paulo café"
    assert normalize("São Paulo, café!", "basic", remove_diacritics=True) == "sao paulo cafe"
    assert normalize("Hello.", "basic") == "hello"  # Whisper leaves a trailing space; stripped


# --- english (Whisper, with the spelling map) ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # title expanded, possessive 's read as "is" (Whisper's quirk), British spelling, hyphen split
        ("Mr. Smith's colour is 2nd-rate", "mister smith is color is 2nd rate"),
        ("$20", "$20"),
        ("twenty dollars", "$20"),
        ("1,000,000", "1000000"),
        ("one million", "1000000"),
        ("I can't, we won't; they'll see", "i can not we will not they will see"),
        ("Um, I uh think hmm so.", "i think so"),
        ("[noise] hello (laughs) world", "hello world"),
        ("The theatre's centre", "the theater is center"),
        ("hmm", ""),
        # follows transformers' normaliser, not whisper_normalizer's own class (which maps "kinda")
        ("I kinda like it", "i kinda like it"),
    ],
)
def test_english(text, expected):
    assert normalize(text, "english") == expected


def test_english_spelling_map_is_whisper_table():
    mapping = english_spelling_map()
    assert len(mapping) > 1700
    assert mapping["colour"] == "color" and mapping["mhm"] == "hmm"


def test_english_matches_hf_whisper_tokenizer_normalize():
    """Same output as WhisperTokenizer.normalize with the Hub's normalizer.json (up to stripping)."""
    from transformers import WhisperTokenizer

    table = files("whisper_normalizer").joinpath("normalizers/english.json")
    tok = WhisperTokenizer(
        vocab={"<|endoftext|>": 0, "a": 1}, merges=[], normalizer_file=str(table)
    )
    texts = [
        "Mr. Smith's colour is 2nd-rate",
        "It costs $20.50, or twenty dollars and fifty cents!",
        "The 1st of May, 2.5% of 1,000,000 people",
        "Um, I can't go uh there. Hmm.",
        "ʻOkina, naïve café, Œuvre — St. John's Rd.",
        "He'd been gone; she's got 3 apples & 4 oranges",
        "  Hello.  ",
        "",
    ]
    for text in texts:
        theirs = tok.normalize(text)
        assert normalize(text, "english") == " ".join(theirs.split()), text


# --- pt_br --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # annotations, NURC lengthening "::", punctuation, case, diacritics kept
        (
            "E::le disse ((risos)) [inaudível] (tosse) <ruído> po::rque... NÉ?",
            "ele disse porque né",
        ),
        # intra-word hyphens and apostrophes kept (apostrophe variants unified); dashes dropped
        (
            "Guarda-chuva d’água, fazê-lo -- ele disse - sim",
            "guarda-chuva d'água fazê-lo ele disse sim",
        ),
        # fillers removed, but "um" (a word in Portuguese) kept
        ("eh ahn um dois hum", "um dois"),
        # numbers: thousands dot, decimal comma (decimals read as a number), sentence-final dot
        ("O preço é 2.000.", "o preço é dois mil"),
        (
            "1,5 litro e 3,14 e 1,05",
            "um vírgula cinco litro e três vírgula catorze e um vírgula zero cinco",
        ),
        ("2.5 e 2-3", "dois vírgula cinco e dois três"),
        # ordinals (masculine º, feminine ª, European 1.º); degree sign is not an ordinal
        (
            "o 1º lugar, a 2ª vez, a 21ª edição, 1.º andar",
            "o primeiro lugar a segunda vez a vigésima primeira edição primeiro andar",
        ),
        ("30°", "trinta"),
        ("50% e 1,5 %", "cinquenta por cento e um vírgula cinco por cento"),
        ("R$ 20,50 ou R$ 1", "vinte reais e cinquenta centavos ou um real"),
        # years, leading zeros read digit by digit, big numbers
        ("em 1990 e 007", "em mil novecentos e noventa e zero zero sete"),
        ("1.234.567", "um milhão duzentos e trinta e quatro mil quinhentos e sessenta e sete"),
    ],
)
def test_pt_br(text, expected):
    assert normalize(text, "pt_br") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("O preço é 2.000.", "o preço é 2000"),
        ("1,5 e 2.5 e 2.000,5", "1,5 e 2,5 e 2000,5"),
        ("o 1.º andar e a 2ª vez", "o 1º andar e a 2ª vez"),
        ("50 % de R$ 20", "50% de r$ 20"),
        ("2-3 covid-19", "2 3 covid-19"),
    ],
)
def test_pt_br_without_number_expansion(text, expected):
    assert normalize(text, "pt_br", expand_numbers=False) == expected


def test_pt_br_options():
    assert normalize("guarda-chuva", "pt_br", split_hyphens=True) == "guarda chuva"
    assert normalize("eh bom", "pt_br", remove_fillers=False) == "eh bom"
    # composed and decomposed accents give the same word
    assert normalize("e\u0301", "pt_br") == normalize("\u00e9", "pt_br") == "é"
