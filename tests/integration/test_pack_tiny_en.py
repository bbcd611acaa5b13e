"""Packed windows pseudo-labelled with timestamps by the real tiny.en teacher."""

from __future__ import annotations

from pathlib import Path

from speechdistill.cli import main
from speechdistill.datadir import DataDir, read_kv, validate
from speechdistill.datadir.ops import subset
from speechdistill.pack import window_utts
from speechdistill.pseudo_label import PseudoLabelConfig, pseudo_label
from speechdistill.scoring import score

#: Measured: 28 % on the eight mini_en train clips as one recording (a 28 s window of seven
#: espeak-ng voices, one a clip, and one clip alone): the label is whole, words of the accented
#: voices are misheard. A window of one voice, as a real recording, fares better (bench/pack_speed.py).
MAX_WER = 0.35


def test_packed_windows_are_labelled_with_timestamps(mini_corpus, tiny_en_teacher, tmp_path: Path):
    src = subset(mini_corpus / "train", tmp_path / "train", first=8)
    d = DataDir(src)
    if not d.has_segments:  # clips: one recording of them all, in id order
        d.write("utt2reco", {u: "rec1" for u in d.utt_ids()})
    packed = tmp_path / "packed"
    assert main(["data", "pack", str(src), str(packed)]) == 0
    windows = window_utts(packed)
    assert len(windows) < len(d.utt_ids())  # utterances were joined
    validate(packed)

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
