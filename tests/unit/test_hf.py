"""speechdistill.datadir.hf and the `data utt2dur/to-hf/from-hf` commands."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf
from datasets import Audio

from speechdistill.audio import AudioError, AudioReader, read_audio
from speechdistill.cli import data_audio
from speechdistill.datadir import DataDir, Segment, write_kv
from speechdistill.datadir.hf import from_hf, save_to_hf, to_hf

Q = 1 / 32767 + 1e-6  # one 16-bit step


def tone(freq: float, sr: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(round(sr * seconds)) / sr
    x = (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.fixture
def kaldi_dir(tmp_path) -> DataDir:
    """Two speakers; a 22.05 kHz stereo recording cut by segments, and a pipe."""
    d = DataDir(tmp_path / "src")
    d.path.mkdir()
    rec = tmp_path / "rec.wav"
    sf.write(rec, tone(300, 22050, 2.0, channels=2), 22050)
    other = tmp_path / "other.flac"
    sf.write(other, tone(500, 8000, 0.7), 8000)
    write_kv(d.file("wav.scp"), {"rec": str(rec), "oth": f"cat {other} |"})
    d.write_segments(
        {
            "alice-rec-1": Segment("rec", 0.0, 0.8),
            "alice-rec-2": Segment("rec", 1.0, 2.0),
            "bob-oth-1": Segment("oth", 0.1, 0.6),
        }
    )
    d.write_utt2spk({"alice-rec-1": "alice", "alice-rec-2": "alice", "bob-oth-1": "bob"})
    write_kv(
        d.file("text"),
        {"alice-rec-1": "HELLO  WORLD", "alice-rec-2": "ÁGUA É VIDA", "bob-oth-1": ""},
    )
    write_kv(d.file("text.teacher"), {"alice-rec-1": "hello world", "bob-oth-1": "hi"})
    write_kv(d.file("utt2avg_logprob"), {u: "-0.123456789" for u in d.utt_ids()})
    return d


def test_to_hf_columns_and_audio(kaldi_dir):
    ds = to_hf(kaldi_dir)
    assert ds.column_names == [
        "id",
        "audio",
        "text",
        "speaker",
        "duration",
        "text.teacher",
        "utt2avg_logprob",
    ]
    assert ds.features["audio"] == Audio(sampling_rate=16000, decode=False)
    assert ds["id"] == ["alice-rec-1", "alice-rec-2", "bob-oth-1"]
    assert ds["speaker"] == ["alice", "alice", "bob"]
    assert ds["text"] == ["HELLO  WORLD", "ÁGUA É VIDA", ""]
    assert ds["text.teacher"] == ["hello world", None, "hi"]
    assert ds["duration"] == pytest.approx([0.8, 1.0, 0.5])
    reader = AudioReader(kaldi_dir)
    for row in ds:
        assert row["audio"]["path"] == f"{row['id']}.flac"
        x, sr = sf.read(io.BytesIO(row["audio"]["bytes"]), dtype="float32")
        assert sr == 16000 and sf.info(io.BytesIO(row["audio"]["bytes"])).format == "FLAC"
        np.testing.assert_allclose(x, reader(row["id"]), atol=Q)


def test_to_hf_extra_file_selection(kaldi_dir, tmp_path):
    assert to_hf(kaldi_dir, extra_files=[]).column_names[-1] == "duration"
    ds = to_hf(
        kaldi_dir, extra_files=["utt2avg_logprob"], audio_format="wav", cache_dir=tmp_path / "c"
    )
    assert ds.column_names[-1] == "utt2avg_logprob"
    assert ds.cache_files and Path(ds.cache_files[0]["filename"]).parent == tmp_path / "c"
    assert ds[0]["audio"]["bytes"][:4] == b"RIFF"
    with pytest.raises(ValueError, match="not found"):
        to_hf(kaldi_dir, extra_files=["utt2nothing"])
    with pytest.raises(ValueError, match="cannot be an extra file"):
        to_hf(kaldi_dir, extra_files=["utt2spk"])


def test_round_trip_dir_hf_dir(kaldi_dir, tmp_path):
    saved = save_to_hf(kaldi_dir, tmp_path / "hf")
    out = from_hf(saved, tmp_path / "back")
    for name in ("text", "utt2spk", "spk2utt", "text.teacher", "utt2avg_logprob"):
        assert out.read(name) == kaldi_dir.read(name), name
    assert not out.exists("segments")
    assert out.utt2dur() == pytest.approx(
        {"alice-rec-1": 0.8, "alice-rec-2": 1.0, "bob-oth-1": 0.5}
    )
    src, back = AudioReader(kaldi_dir), AudioReader(out)
    assert back.utt_ids == src.utt_ids
    for utt in src.utt_ids:
        path = Path(out.wav_scp()[utt])
        assert path.is_absolute() and path.parent == tmp_path / "back" / "wavs"
        assert sf.info(path).samplerate == 16000
        np.testing.assert_allclose(back(utt), src(utt), atol=Q)
    # saving again replaces the dataset; a folder that is not a dataset is never replaced
    save_to_hf(kaldi_dir, saved, extra_files=[])
    assert "text.teacher" not in datasets.load_from_disk(str(saved)).column_names
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="not written by `speechdistill data to-hf`"):
        save_to_hf(kaldi_dir, tmp_path / "precious")
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep"


def _foreign(tmp_path: Path) -> datasets.Dataset:
    """A Common-Voice-like dataset: mp3-ish paths as ids, 44.1/48 kHz bytes, client ids."""

    def flac(sr: int, seconds: float, channels: int = 1) -> bytes:
        buf = io.BytesIO()
        sf.write(buf, tone(1000, sr, seconds, channels), sr, format="FLAC")
        return buf.getvalue()

    ds = datasets.Dataset.from_dict(
        {
            "audio": [
                {"bytes": flac(44100, 0.5), "path": "clips/cv_001.flac"},
                {"bytes": flac(48000, 0.25, channels=2), "path": "clips/cv 002.flac"},
            ],
            "sentence": ["First line\nsecond line", "Hi"],
            "client_id": ["c1", "c2"],
            "age": ["twenties", None],
            "up_votes": [2, 3],
        }
    )
    return ds.cast_column("audio", Audio(sampling_rate=16000))  # decode=True: must not be used


def test_from_hf_foreign_dataset(tmp_path):
    out = from_hf(
        _foreign(tmp_path),
        tmp_path / "cv",
        text_column="sentence",
        speaker_column="client_id",
        extra_columns=["age"],
        audio_dir=tmp_path / "cvwav",
    )
    assert out.utt2spk() == {"c1-cv_001": "c1", "c2-cv_002": "c2"}
    assert out.text() == {"c1-cv_001": "First line second line", "c2-cv_002": "Hi"}
    assert out.read("utt2age") == {"c1-cv_001": "twenties"}
    assert not out.exists("utt2up_votes")
    assert out.utt2dur() == pytest.approx({"c1-cv_001": 0.5, "c2-cv_002": 0.25})
    x = read_audio(out.wav_scp()["c1-cv_001"])
    assert len(x) == 8000
    assert abs(np.argmax(np.abs(np.fft.rfft(x))) * 16000 / len(x) - 1000) <= 2
    assert Path(out.wav_scp()["c2-cv_002"]).parent == tmp_path / "cvwav"


def test_from_hf_dataset_dict_folder_and_split(tmp_path):
    dd = datasets.DatasetDict({"test": _foreign(tmp_path)})
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ValueError, match=r"split 'train'.*test"):
        from_hf(tmp_path / "dd", tmp_path / "x")
    out = from_hf(tmp_path / "dd", tmp_path / "x", split="test", text_column="sentence")
    # no speaker column: one speaker per utterance, ids from the audio file names
    assert out.utt2spk() == {"cv_001": "cv_001", "cv_002": "cv_002"}


def test_from_hf_bad_audio(tmp_path):
    ds = datasets.Dataset.from_dict(
        {
            "id": ["u1", "u2", "u3"],
            "speaker": ["s", "s", "s"],
            "audio": [
                {"bytes": _wav_bytes(), "path": None},
                {"bytes": b"garbage garbage", "path": "u2.wav"},
                {"bytes": None, "path": "rm -rf nothing |"},
            ],
        }
    )
    with pytest.raises(AudioError, match=r"s-u2.*dataset\[1\].*u2\.wav"):
        from_hf(ds, tmp_path / "bad")
    out = from_hf(ds, tmp_path / "bad", skip_errors=True)
    assert list(out.wav_scp()) == ["s-u1"]
    with pytest.raises(AudioError, match="refusing to run"):
        from_hf(ds.select([2]), tmp_path / "bad2")


def test_from_hf_missing_folder_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such dataset folder"):
        from_hf(tmp_path / "nothing", tmp_path / "out")


def test_from_hf_duplicate_ids_and_missing_audio_column(tmp_path):
    ds = datasets.Dataset.from_dict(
        {"id": ["a", "a"], "audio": [{"bytes": _wav_bytes(), "path": None}] * 2}
    )
    with pytest.raises(ValueError, match=r"duplicate utterance id 'a'.*rows 0 and 1"):
        from_hf(ds, tmp_path / "dup")
    with pytest.raises(ValueError, match="audio column 'speech'"):
        from_hf(ds, tmp_path / "dup", audio_column="speech")


def test_from_hf_removes_stale_files(kaldi_dir, tmp_path):
    ds = to_hf(kaldi_dir, extra_files=[])
    target = DataDir(tmp_path / "t")
    target.path.mkdir()
    write_kv(target.file("segments"), {"x": "r 0 1"})
    write_kv(target.file("text.teacher"), {"x": "old"})
    out = from_hf(ds, target.path)
    assert not out.exists("segments") and not out.exists("text.teacher")
    assert out.exists("text")


def _wav_bytes() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(440, 16000, 0.2), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# CLI


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register_into = parser.add_subparsers(dest="cmd", required=True)
    data_audio.register(register_into)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_commands(kaldi_dir, tmp_path):
    assert _run(["utt2dur", str(kaldi_dir.path)]) == 0
    assert kaldi_dir.utt2dur() == pytest.approx(
        {"alice-rec-1": 0.8, "alice-rec-2": 1.0, "bob-oth-1": 0.5}
    )
    assert kaldi_dir.read_floats("reco2dur") == pytest.approx({"oth": 0.7, "rec": 2.0})
    assert (
        _run(["to-hf", str(kaldi_dir.path), str(tmp_path / "hf"), "--extra-files", "text.teacher"])
        == 0
    )
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert ds.column_names[-1] == "text.teacher" and "utt2avg_logprob" not in ds.column_names
    assert _run(["from-hf", str(tmp_path / "hf"), str(tmp_path / "back")]) == 0
    back = DataDir(tmp_path / "back")
    assert back.read("text.teacher") == kaldi_dir.read("text.teacher")
    assert back.utt2spk() == kaldi_dir.utt2spk()


def test_cli_main_when_registered(kaldi_dir):
    from speechdistill.cli import build_parser, main

    try:
        build_parser().parse_args(["data", "utt2dur", str(kaldi_dir.path)])
    except SystemExit:
        pytest.skip("speechdistill.cli.data does not register the audio subcommands yet")
    assert main(["data", "utt2dur", str(kaldi_dir.path)]) == 0
    assert kaldi_dir.exists("utt2dur")
    write_kv(kaldi_dir.file("wav.scp"), {"rec": "/nonexistent/rec.wav", "oth": "false |"})
    kaldi_dir.file("reco2dur").unlink()
    assert main(["data", "utt2dur", str(kaldi_dir.path)]) == 1  # one-line error, no traceback
