"""Packed windows pseudo-labelled with timestamps by the real tiny.en teacher."""

from __future__ import annotations

from pathlib import Path

from speechdistill.cli import main
from speechdistill.datadir import DataDir, read_kv, validate
from speechdistill.datadir.ops import subset
from speechdistill.pack import window_utts
from speechdistill.pseudo_label import PseudoLabelConfig, pseudo_label
from speechdistill.scoring import score

#: Measured: 23.6 % on the first test recording of the mini_en fixture (10 sentences of one
#: voice, about 45 s, in two windows).
MAX_WER = 0.30


def test_packed_windows_are_labelled_with_timestamps(mini_corpus, tiny_en_teacher, tmp_path: Path):
    test = DataDir(mini_corpus / "test")
    first = sorted({seg.reco for seg in test.segments().values()})[0]
    utts = sorted(u for u, seg in test.segments().items() if seg.reco == first)
    src = subset(mini_corpus / "test", tmp_path / "rec", utt_list=utts)
    packed = tmp_path / "packed"
    assert main(["data", "pack", str(src), str(packed)]) == 0
    windows = window_utts(packed)
    assert 2 <= len(windows) < len(utts)  # a 40-50 s recording: utterances were joined
    assert sorted(u for w in windows.values() for u in w) == utts  # each utterance once
    validate(packed)
    assert DataDir(packed).has_segments  # windows are spans of the recording: no audio written

    out = tmp_path / "pl"
    pseudo_label(
        tiny_en_teacher, packed, out, PseudoLabelConfig(batch_size=4, return_timestamps=True)
    )
    labels, stamped = read_kv(out / "text.teacher"), read_kv(out / "text.teacher_ts")
    assert set(labels) == set(windows) and all(labels.values())
    assert all(t.startswith("<|0.00|>") and t.count("<|") >= 2 for t in stamped.values())
    refs = DataDir(packed).text()  # the utterances' texts joined
    wer = score(refs, labels, bootstrap=0).normalized.wer
    assert wer <= MAX_WER, (wer, labels, refs)
