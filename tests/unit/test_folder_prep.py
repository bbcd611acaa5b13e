"""data_prep.folder: folder of audio (+ transcripts, or a CSV/TSV) -> Kaldi data dir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep.folder import main, prepare_folder
from speechdistill.audio import AudioReader
from speechdistill.datadir import validate


def audio(path: Path, seconds: float = 0.5, sr: int = 16000, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(sr * seconds)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, **kw)
    return path


def txt(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def corpus(tmp_path) -> Path:
    root = tmp_path / "corpus"
    audio(root / "anna" / "one.wav", 0.5)
    txt(root / "anna" / "one.txt", "hello there\n")
    audio(root / "anna" / "two.flac", 0.25, sr=22050)
    txt(root / "anna" / "two.txt", "  second\nline ")
    audio(root / "ben" / "one.ogg", 0.75, sr=48000, format="OGG", subtype="VORBIS")
    txt(root / "ben" / "one.txt", "ben speaks")
    audio(root / "ben" / "x" / "deep.mp3", 1.0, sr=44100, format="MP3")
    txt(root / "ben" / "x" / "deep.txt", "deep file")
    (root / "notes.md").write_text("not audio")
    return root


def test_folder_with_transcripts_one_speaker_per_file(corpus, tmp_path):
    d = prepare_folder(corpus, tmp_path / "data")
    assert d.text() == {
        "anna_one": "hello there",
        "anna_two": "second line",
        "ben_one": "ben speaks",
        "ben_x_deep": "deep file",
    }
    assert d.utt2spk() == {u: u for u in d.text()}
    assert d.wav_scp()["ben_x_deep"] == str(corpus / "ben" / "x" / "deep.mp3")
    assert all(Path(p).is_absolute() for p in d.wav_scp().values())
    durs = d.utt2dur()
    assert durs["anna_one"] == pytest.approx(0.5) and durs["ben_one"] == pytest.approx(0.75)
    assert durs["anna_two"] == pytest.approx(5512 / 22050, abs=1e-6) and durs[
        "ben_x_deep"
    ] == pytest.approx(1.0, abs=0.06)
    lines = d.file("wav.scp").read_text().splitlines()
    assert lines == sorted(lines)
    reader = AudioReader(d)
    assert len(reader("anna_two")) == 4000 and len(reader("ben_one")) == 12000
    assert validate(d.path) == []


def test_speaker_from_dir(corpus, tmp_path):
    d = prepare_folder(corpus, tmp_path / "data", speaker_from_dir=True)
    assert d.utt2spk() == {
        "anna-one": "anna",
        "anna-two": "anna",
        "ben-one": "ben",
        "x-deep": "x",
    }
    assert d.spk2utt() == {"anna": ["anna-one", "anna-two"], "ben": ["ben-one"], "x": ["x-deep"]}
    assert validate(d.path) == []


def test_audio_only(tmp_path):
    root = tmp_path / "raw"
    audio(root / "a.wav")
    audio(root / "b c.wav")  # whitespace in a name: the id gets '_'
    d = prepare_folder(root, tmp_path / "data")
    assert not d.exists("text")
    assert sorted(d.wav_scp()) == ["a", "b_c"]
    assert d.wav_scp()["b_c"].endswith("b c.wav")
    assert d.exists("spk2utt") and d.exists("utt2dur")
    assert validate(d.path, no_text=True) == []
    d2 = prepare_folder(tmp_path / "raw", tmp_path / "data2", use_text=False)
    assert not d2.exists("text")


def test_missing_transcripts_and_bad_audio_are_skipped_and_listed(corpus, tmp_path, caplog):
    (corpus / "ben" / "one.txt").unlink()
    (corpus / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    txt(corpus / "broken.txt", "broken")
    sf.write(corpus / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    txt(corpus / "empty.txt", "empty")
    d = prepare_folder(corpus, tmp_path / "data")
    assert sorted(d.text()) == ["anna_one", "anna_two", "ben_x_deep"]
    assert sorted(d.wav_scp()) == sorted(d.text())
    log = caplog.text
    assert "skipped 1 file(s) (no transcript)" in log and "one.ogg" in log
    assert "skipped 1 file(s) (unreadable audio)" in log and "broken.wav" in log
    assert "skipped 1 file(s) (empty audio)" in log and "empty.wav" in log


def test_duplicate_ids_are_an_error(tmp_path):
    root = tmp_path / "dup"
    audio(root / "a.wav")
    audio(root / "a.flac")
    with pytest.raises(ValueError, match=r"duplicate utterance id 'a'.*a\.flac.*a\.wav"):
        prepare_folder(root, tmp_path / "data")


def test_csv_with_header_and_speakers(tmp_path):
    root = tmp_path / "set"
    audio(root / "clips" / "c1.wav")
    audio(root / "clips" / "c2.wav", sr=8000)
    audio(root / "clips" / "c3.wav")
    table = root / "meta.csv"
    table.write_text(
        "speaker,path,text\n"
        'sp1,clips/c1.wav,"Hello, world"\n'
        "sp2,clips/c2.wav,second\n"
        "sp2,clips/gone.wav,missing file\n"
        "sp2,clips/c3.wav,\n",
        encoding="utf-8",
    )
    d = prepare_folder(table, tmp_path / "data")
    assert d.utt2spk() == {"sp1-clips_c1": "sp1", "sp2-clips_c2": "sp2", "sp2-clips_c3": "sp2"}
    assert d.text() == {
        "sp1-clips_c1": "Hello, world",
        "sp2-clips_c2": "second",
        "sp2-clips_c3": "",
    }
    assert d.wav_scp()["sp2-clips_c2"] == str(root / "clips" / "c2.wav")
    assert validate(d.path) == []


def test_tsv_without_header(tmp_path, caplog):
    root = tmp_path / "set"
    a = audio(root / "a.wav")
    audio(root / "b.wav")
    table = root / "list.tsv"
    table.write_text(f"{a}\tfirst one\nb.wav\tsecond\tspkB\nbad.wav\tnope\n", encoding="utf-8")
    d = prepare_folder(table, tmp_path / "data")
    assert d.text() == {"a": "first one", "spkB-b": "second"}
    assert d.utt2spk() == {"a": "a", "spkB-b": "spkB"}
    assert validate(d.path) == []
    assert "skipped 1 file(s) (missing)" in caplog.text and "bad.wav" in caplog.text


def test_nothing_usable_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no usable audio"):
        prepare_folder(tmp_path / "empty", tmp_path / "data")
    with pytest.raises(FileNotFoundError):
        prepare_folder(tmp_path / "nowhere", tmp_path / "data")


def test_command_line(corpus, tmp_path):
    help_text = subprocess.run(
        [sys.executable, "-m", "data_prep.folder", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    assert "--speaker-from-dir" in help_text
    assert main([str(corpus), str(tmp_path / "d"), "--speaker-from-dir", "--no-text"]) == 0
    assert (tmp_path / "d" / "wav.scp").is_file() and not (tmp_path / "d" / "text").exists()
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "d2")]) == 1
