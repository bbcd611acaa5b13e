"""The mini_en corpus of the tests (``mini_corpus``) is made of recordings: the WAVs are as long as
their segments say, ``format`` cuts them into per-utterance WAVs of exactly the segments'
lengths, and ``test_long`` holds the test recordings whole."""

from __future__ import annotations

import itertools

import soundfile as sf

from speechdistill.datadir import DataDir, validate
from speechdistill.datadir.reco import reco_text
from speechdistill.format import format_data_dir


def test_recording_wavs_match_their_segments(mini_corpus):
    for split, n in (("train", 8), ("dev", 4), ("test", 20)):
        d = DataDir(mini_corpus / split)
        validate(d.path)
        segments = d.segments()
        assert len(segments) == n
        for reco, path in d.wav_scp().items():
            frames = sf.info(path).frames
            spans = sorted((s.start, s.end) for s in segments.values() if s.reco == reco)
            assert spans[0][0] == 0 and round(spans[-1][1] * 16000, 6) == frames  # to the sample
            for (_, end), (start, _) in itertools.pairwise(spans):
                assert 0.2 <= round(start - end, 3) <= 1.5  # the pause between two sentences
    # with num_test=20, each voice set (10 sentences) of test is one recording
    test = DataDir(mini_corpus / "test")
    assert sorted(test.read("reco2dur")) == sorted(DataDir(mini_corpus / "test_long").utt_ids())
    assert len(test.wav_scp()) == 2


def test_format_cuts_the_segments_into_wavs_of_their_lengths(mini_corpus, tmp_path):
    src = DataDir(mini_corpus / "test")
    report = format_data_dir(src.path, tmp_path / "dump", audio_dir=tmp_path / "wav")
    assert report.kept == report.total == 20
    dump = DataDir(tmp_path / "dump")
    validate(dump.path)
    assert not dump.has_segments and dump.text() == src.text()
    segments = src.segments()
    assert dump.read("utt2reco") == {u: s.reco for u, s in segments.items()}
    for utt, path in dump.wav_scp().items():
        seg = segments[utt]
        assert sf.info(path).frames == round((seg.end - seg.start) * 16000)
        assert abs(dump.utt2dur()[utt] - (seg.end - seg.start)) < 1e-6  # 6 decimals


def test_test_long_is_test_whole(mini_corpus, tmp_path):
    test, long = DataDir(mini_corpus / "test"), DataDir(mini_corpus / "test_long")
    validate(long.path)
    assert long.text() == reco_text(test.path)
    assert long.utt2dur() == {r: float(v) for r, v in test.read("reco2dur").items()}
    assert all(40 <= d <= 120 for d in long.utt2dur().values())  # 10 sentences each
    report = format_data_dir(long.path, tmp_path / "dump_long")  # stage 2: no limits on it
    assert report.kept == 2
