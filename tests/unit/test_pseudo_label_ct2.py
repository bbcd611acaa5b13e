"""The ct2 (CTranslate2) backend of the pseudo-label stage without the real teacher: the settings
it refuses, a missing or old ctranslate2, a tiny random multilingual teacher's prompts against
the hf backend. With tiny.en: integration/test_pseudo_label_ct2_tiny_en.py."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("ctranslate2")

from whisper_helpers import ct2_like

from speechdistill.pseudo_label import HFLabeler, PseudoLabelConfig
from speechdistill.pseudo_label.ct2 import CT2Labeler
from speechdistill.whisper.ct2.binary import MissingDependencyError


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cache_encoder": True}, "caches"),
        ({"rskd_k": 8}, "caches"),
        ({"dtype": "float64"}, "not a CTranslate2 compute type"),
        ({"device": "mps"}, "cpu or cuda"),
    ],
)
def test_unsupported_settings_are_refused_before_any_conversion(changes, message, tmp_path):
    config = PseudoLabelConfig(backend="ct2", **changes)
    with pytest.raises(ValueError, match=message):
        CT2Labeler.from_pretrained(tmp_path, config)
    assert not any(tmp_path.iterdir())


def test_missing_or_old_ctranslate2_names_the_extra(monkeypatch, tmp_path):
    import ctranslate2

    monkeypatch.setattr(ctranslate2, "__version__", "4.5.0")
    with pytest.raises(MissingDependencyError, match=r">= 4\.6.*speechdistill\[ct2\]"):
        CT2Labeler.from_pretrained(tmp_path, PseudoLabelConfig(backend="ct2"))
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import fails
    with pytest.raises(MissingDependencyError, match=r"pip install 'speechdistill\[ct2\]'"):
        CT2Labeler.from_pretrained(tmp_path, PseudoLabelConfig(backend="ct2"))


def test_multilingual_prompts(tmp_path):
    from speechdistill.testing import multilingual_tokenizer, save_random_whisper

    model_dir = save_random_whisper(
        tmp_path / "ml",
        multilingual_tokenizer(tmp_path, n_langs=5, v3=False),
        multilingual=True,
        max_source_positions=1500,
    )
    rng = np.random.default_rng(0)
    audios = [rng.standard_normal(16000 * s).astype(np.float32) * 0.1 for s in (1, 2)]
    config = PseudoLabelConfig(backend="ct2", dtype="float32", max_new_tokens=4, language="de")
    ml = CT2Labeler.from_pretrained(model_dir, config)
    ref = HFLabeler.from_pretrained(model_dir, PseudoLabelConfig(max_new_tokens=4, language="de"))
    got = ml.label(["a", "b"], audios)
    assert [lb.stats["num_tokens"] for lb in got] == [4, 4]
    for a, b in zip(ref.label(["a", "b"], audios), got, strict=True):
        assert b.text == a.text
        assert b.stats["avg_logprob"] == pytest.approx(a.stats["avg_logprob"], abs=0.01)
    de, transcribe = ml.lang_to_id["<|de|>"], ml.tokenizer.convert_tokens_to_ids("<|transcribe|>")
    prompts, langs = ml.prompts(None, 2)  # CTranslate2 does not see the toy as multilingual:
    assert prompts == [[ml.sot, de, transcribe, ml.no_timestamps]] * 2
    assert langs is None and all(lb.lang is None and "lang_prob" not in lb.stats for lb in got)

    detect = PseudoLabelConfig(backend="ct2", max_new_tokens=4)
    if ml.model.is_multilingual:  # CTranslate2 detects the language of real multilingual models
        assert ct2_like(ml, detect).label(["a", "b"], audios)
    else:  # this 5-language toy is not multilingual in CTranslate2's eyes
        with pytest.raises(ValueError, match="set the language"):
            ct2_like(ml, detect)
