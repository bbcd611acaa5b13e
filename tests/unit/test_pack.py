"""``speechdistill data pack``: windows of at most 30 s from recordings, utt2reco or speakers;
training on a packed dir and on an unpacked one with ``segments``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechdistill.audio import read_audio
from speechdistill.datadir import DataDir, validate
from speechdistill.pack import pack_data_dir, window_utts

SR = 16000


def tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_dir(root: Path, files: dict[str, dict[str, str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, table in files.items():
        (root / name).write_text("".join(f"{k} {v}\n" for k, v in sorted(table.items())))
    spk2utt: dict[str, list[str]] = {}
    for u, s in sorted(files["utt2spk"].items()):
        spk2utt.setdefault(s, []).append(u)
    (root / "spk2utt").write_text(
        "".join(f"{s} {' '.join(u)}\n" for s, u in sorted(spk2utt.items()))
    )
    return root


def recording_dir(
    tmp_path: Path, segments: dict[str, tuple[str, float, float]], reco_seconds: float = 60.0
):
    """Recordings of ``reco_seconds`` of tone; utterance ids start with their speaker ``spkN``."""
    recos = sorted({r for r, _, _ in segments.values()})
    wav = {}
    for i, r in enumerate(recos):
        path = tmp_path / f"{r}.wav"
        sf.write(path, tone(reco_seconds, 200 + 50 * i), SR, subtype="PCM_16")
        wav[r] = str(path)
    return write_dir(
        tmp_path / "in",
        {
            "wav.scp": wav,
            "segments": {u: f"{r} {s} {e}" for u, (r, s, e) in segments.items()},
            "utt2spk": {u: u.split("-")[0] for u in segments},
            "text": {u: f"word {u}" for u in segments},
        },
    )


def clip_dir(tmp_path: Path, clips: dict[str, float], utt2reco: dict[str, str] | None = None):
    """One WAV per utterance of ``clips`` (utt -> seconds); speaker: the id's first field."""
    (tmp_path / "src").mkdir(parents=True, exist_ok=True)
    wav = {}
    for i, (u, secs) in enumerate(sorted(clips.items())):
        path = tmp_path / "src" / f"{u}.wav"
        sf.write(path, tone(secs, 200 + 20 * i), SR, subtype="PCM_16")
        wav[u] = str(path)
    files = {
        "wav.scp": wav,
        "utt2spk": {u: u.split("-")[0] for u in clips},
        "text": {u: f"w {u}" for u in clips},
    }
    if utt2reco:
        files["utt2reco"] = utt2reco
    return write_dir(tmp_path / "in", files)


def test_segments_windows_are_spans_of_the_recording(tmp_path: Path):
    # four 8 s utterances 1 s apart, then one after a 5 s pause
    segs = {f"spk1-r1_{i}": ("r1", 9.0 * i, 9.0 * i + 8) for i in range(4)}
    segs["spk1-r1_4"] = ("r1", 40.0, 45.0)
    src = recording_dir(tmp_path, segs)
    report = pack_data_dir(src, tmp_path / "out", max_duration=30, max_gap=3)
    d = DataDir(tmp_path / "out")
    assert window_utts(d.path) == {
        "spk1-r1_0": ["spk1-r1_0", "spk1-r1_1", "spk1-r1_2"],  # 0 .. 26 s
        "spk1-r1_3": ["spk1-r1_3"],  # 27 .. 35: 0 .. 35 would be > 30 s
        "spk1-r1_4": ["spk1-r1_4"],  # after a 5 s pause (> max_gap)
    }
    seg = d.segments()
    assert seg["spk1-r1_0"] == ("r1", 0.0, 26.0) and seg["spk1-r1_4"] == ("r1", 40.0, 45.0)
    assert d.text()["spk1-r1_0"] == "word spk1-r1_0 word spk1-r1_1 word spk1-r1_2"
    assert d.utt2dur()["spk1-r1_0"] == 26.0
    assert set(d.wav_scp()) == {"r1"} and not (tmp_path / "out" / "wav").exists()
    validate(d.path)
    info = json.loads((d.path / "pack.json").read_text())
    assert info["grouped_by"] == "segments" and info["windows"] == 3
    assert (info["utterances"], info["packed"], info["alone"]) == (5, 3, 2)
    assert report.window_seconds == 26 + 8 + 5


def test_max_gap_and_max_duration_boundaries_are_inclusive(tmp_path: Path):
    segs = {"spk1-a": ("r1", 0.0, 10.0), "spk1-b": ("r1", 13.0, 20.0), "spk1-c": ("r1", 23.0, 30.0)}
    src = recording_dir(tmp_path, segs)
    pack_data_dir(src, tmp_path / "out", max_duration=30, max_gap=3)
    assert window_utts(tmp_path / "out") == {"spk1-a": ["spk1-a", "spk1-b", "spk1-c"]}
    pack_data_dir(src, tmp_path / "out2", max_duration=29.99, max_gap=2.99)
    assert len(window_utts(tmp_path / "out2")) == 3


def test_mixed_speakers_window_belongs_to_the_recording(tmp_path: Path):
    segs = {
        "spkA-r1_1": ("r1", 0.0, 4.0),
        "spkB-r1_2": ("r1", 4.5, 9.0),
        "spkC-r2_1": ("r2", 0.0, 3.0),
    }
    src = recording_dir(tmp_path, segs)
    pack_data_dir(src, tmp_path / "out")
    d = DataDir(tmp_path / "out")
    assert d.utt2spk() == {"r1-spkA-r1_1": "r1", "spkC-r2_1": "spkC"}
    assert window_utts(d.path)["r1-spkA-r1_1"] == ["spkA-r1_1", "spkB-r1_2"]
    validate(d.path)


def test_concatenation_writes_the_utterances_with_silence_between(tmp_path: Path):
    src = clip_dir(tmp_path, {"s1-a": 2.0, "s1-b": 3.0, "s1-c": 26.0, "s2-a": 1.0})
    report = pack_data_dir(src, tmp_path / "out", gap=0.5)
    d = DataDir(tmp_path / "out")
    assert window_utts(d.path) == {"s1-a": ["s1-a", "s1-b"], "s1-c": ["s1-c"], "s2-a": ["s2-a"]}
    audio = read_audio(d.wav_scp()["s1-a"])
    assert len(audio) == round(5.5 * SR)
    first = read_audio(str(src / ".." / "src" / "s1-a.wav"))
    assert np.allclose(audio[: len(first)], first, atol=1e-4)
    assert np.abs(audio[2 * SR + 100 : round(2.5 * SR) - 100]).max() == 0  # the gap
    assert d.utt2dur()["s1-a"] == 5.5
    assert Path(d.wav_scp()["s1-a"]).parent == (tmp_path / "out" / "wav").resolve()
    assert not d.has_segments
    validate(d.path)
    assert (report.grouped_by, report.mode, report.wavs_written) == ("utt2spk", "concatenate", 3)


def test_rerun_rewrites_nothing_then_only_what_changed(tmp_path: Path):
    src = clip_dir(tmp_path, {"s1-a": 2.0, "s1-b": 3.0, "s2-a": 1.0})
    pack_data_dir(src, tmp_path / "out")
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.is_file()}
    report = pack_data_dir(src, tmp_path / "out")
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.is_file()}
    changed = {n for n in before if before[n] != after.get(n)}
    assert (report.wavs_written, report.wavs_reused) == (0, 2)
    assert not changed
    sf.write(tmp_path / "src" / "s2-a.wav", tone(1.5), SR, subtype="PCM_16")
    report = pack_data_dir(src, tmp_path / "out")
    assert (report.wavs_written, report.wavs_reused) == (1, 1)
    assert DataDir(tmp_path / "out").utt2dur()["s2-a"] == 1.5


def test_utt2reco_groups_by_recording_in_time_order(tmp_path: Path):
    # NURC-SP-like ids: <spk>-<audio>_<start>_<end>; the speakers alternate in one recording
    clips = {"spkA-rec_0000_0005": 5.0, "spkB-rec_0006_0010": 4.0, "spkA-rec_0011_0014": 3.0}
    utt2reco = {u: "rec" for u in clips}
    src = clip_dir(tmp_path, clips, utt2reco)
    report = pack_data_dir(src, tmp_path / "out")
    assert report.grouped_by == "utt2reco"
    utts = window_utts(tmp_path / "out")
    assert utts == {
        "rec-spkA-rec_0000_0005": ["spkA-rec_0000_0005", "spkB-rec_0006_0010", "spkA-rec_0011_0014"]
    }
    assert not (tmp_path / "out" / "utt2reco").exists()  # utterance files are not carried
    validate(tmp_path / "out")


def test_utterance_longer_than_the_window_is_kept_alone(tmp_path: Path):
    segs = {"spk1-a": ("r1", 0.0, 5.0), "spk1-b": ("r1", 5.5, 40.0), "spk1-c": ("r1", 40.5, 45.0)}
    src = recording_dir(tmp_path, segs)
    report = pack_data_dir(src, tmp_path / "out")
    assert window_utts(tmp_path / "out") == {
        "spk1-a": ["spk1-a"],
        "spk1-b": ["spk1-b"],
        "spk1-c": ["spk1-c"],
    }
    assert report.too_long == ["spk1-b"]
    assert json.loads((tmp_path / "out" / "pack.json").read_text())["too_long"] == ["spk1-b"]


def test_max_duration_over_30_is_refused(tmp_path: Path):
    src = clip_dir(tmp_path, {"s1-a": 1.0})
    with pytest.raises(ValueError, match="Whisper's window"):
        pack_data_dir(src, tmp_path / "out", max_duration=31)


def test_no_text_gives_a_dir_without_text(tmp_path: Path):
    src = clip_dir(tmp_path, {"s1-a": 1.0, "s1-b": 1.0})
    (src / "text").unlink()
    pack_data_dir(src, tmp_path / "out")
    assert not (tmp_path / "out" / "text").exists()
    validate(tmp_path / "out", no_text=True)


def test_training_on_a_packed_dir_with_timestamped_labels(tmp_path: Path):
    """A packed dir with pseudo-labels (text.teacher, text.teacher_ts) trains like any other,
    the timestamped labels drawn half of the time (online teacher, tiny random models)."""
    from speechdistill.init_student import init_student
    from speechdistill.teachers.whisper import load_teacher
    from speechdistill.testing import english_tokenizer, save_random_whisper
    from speechdistill.train.config import TrainConfig
    from speechdistill.train.data import KDDataset
    from speechdistill.train.whisper_kd import train_whisper

    tok = english_tokenizer()
    teacher = save_random_whisper(
        tmp_path / "teacher", tok, multilingual=False, max_source_positions=1500
    )
    student = tmp_path / "student"
    init_student(teacher, student, decoder_layers=1)
    src = clip_dir(tmp_path, {f"s{s}-u{i}": 1.0 for s in (1, 2) for i in range(3)})
    packed = tmp_path / "packed"
    pack_data_dir(src, packed, gap=0.5)
    d = DataDir(packed)
    windows = window_utts(packed)
    assert len(windows) == 2 and all(len(u) == 3 for u in windows.values())
    d.write("text.teacher", {w: "hi there you" for w in windows})
    # the random models' tokenizer has no timestamp tokens (they are text to it): a short label
    d.write("text.teacher_ts", {w: "<|0.00|> hi<|4.00|>" for w in windows})
    config = TrainConfig(
        max_steps=2, batch_size=2, eval_steps=2, save_steps=2, log_steps=1, eval_batch_size=2,
        eval_max_new_tokens=8, warmup_steps=1, teacher_mode="online", timestamp_prob=0.5,
        max_label_tokens=36,
    )  # fmt: skip
    model, proc = load_teacher(student)
    ds = KDDataset(packed, proc, model.generation_config, config)
    notimestamps = proc.tokenizer.convert_tokens_to_ids("<|notimestamps|>")
    drawn = []  # the two epochs the two steps of two windows see
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        drawn += [notimestamps in ds[i]["labels"] for i in range(len(ds))]
    assert False in drawn  # a timestamped label is trained on
    summary = train_whisper(student, teacher, packed, packed, tmp_path / "exp", config)
    assert summary["steps"] == 2 and (tmp_path / "exp" / "model.safetensors").is_file()


def test_training_reads_the_segments_of_an_unpacked_dir(tmp_path: Path, caplog):
    """Per-utterance training on a dir with ``segments`` reads each utterance's span of its
    recording; in the dataset, a label without a segment is a logged, counted skip."""
    from speechdistill.init_student import init_student
    from speechdistill.teachers.whisper import load_teacher
    from speechdistill.testing import english_tokenizer, save_random_whisper
    from speechdistill.train.config import TrainConfig
    from speechdistill.train.data import KDDataset
    from speechdistill.train.whisper_kd import train_whisper

    teacher = save_random_whisper(
        tmp_path / "teacher", english_tokenizer(), multilingual=False, max_source_positions=1500
    )
    student = tmp_path / "student"
    init_student(teacher, student, decoder_layers=1)
    segs = {"spk1-a": ("r1", 0.0, 1.0), "spk1-b": ("r1", 2.0, 2.5), "spk2-c": ("r2", 1.0, 3.0)}
    d = DataDir(recording_dir(tmp_path, segs, reco_seconds=4.0))
    d.write("text.teacher", {**{u: "hi there" for u in segs}, "spk2-gone": "no audio"})
    config = TrainConfig(
        max_steps=2, batch_size=2, eval_steps=2, save_steps=2, log_steps=1, eval_batch_size=2,
        eval_max_new_tokens=8, warmup_steps=1, teacher_mode="online",
    )  # fmt: skip
    model, proc = load_teacher(student)
    with caplog.at_level("WARNING"):
        ds = KDDataset(d.path, proc, model.generation_config, config)
    assert sorted(ds.utts) == sorted(segs)
    assert "1 utterances of text.teacher skipped: not in segments: spk2-gone" in caplog.text
    for i, utt in enumerate(ds.utts):
        reco, start, end = segs[utt]
        span = read_audio(str(tmp_path / f"{reco}.wav"))[round(start * SR) : round(end * SR)]
        want = proc.feature_extractor(span, sampling_rate=SR).input_features[0]
        assert np.allclose(ds[i]["input_features"].numpy(), want, atol=1e-5)
    d.write("text.teacher", {u: "hi there" for u in segs})  # train refuses the stray label
    summary = train_whisper(student, teacher, d.path, d.path, tmp_path / "exp", config)
    assert summary["steps"] == 2
