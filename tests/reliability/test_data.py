"""Reliability of Kaldi data dirs: unsafe ids, stale formatted audio, truncated or bad audio,
segment ends of -1, stage inputs checked before the expensive work, and recordings (segments
past the end, overlapping or longer than 30 s, utterances without a recording, utt2reco)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechdistill.audio import AudioError, read_audio
from speechdistill.datadir import (
    DataDir,
    DataDirError,
    DataDirValidationError,
    check_id,
    combine,
    fix,
    subset,
    validate,
    write_kv,
)
from speechdistill.format import MANIFEST, format_data_dir

REPO = Path(__file__).resolve().parents[2]


def tone(seconds: float, freq: float = 440.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def data_dir(root: Path, clips: dict[str, np.ndarray | Path], segments=None) -> Path:
    """A data dir of ``utt -> samples`` (written as 16 kHz WAVs) or ``utt -> existing file``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "src").mkdir(exist_ok=True)
    wav = {}
    for i, (key, clip) in enumerate(sorted(clips.items())):
        if isinstance(clip, Path):
            wav[key] = str(clip)
        else:
            path = root / "src" / f"clip{i}.wav"  # never named after the (maybe unsafe) id
            sf.write(path, clip, 16000, subtype="PCM_16")
            wav[key] = str(path)
    utts = list(segments) if segments else list(wav)
    lines = {
        "wav.scp": "".join(f"{k} {v}\n" for k, v in sorted(wav.items())),
        "utt2spk": "".join(f"{u} {u.split('-')[0]}\n" for u in sorted(utts)),
        "text": "".join(f"{u} hello there\n" for u in sorted(utts)),
    }
    if segments:
        lines["segments"] = "".join(f"{u} {' '.join(map(str, s))}\n" for u, s in segments.items())
    for name, text in lines.items():
        (root / name).write_text(text, encoding="utf-8")
    spk2utt: dict[str, list[str]] = {}
    for u in sorted(utts):
        spk2utt.setdefault(u.split("-")[0], []).append(u)
    (root / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in spk2utt.items()))
    return root


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "speechdistill", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# 1. utterance ids are file names ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("utt", "reason"),
    [
        ("a-../../../../escape", "contains '/'"),
        ("a-sub/dir", "contains '/'"),
        ("..", "'..' names a directory"),
        ("-rf", "starts with '-'"),
        ("a-x\x0by", "contains whitespace or a control character"),
    ],
)
def test_unsafe_utterance_ids_are_refused_and_nothing_is_written_outside(tmp_path, utt, reason):
    src = data_dir(tmp_path / "work" / "data", {"a-ok": tone(0.5), utt: tone(0.5)})
    line = sorted(["a-ok", utt]).index(utt) + 1
    expected = f"utterance id {utt!r} is not a safe file name ({reason})"

    with pytest.raises(DataDirValidationError) as e:
        validate(src)
    assert f"{src / 'text'}:{line}: {expected}" in str(e.value)
    with pytest.raises(DataDirError, match=f"text:{line}: ") as e:  # the normal reader
        DataDir(src).text()
    assert expected in str(e.value)
    with pytest.raises(DataDirError, match="not a safe file name"):
        check_id(utt)
    with pytest.raises(DataDirError, match="not a safe file name"):
        fix(src)  # fix cannot rename ids: it refuses them too
    with pytest.raises(DataDirError, match="not a safe file name"):
        write_kv(tmp_path / "text", {utt: "x"})

    before = files_under(tmp_path)
    proc = cli("format", str(src), str(tmp_path / "work" / "dump"))
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    recording = expected.replace("utterance id", "recording id")  # wav.scp is keyed by recording
    assert f"{src / 'wav.scp'}:{line}: {recording}" in errors[0]
    assert files_under(tmp_path) == before  # not one file written, inside or out


def test_safe_ids_pass():
    for utt in ("spk1-utt_01", "a.b..c", ".hidden", "ünïcode-ß", "x" * 240):
        assert check_id(utt) == utt
    with pytest.raises(DataDirError, match="longer than 240 bytes"):
        check_id("x" * 241)


# 2. format reuses only what is provably the same -----------------------------------------------


def test_format_rewrites_stale_audio_and_reuses_identical_inputs(tmp_path):
    a, b = tone(1.0, 300), tone(0.6, 900)
    src = data_dir(tmp_path / "data", {"s-1": a, "s-2": b})
    dst, wavs = tmp_path / "dump", tmp_path / "wav"
    first = format_data_dir(src, dst, audio_dir=wavs)
    assert first.reused == 0 and (wavs / MANIFEST).is_file()
    snapshot = {p: p.read_bytes() for p in files_under(dst) | files_under(wavs)}
    mtimes = {p: p.stat().st_mtime_ns for p in files_under(wavs)}

    again = format_data_dir(src, dst, audio_dir=wavs)  # identical inputs: all reused, same bytes
    assert again.reused == 2
    assert {p: p.read_bytes() for p in files_under(dst) | files_under(wavs)} == snapshot
    assert {p: p.stat().st_mtime_ns for p in files_under(wavs)} == mtimes

    # wav.scp now points s-1 at s-2's clip: the old audio and utt2dur must not survive
    (src / "wav.scp").write_text(
        "".join(f"s-{i} {src / 'src' / 'clip1.wav'}\n" for i in (1, 2)), encoding="utf-8"
    )
    changed = format_data_dir(src, dst, audio_dir=wavs)
    assert changed.reused == 1
    assert np.array_equal(sf.read(wavs / "s-1.wav")[0], sf.read(wavs / "s-2.wav")[0])
    assert DataDir(dst).utt2dur() == {"s-1": 0.6, "s-2": 0.6}

    # the source file rewritten in place (same wav.scp line)
    sf.write(src / "src" / "clip1.wav", tone(0.4, 500), 16000, subtype="PCM_16")
    format_data_dir(src, dst, audio_dir=wavs)
    assert DataDir(dst).utt2dur() == {"s-1": 0.4, "s-2": 0.4}


def test_format_rewrites_a_segment_whose_times_changed(tmp_path):
    rec = tone(3.0)
    src = data_dir(tmp_path / "data", {"r": rec}, segments={"r-1": ("r", 0.0, 1.0)})
    dst = tmp_path / "dump"
    format_data_dir(src, dst)
    assert DataDir(dst).utt2dur() == {"r-1": 1.0}
    (src / "segments").write_text("r-1 r 0.5 2.5\n")
    report = format_data_dir(src, dst)
    assert report.reused == 0 and DataDir(dst).utt2dur() == {"r-1": 2.0}
    assert len(sf.read(dst / "wav" / "r-1.wav")[0]) == 32000


# 3. truncated WAVs -------------------------------------------------------------------------------


def test_truncated_wav_is_an_error_naming_the_utterance_or_a_counted_skip(tmp_path, caplog):
    src = data_dir(tmp_path / "data", {"s-1": tone(1.0), "s-2": tone(1.0)})
    clip = src / "src" / "clip1.wav"
    raw = clip.read_bytes()
    clip.write_bytes(raw[: len(raw) // 2])  # header still says 1 s
    present = len(raw) // 2 - 44
    message = (
        f"utterance 's-2', source '{clip}': truncated file: its WAV header declares 32000 bytes "
        f"of audio, the file holds {present}"
    )
    with pytest.raises(AudioError) as e:
        format_data_dir(src, tmp_path / "dump")
    assert str(e.value) == message
    with pytest.raises(AudioError, match="truncated file"):
        read_audio(str(clip), start=0.1, end=0.2)  # a segment of it, too

    with caplog.at_level(logging.INFO):
        report = format_data_dir(src, tmp_path / "dump2", skip_bad=True)
    assert report.unreadable == {"s-2": message} and report.kept == 1
    assert json.loads((tmp_path / "dump2" / "format.json").read_text())["unreadable"] == {
        "s-2": message
    }
    assert "1 unreadable" in caplog.text
    assert DataDir(tmp_path / "dump2").utt_ids() == ["s-1"]


# 4. segment end -1 -----------------------------------------------------------------------------


def test_segment_end_minus_one_is_valid_and_means_to_the_end(tmp_path):
    src = data_dir(tmp_path / "data", {"r": tone(2.0)}, segments={"r-1": ("r", 0.5, -1)})
    (src / "reco2dur").write_text("r 2\n")
    validate(src)  # no error
    format_data_dir(src, tmp_path / "dump")
    assert DataDir(tmp_path / "dump").utt2dur() == {"r-1": 1.5}


# 5. stage inputs checked before the expensive work ---------------------------------------------


def _never():
    pytest.fail("the model was loaded before the input was checked")


def _stage_runs(tmp_path: Path) -> dict:
    from speechdistill.decode import transcribe_data_dir
    from speechdistill.filter.stage import FilterConfig, filter_data_dir
    from speechdistill.pseudo_label import pseudo_label
    from speechdistill.train.config import TrainConfig
    from speechdistill.train.whisper_kd import WhisperKDTrainer

    missing = tmp_path / "no-model"  # loading it would fail with another message
    return {
        "pseudo-label": lambda d: pseudo_label(missing, d, tmp_path / "pl"),
        "decode": lambda d: transcribe_data_dir(
            _never, missing, d, tmp_path / "dec", batch_size=2, skip_bad=False, config={}
        ),
        "filter": lambda d: filter_data_dir(FilterConfig(d, tmp_path / "filt")),
        "train": lambda d: WhisperKDTrainer(
            missing, missing, d, d, tmp_path / "exp", TrainConfig(label_file="text")
        ),
    }


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("latin1_text", "text:2: invalid UTF-8 (every file must be UTF-8)"),
        ("no_utt2spk", "utt2spk: no such file"),
        ("crlf_text", "text:1: carriage return (CR) in line"),
    ],
)
def test_stage_inputs_are_checked_before_any_model_is_loaded(tmp_path, damage, problem):
    for stage, run in _stage_runs(tmp_path).items():
        d = data_dir(tmp_path / stage, {"s-1": tone(0.3), "s-2": tone(0.3)})
        write_kv(d / "text.teacher", {"s-1": "a", "s-2": "b"})
        if damage == "latin1_text":
            (d / "text").write_bytes(b"s-1 ok\ns-2 caf\xe9\n")
        elif damage == "no_utt2spk":
            (d / "utt2spk").unlink()
        else:
            (d / "text").write_bytes(b"s-1 a\r\ns-2 b\r\n")
        with pytest.raises(DataDirValidationError) as e:
            run(d)
        message = str(e.value)
        assert "\n" not in message
        assert message.startswith(f"{d}: {stage}: invalid input data dir (")
        assert problem in message, message


def test_crlf_is_stripped_with_a_warning_by_the_reader_and_removed_by_fix(tmp_path, caplog):
    d = data_dir(tmp_path / "d", {"s-1": tone(0.3), "s-2": tone(0.3)})
    (d / "text").write_bytes(b"s-1 a b\r\ns-2 c\r\n")
    with caplog.at_level(logging.WARNING):
        assert DataDir(d).text() == {"s-1": "a b", "s-2": "c"}
    assert "2 line(s) end in CR (DOS line endings), stripped" in caplog.text
    with pytest.raises(DataDirValidationError, match=r"text:1: carriage return"):
        validate(d)
    fix(d)
    assert (d / "text").read_bytes() == b"s-1 a b\ns-2 c\n"
    validate(d)


# corrupt, empty, NaN and too-short audio through format --------------------------------------------


def _bad_clips(tmp_path: Path) -> dict[str, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(1600, np.nan, np.float32), 16000, subtype="FLOAT")
    return {"s-corrupt": corrupt, "s-empty": empty, "s-nan": nan}


@pytest.mark.parametrize(
    ("utt", "reason"),
    [
        ("s-corrupt", "cannot read audio"),
        ("s-empty", "audio has no samples"),
        ("s-nan", "1600 non-finite (NaN/Inf) samples"),
    ],
)
def test_bad_audio_is_an_error_naming_the_utterance(tmp_path, utt, reason):
    clip = _bad_clips(tmp_path / "clips")[utt]
    src = data_dir(tmp_path / "data", {"s-good": tone(0.5), utt: clip})
    proc = cli("format", str(src), str(tmp_path / "dump"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln]
    assert len(errors) == 1, proc.stderr
    assert f"utterance {utt!r}, source '{clip}': {reason}" in errors[0]
    assert not (tmp_path / "dump" / "wav.scp").exists()  # no partial data dir


def test_bad_and_too_short_audio_are_counted_skips(tmp_path, caplog):
    clips = _bad_clips(tmp_path / "clips")
    src = data_dir(tmp_path / "data", {"s-good": tone(0.5), "s-short": tone(0.05), **clips})
    with caplog.at_level(logging.INFO):
        report = format_data_dir(src, tmp_path / "dump", min_duration=0.1, skip_bad=True)
    assert sorted(report.unreadable) == sorted(clips) and report.too_short == ["s-short"]
    assert report.kept == 1 and DataDir(tmp_path / "dump").utt_ids() == ["s-good"]
    assert "kept 1 of 5 utterances" in caplog.text
    assert "dropped 1 too short, 0 too long, 3 unreadable" in caplog.text
    stats = json.loads((tmp_path / "dump" / "format.json").read_text())
    assert stats["too_short"] == ["s-short"] and len(stats["unreadable"]) == 3


# 6. recordings: segments past the end, overlaps, long segments, no recording, utt2reco -------


def test_segment_past_its_recording_is_an_error_naming_it_or_a_counted_skip(tmp_path):
    segs = {"r-1": ("r", 0.0, 1.0), "r-2": ("r", 1.0, 3.5)}  # the recording is 2 s
    src = data_dir(tmp_path / "data", {"r": tone(2.0)}, segments=segs)
    proc = cli("format", str(src), str(tmp_path / "dump"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln]
    assert len(errors) == 1, proc.stderr
    assert "utterance 'r-2'" in errors[0]
    assert "ends 1.500 s after the recording (2.000 s); at most 0.5 s is tolerated" in errors[0]
    assert not (tmp_path / "dump" / "wav.scp").exists()
    report = format_data_dir(src, tmp_path / "dump2", skip_bad=True)
    assert list(report.unreadable) == ["r-2"] and report.kept == 1
    (src / "reco2dur").write_text("r 2\n")  # with the recording's duration, validate sees it
    with pytest.raises(DataDirValidationError, match=r"'r-2' ends at 3\.5 s, past the end of"):
        validate(src)


def test_overlapping_segments_are_a_warning_with_counts_and_are_formatted(tmp_path, caplog):
    segs = {"r-1": ("r", 0.0, 1.2), "r-2": ("r", 1.0, 2.0), "r-3": ("r", 1.5, 1.9)}
    src = data_dir(tmp_path / "data", {"r": tone(2.0)}, segments=segs)
    warnings = validate(src)  # legal Kaldi (cross-talk): no error
    overlap = [w for w in warnings if "segment(s) overlap" in w]
    assert len(overlap) == 1
    assert (
        "2 segment(s) overlap the one before in their recording (e.g. 'r-2' starts at 1 s, "
        "before 'r-1' ends at 1.2 s, in 'r')" in overlap[0]
    )
    report = format_data_dir(src, tmp_path / "dump")
    assert report.kept == 3
    assert DataDir(tmp_path / "dump").read("utt2reco") == {u: "r" for u in segs}


def test_segment_longer_than_30_s_is_a_warning_and_a_counted_drop_under_limits(tmp_path):
    segs = {"r-1": ("r", 0.0, 31.0), "r-2": ("r", 31.0, 32.0)}
    src = data_dir(tmp_path / "data", {"r": tone(32.0)}, segments=segs)
    warnings = validate(src)
    assert any("1 segment(s) longer than 30 s, Whisper's window (e.g. 'r-1', 31 s)" in w
               for w in warnings)  # fmt: skip
    report = format_data_dir(src, tmp_path / "dump", max_duration=30.0)  # train/dev limits
    assert report.too_long == ["r-1"] and report.kept == 1
    assert format_data_dir(src, tmp_path / "dump_test").kept == 2  # test sets keep it


def test_utterance_without_a_recording_is_an_error_naming_it(tmp_path):
    segs = {"r-1": ("r", 0.0, 1.0), "r-2": ("r", 1.0, 2.0)}
    src = data_dir(tmp_path / "data", {"r": tone(2.0)}, segments=segs)
    (src / "segments").write_text("r-1 r 0.0 1.0\n")  # r-2 keeps its text but lost its segment
    with pytest.raises(DataDirValidationError, match=r"1 utterance\(s\) of utt2spk missing"):
        validate(src)
    proc = cli("format", str(src), str(tmp_path / "dump"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln]
    assert len(errors) == 1, proc.stderr
    assert (
        "segments: utterance 'r-2' of utt2spk is not in segments (1 such): its audio is "
        "unknown" in errors[0]
    )
    assert not (tmp_path / "dump").exists() or not (tmp_path / "dump" / "wav.scp").exists()


@pytest.mark.parametrize(
    ("utt2reco", "problem"),
    [
        ("a-1 rec1\n", "1 utterance(s) of utt2spk missing (e.g. 'a-2')"),
        ("a-1 rec1\na-2 ../rec\n", "recording id '../rec' is not a safe file name"),
        ("a-1 rec1\na-2 rec1 rec2\n", "expected 'utterance recording', got 3 fields"),
        ("a-1 rec1\na-2 rec1\nb-9 rec1\n", "utterance 'b-9' is not in utt2spk"),
    ],
)
def test_bad_utt2reco_is_refused_naming_the_line(tmp_path, utt2reco, problem):
    src = data_dir(tmp_path / "data", {"a-1": tone(0.5), "a-2": tone(0.5)})
    (src / "utt2reco").write_text("a-1 rec1\na-2 rec1\n")
    validate(src)  # a good one passes
    (src / "utt2reco").write_text(utt2reco)
    with pytest.raises(DataDirValidationError) as e:
        validate(src)
    assert problem in str(e.value) and "utt2reco" in str(e.value)


def test_utt2reco_must_agree_with_segments_and_is_carried_by_subset_fix_combine(tmp_path):
    segs = {"r-1": ("r", 0.0, 1.0), "r-2": ("r", 1.0, 2.0)}
    src = data_dir(tmp_path / "data", {"r": tone(2.0)}, segments=segs)
    (src / "utt2reco").write_text("r-1 r\nr-2 q\n")
    with pytest.raises(DataDirValidationError, match="'q' of 'r-2' differs from its segment's"):
        validate(src)
    plain = data_dir(tmp_path / "plain", {"a-1": tone(0.5), "a-2": tone(0.5), "b-1": tone(0.5)})
    write_kv(plain / "utt2reco", {"a-1": "a_ch1", "a-2": "a_ch1", "b-1": "b_ch1"})
    subset(plain, tmp_path / "sub", utt_list=["a-2", "b-1"])
    assert DataDir(tmp_path / "sub").read("utt2reco") == {"a-2": "a_ch1", "b-1": "b_ch1"}
    validate(tmp_path / "sub")
    other = data_dir(tmp_path / "other", {"c-1": tone(0.5)})
    write_kv(other / "utt2reco", {"c-1": "c_ch1"})
    combine(tmp_path / "both", [plain, other])
    assert DataDir(tmp_path / "both").read("utt2reco")["c-1"] == "c_ch1"
    (plain / "text").write_text("a-1 hello there\nb-1 hello there\n")  # a-2 loses its text
    fix(plain, backup=False)
    assert DataDir(plain).read("utt2reco") == {"a-1": "a_ch1", "b-1": "b_ch1"}
    validate(plain)
