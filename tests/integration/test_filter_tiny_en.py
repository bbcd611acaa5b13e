"""The filter stage with the real tiny.en teacher on a few mini_en utterances: self-agreement
under noise, the CTranslate2 proxy."""

from __future__ import annotations

import pytest

from speechdistill.datadir import read_kv, write_kv
from speechdistill.filter import FilterConfig, ScoreOptions, filter_data_dir
from speechdistill.filter.scores import agreement

# --------------------------------------------------------------------------------------------------
# the real teacher: self-agreement and the CTranslate2 proxy (few utterances)


MAX_TOKENS = 40


@pytest.fixture(scope="module")
def teacher_labelled(tmp_path_factory, mini_corpus, tiny_en_teacher):
    """Four mini_en utterances with tiny.en's labels (text.teacher), as pseudo_label makes them."""
    from speechdistill.audio import AudioReader
    from speechdistill.datadir.ops import subset
    from speechdistill.inference.whisper import DecodeConfig, WhisperTranscriber

    d = tmp_path_factory.mktemp("pl") / "pl"
    # four sentences of one test recording (dev's is said by a voice the teacher mishears: its
    # label of "staff meeting" changes with 60 dB of noise)
    subset(mini_corpus / "test", d, first=4)
    config = DecodeConfig(batch_size=4, max_new_tokens=MAX_TOKENS)  # one of them loops to 448
    t = WhisperTranscriber.from_pretrained(tiny_en_teacher, config)
    reader = AudioReader(d)
    utts = reader.utt_ids
    write_kv(
        d / "text.teacher", dict(zip(utts, t.transcribe([reader(u) for u in utts]), strict=True))
    )
    return d


def test_self_agreement_with_the_real_teacher(tmp_path, teacher_labelled, tiny_en_teacher):
    options = ScoreOptions(
        teacher=str(tiny_en_teacher),
        perturbations=("noise:60", "noise:-15"),
        batch_size=4,
        max_new_tokens=MAX_TOKENS,
    )
    cfg = FilterConfig(
        teacher_labelled, tmp_path / "out", scores=["self_wer"], options=options, plots=False
    )
    result = filter_data_dir(cfg)
    labels = read_kv(teacher_labelled / "text.teacher")
    cache = tmp_path / "out" / "filter" / "cache"
    # 60 dB of white noise: the teacher says the same thing again
    assert read_kv(cache / "text.self_noise60") == labels
    # -15 dB: it hears something else; self_wer averages the two perturbations
    noisy = agreement(read_kv(cache / "text.self_noise-15"), labels)
    assert result.scores["self_wer"] == {u: -(0.0 + w) / 2 for u, w in noisy.wer.items()}
    assert sum(result.scores["self_wer"].values()) < -1.0
    assert result.report["diagnostics"]["n_labelled"] == 4  # mini_en has references


def test_ct2_proxy_agrees_with_the_imported_teacher(tmp_path, teacher_labelled):
    pytest.importorskip("ctranslate2")
    from speechdistill.teachers.source import embedded_teacher_dir

    cfg = FilterConfig(
        teacher_labelled,
        tmp_path / "out",
        scores=["proxy_wer"],
        options=ScoreOptions(
            proxy=str(embedded_teacher_dir()), batch_size=4, max_new_tokens=MAX_TOKENS
        ),
        plots=False,
    )
    result = filter_data_dir(cfg)
    # the same model in CTranslate2: its greedy transcripts equal the labels
    # (they agreed on 50 of 50 clips in float32)
    assert sum(v == 0.0 for v in result.scores["proxy_wer"].values()) >= 3
