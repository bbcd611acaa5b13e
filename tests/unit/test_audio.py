"""speechdistill.audio: files, pipes, segments, resampling, durations and bad input."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechdistill.audio import (
    MAX_OVERSHOOT,
    SAMPLE_RATE,
    AudioError,
    AudioReader,
    audio_duration,
    compute_utt2dur,
    decode_audio,
    encode_audio,
    read_audio,
    write_wav,
)
from speechdistill.datadir import DataDir, Segment, write_kv

needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


def write(path: Path, audio: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    sf.write(path, audio, sr, subtype=subtype)
    return path


# --------------------------------------------------------------------------------------------
# files, resampling, mono


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000])
def test_resampled_to_16k_keeps_length_and_frequency(tmp_path, sr):
    path = write(tmp_path / f"s{sr}.wav", sine(1000, sr, 1.0), sr)
    x = read_audio(str(path))
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - SAMPLE_RATE) <= 1
    assert abs(peak_hz(x, SAMPLE_RATE) - 1000) <= 2
    assert np.abs(x).max() <= 1.0
    assert 0.45 < np.abs(x).max() < 0.55


def test_other_sample_rate_on_request(tmp_path):
    path = write(tmp_path / "a.wav", sine(500, 16000, 0.5), 16000)
    x = read_audio(str(path), sample_rate=8000)
    assert len(x) == 4000
    assert abs(peak_hz(x, 8000) - 500) <= 4


def test_stereo_is_averaged(tmp_path):
    left, right = sine(440, 16000, 0.25), np.full(4000, 0.25, dtype=np.float32)
    path = write(tmp_path / "st.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(str(path)), (left + right) / 2, atol=1e-6)


def test_flac_and_float_sources(tmp_path):
    x = sine(300, 22050, 0.3)
    flac = write(tmp_path / "a.flac", x, 22050)
    assert abs(len(read_audio(str(flac))) - 4800) <= 1


def test_clipping_of_loud_float_files(tmp_path, caplog):
    path = write(tmp_path / "loud.wav", sine(200, 16000, 0.1, amp=3.0), 16000, subtype="FLOAT")
    x = read_audio(str(path), utt_id="u1")
    assert np.abs(x).max() == pytest.approx(1.0)
    assert "u1" in caplog.text and "clipped" in caplog.text


# --------------------------------------------------------------------------------------------
# segments


def test_segment_reads_only_its_frames(tmp_path, monkeypatch):
    full = sine(100, 16000, 2.0) + np.linspace(0, 0.1, 32000, dtype=np.float32)
    path = write(tmp_path / "long.wav", full, 16000, subtype="FLOAT")
    requested = []
    real_read = sf.SoundFile.read

    def spy(self, frames=-1, *a, **k):
        requested.append(frames)
        return real_read(self, frames, *a, **k)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    seg = read_audio(str(path), start=0.5, end=0.75)
    assert requested == [4000]
    np.testing.assert_array_equal(seg, full[8000:12000])


def test_segment_of_resampled_file(tmp_path):
    path = write(tmp_path / "a.wav", sine(1000, 44100, 2.0), 44100)
    seg = read_audio(str(path), start=0.5, end=1.5)
    assert abs(len(seg) - 16000) <= 1
    assert abs(peak_hz(seg, 16000) - 1000) <= 2


def test_segment_overshoot_is_clipped_within_tolerance(tmp_path):
    path = write(tmp_path / "a.wav", sine(100, 16000, 1.0), 16000)
    seg = read_audio(str(path), start=0.5, end=1.0 + MAX_OVERSHOOT / 2)
    assert len(seg) == 8000
    seg = read_audio(str(path), start=0.5, end=-1)  # Kaldi: -1 is the end of the recording
    assert len(seg) == 8000


def test_segment_overshoot_beyond_tolerance_is_an_error(tmp_path):
    path = write(tmp_path / "a.wav", sine(100, 16000, 1.0), 16000)
    with pytest.raises(AudioError, match=r"utt9.*a\.wav.*after the recording"):
        read_audio(str(path), start=0.5, end=1.0 + 2 * MAX_OVERSHOOT, utt_id="utt9")
    with pytest.raises(AudioError, match="no samples"):
        read_audio(str(path), start=1.2, end=1.3, utt_id="utt9")
    with pytest.raises(AudioError, match="not after start"):
        read_audio(str(path), start=0.5, end=0.4, utt_id="utt9")


# --------------------------------------------------------------------------------------------
# pipes


@needs_sox
def test_sox_pipe_is_decoded_and_resampled(tmp_path):
    path = write(tmp_path / "a.wav", sine(1000, 22050, 1.0), 22050)
    x = read_audio(f"sox {path} -t wav - |")
    assert abs(len(x) - 16000) <= 1
    assert abs(peak_hz(x, 16000) - 1000) <= 2
    y = read_audio(f"sox {path} -t flac - |", start=0.25, end=0.5)
    assert abs(len(y) - 4000) <= 1


def test_cat_pipe_equals_file(tmp_path):
    path = write(tmp_path / "a.wav", sine(440, 16000, 0.5), 16000)
    np.testing.assert_array_equal(read_audio(f"cat {path} |"), read_audio(str(path)))
    assert audio_duration(f"cat {path} |") == pytest.approx(0.5)


def test_pipe_wav_with_zero_data_size_is_read_to_the_end(tmp_path):
    """Writers streaming to a pipe cannot seek back to fill in the sizes."""
    path = write(tmp_path / "a.wav", sine(440, 16000, 0.5), 16000)
    raw = bytearray(path.read_bytes())
    assert raw[36:40] == b"data"
    raw[4:8] = raw[40:44] = struct.pack("<I", 0)
    streamed = tmp_path / "streamed.wav"
    streamed.write_bytes(bytes(raw))
    assert len(read_audio(f"cat {streamed} |")) == 8000


def test_failing_pipe_names_utterance_source_and_stderr():
    with pytest.raises(AudioError) as e:
        read_audio("echo 'no such corpus file' >&2; exit 3 |", utt_id="spk1-u1")
    msg = str(e.value)
    assert "spk1-u1" in msg and "exit 3" in msg and "status 3" in msg
    assert "no such corpus file" in msg


def test_pipe_with_no_output_is_an_error():
    with pytest.raises(AudioError, match=r"spk1-u2.*true \|.*no output"):
        read_audio("true |", utt_id="spk1-u2")


def test_pipe_with_garbage_output_is_an_error():
    with pytest.raises(AudioError, match=r"u3.*echo hello.*cannot decode"):
        read_audio("echo hello |", utt_id="u3")


# --------------------------------------------------------------------------------------------
# bad input


def test_missing_file(tmp_path):
    src = str(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match=r"utterance 'u1'.*nope\.wav.*not found"):
        read_audio(src, utt_id="u1")
    with pytest.raises(AudioError, match=r"u1.*nope\.wav.*not found"):
        audio_duration(src, utt_id="u1")


def test_corrupt_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk" * 4)
    with pytest.raises(AudioError, match=r"u2.*bad\.wav.*cannot read"):
        read_audio(str(bad), utt_id="u2")
    with pytest.raises(AudioError, match=r"bad\.wav"):
        audio_duration(str(bad))


@pytest.mark.parametrize("kind", ["zero-bytes", "zero-samples"])
def test_empty_file(tmp_path, kind):
    path = tmp_path / "empty.wav"
    if kind == "zero-bytes":
        path.write_bytes(b"")
    else:
        sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match=r"u3.*empty\.wav"):
        read_audio(str(path), utt_id="u3")
    with pytest.raises(AudioError, match=r"u3.*empty\.wav"):
        audio_duration(str(path), utt_id="u3")


def test_nan_samples(tmp_path):
    x = sine(100, 16000, 0.1)
    x[10] = np.nan
    x[20] = np.inf
    path = write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"u4.*nan\.wav.*2 non-finite"):
        read_audio(str(path), utt_id="u4")


def test_kaldi_archive_offset_gets_a_hint(tmp_path):
    with pytest.raises(AudioError, match="offsets"):
        read_audio(f"{tmp_path}/feats.ark:123")


# --------------------------------------------------------------------------------------------
# bytes, writing


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_encode_decode_round_trip(fmt):
    x = sine(700, 16000, 0.2)
    y = decode_audio(encode_audio(x, fmt=fmt))
    np.testing.assert_allclose(y, x, atol=1 / 32767)
    with pytest.raises(AudioError, match=r"u5.*<bytes>"):
        decode_audio(b"not audio", utt_id="u5")


def test_write_wav_is_16bit_clipped_and_atomic(tmp_path):
    path = tmp_path / "sub" / "o.wav"
    x = sine(300, 16000, 0.1, amp=1.5)
    write_wav(path, x)
    info = sf.info(path)
    assert (info.samplerate, info.subtype, info.frames) == (16000, "PCM_16", 1600)
    y = read_audio(str(path))
    np.testing.assert_allclose(y, np.clip(x, -1, 1), atol=1 / 32767)
    assert sorted(p.name for p in path.parent.iterdir()) == ["o.wav"]
    with pytest.raises(ValueError, match="NaN"):
        write_wav(path, np.array([0.0, np.nan]))
    assert read_audio(str(path)).shape == (1600,)  # the old file survived the failed write


# --------------------------------------------------------------------------------------------
# data dirs


@pytest.fixture
def plain_dir(tmp_path) -> DataDir:
    d = DataDir(tmp_path / "plain")
    d.path.mkdir()
    a = write(tmp_path / "a.wav", sine(440, 8000, 1.0), 8000)
    b = write(tmp_path / "b.wav", sine(440, 16000, 0.5), 16000)
    write_kv(d.file("wav.scp"), {"s1-b": str(b), "s1-a": f"cat {a} |"})
    d.write_utt2spk({"s1-a": "s1", "s1-b": "s1"})
    return d


@pytest.fixture
def seg_dir(tmp_path) -> DataDir:
    d = DataDir(tmp_path / "seg")
    d.path.mkdir()
    rec = write(tmp_path / "rec.wav", sine(200, 22050, 3.0), 22050)
    counter = tmp_path / "runs"
    pipe = f"echo run >> {counter}; cat {rec} |"
    write_kv(d.file("wav.scp"), {"r1": str(rec), "r2": pipe})
    d.write_segments(
        {
            "s-r1-1": Segment("r1", 0.0, 1.0),
            "s-r1-2": Segment("r1", 1.5, 3.2),  # 0.2 s overshoot: clipped
            "s-r2-1": Segment("r2", 0.25, 0.75),
            "s-r2-2": Segment("r2", 2.0, -1),
        }
    )
    d.write_utt2spk({u: "s" for u in ("s-r1-1", "s-r1-2", "s-r2-1", "s-r2-2")})
    return d


def test_reader_without_segments(plain_dir):
    r = AudioReader(plain_dir)
    assert r.utt_ids == ["s1-a", "s1-b"] and len(r) == 2
    assert len(r("s1-a")) == 16000 and len(r("s1-b")) == 8000
    assert r.duration("s1-a") == pytest.approx(1.0)  # via the pipe
    assert r.duration("s1-b") == pytest.approx(0.5)  # via the header
    with pytest.raises(KeyError, match="s1-zz"):
        r("s1-zz")


def test_reader_with_segments_runs_each_pipe_once(seg_dir, tmp_path):
    r = AudioReader(seg_dir)
    assert r.utt_ids == ["s-r1-1", "s-r1-2", "s-r2-1", "s-r2-2"]
    lens = {u: len(r(u)) for u in r.utt_ids}
    assert lens == {"s-r1-1": 16000, "s-r1-2": 24000, "s-r2-1": 8000, "s-r2-2": 16000}
    assert (tmp_path / "runs").read_text().count("run") == 1
    assert r.duration("s-r2-1") == pytest.approx(0.5)
    assert r.duration("s-r2-2") == pytest.approx(1.0)  # end -1: header duration - start


def test_reader_prefers_utt2dur(plain_dir):
    write_kv(plain_dir.file("utt2dur"), {"s1-a": "9.5", "s1-b": "0.5"})
    assert AudioReader(plain_dir).duration("s1-a") == 9.5


def test_reader_error_names_utterance(plain_dir, tmp_path):
    (tmp_path / "b.wav").unlink()
    with pytest.raises(AudioError, match=r"s1-b.*b\.wav.*not found"):
        AudioReader(plain_dir)("s1-b")


def test_compute_utt2dur_without_segments(plain_dir):
    durs = compute_utt2dur(plain_dir)
    assert durs == pytest.approx({"s1-a": 1.0, "s1-b": 0.5})
    assert plain_dir.read("utt2dur") == {"s1-a": "1", "s1-b": "0.5"}
    assert not plain_dir.exists("reco2dur")


def test_compute_utt2dur_with_segments(seg_dir):
    durs = compute_utt2dur(seg_dir)
    # s-r1-2 (1.5 .. 3.2 s) overshoots its 3 s recording: clipped as the reader clips it
    assert durs == pytest.approx({"s-r1-1": 1.0, "s-r1-2": 1.5, "s-r2-1": 0.5, "s-r2-2": 1.0})
    assert seg_dir.read_floats("reco2dur") == pytest.approx({"r1": 3.0, "r2": 3.0})
    assert seg_dir.utt2dur() == pytest.approx(durs)
    assert compute_utt2dur(seg_dir, write=False) == pytest.approx(durs)


def test_compute_utt2dur_names_the_bad_recording(seg_dir, tmp_path):
    write_kv(seg_dir.file("wav.scp"), {"r1": str(tmp_path / "gone.wav"), "r2": "false |"})
    with pytest.raises(AudioError, match=r"recording 'r1'.*gone\.wav"):
        compute_utt2dur(seg_dir)


def test_compute_utt2dur_rejects_segments_outside_the_recording(seg_dir):
    seg_dir.write_segments({"s-r1-1": Segment("r1", 2.0, 4.0)})
    with pytest.raises(ValueError, match=r"s-r1-1.*does not fit.*'r1'"):
        compute_utt2dur(seg_dir)
    seg_dir.write_segments({"s-r1-1": Segment("r1", 3.1, -1)})
    with pytest.raises(ValueError, match="does not fit"):
        compute_utt2dur(seg_dir)
