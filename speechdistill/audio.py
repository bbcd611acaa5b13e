"""Audio loading for Kaldi data dirs: files, ``cmd |`` pipes, segments, mono, 16 kHz.

Every reader returns float32 mono samples in [-1, 1] at ``sample_rate`` (16 kHz by default).

- ``wav.scp`` values are either a path to a file that libsndfile reads (WAV, FLAC, OGG, MP3, …)
  or a Kaldi pipe ``cmd |``, run through ``/bin/sh`` with its stdout decoded as a WAV/FLAC
  stream. Kaldi archive offsets (``foo.ark:1234``) and ``-`` (stdin) are not supported.
- Segments of files read only the frames they need (a seek); pipes are decoded whole, then cut.
- Channels are averaged to mono; resampling uses soxr at quality ``HQ`` (20-bit precision,
  plenty for 16-bit speech and faster than ``VHQ``).
- A segment ending after the recording is clipped to its end when the overshoot is at most
  :data:`MAX_OVERSHOOT` seconds (Kaldi's ``extract-segments --max-overshoot``), an error beyond;
  an end time of ``-1`` means "to the end of the recording", as in Kaldi.
- Missing, corrupt, truncated (a WAV whose data is shorter than its header says, or a file that
  yields fewer frames than it declares), empty (no samples) or non-finite (NaN/Inf) audio, and
  failing pipes, raise :class:`AudioError` naming the utterance and its source.
"""

from __future__ import annotations

import io
import logging
import math
import os
import struct
import subprocess
from collections.abc import Mapping
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from speechdistill.datadir import DataDir, DataDirError, Segment, c_sorted, write_kv
from speechdistill.utils import PathLike, atomic_write_bytes

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
#: Seconds a segment may run past the end of its recording before it is an error.
MAX_OVERSHOOT = 0.5
#: soxr quality preset used for every resampling.
RESAMPLE_QUALITY = "HQ"

_STDERR_TAIL = 600


class AudioError(RuntimeError):
    """Audio could not be read; the message names the utterance (when known) and its source."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        utt_id: str | None = None,
        reco_id: str | None = None,
    ):
        self.reason = message
        self.source = source
        self.utt_id = utt_id
        self.reco_id = reco_id
        where = []
        if utt_id is not None:
            where.append(f"utterance {utt_id!r}")
        if reco_id is not None:
            where.append(f"recording {reco_id!r}")
        if source is not None:
            where.append(f"source {source!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


def is_pipe(source: str) -> bool:
    """Whether a ``wav.scp`` value is a Kaldi pipe (``cmd |``)."""
    return source.rstrip().endswith("|")


# --------------------------------------------------------------------------------------------
# low level: native-rate frames from a file, a pipe or bytes


def _run_pipe(source: str, utt_id: str | None) -> bytes:
    """Run the command of a ``cmd |`` pipe and return its stdout."""
    cmd = source.rstrip()[:-1].strip()
    if not cmd:
        raise AudioError("empty pipe command", source=source, utt_id=utt_id)
    try:
        proc = subprocess.run(
            cmd, shell=True, stdin=subprocess.DEVNULL, capture_output=True, check=False
        )
    except OSError as e:
        raise AudioError(f"cannot run pipe: {e}", source=source, utt_id=utt_id) from None
    tail = proc.stderr.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
    if proc.returncode != 0:
        msg = f"pipe exited with status {proc.returncode}"
        raise AudioError(msg + (f"; stderr: {tail}" if tail else ""), source=source, utt_id=utt_id)
    if not proc.stdout:
        msg = "pipe produced no output"
        raise AudioError(msg + (f"; stderr: {tail}" if tail else ""), source=source, utt_id=utt_id)
    return proc.stdout


def _patch_streamed_wav(data: bytes) -> bytes | None:
    """Fix a RIFF header written to a pipe with a zero data size; None when not applicable."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if chunk == b"data":
            body = len(data) - pos - 8
            if body <= 0 or size == body:
                return None
            out = bytearray(data)
            out[4:8] = struct.pack("<I", min(len(data) - 8, 0xFFFFFFFF))
            out[pos + 4 : pos + 8] = struct.pack("<I", min(body, 0xFFFFFFFF))
            return bytes(out)
        pos += 8 + size + (size & 1)
    return None


def _decode_bytes(data: bytes, source: str, utt_id: str | None) -> tuple[np.ndarray, int]:
    """Decode an in-memory audio file to (frames, channels) float32 at its native rate."""
    try:
        frames, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        if len(frames) == 0 and (patched := _patch_streamed_wav(data)) is not None:
            frames, sr = sf.read(io.BytesIO(patched), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as e:
        raise AudioError(f"cannot decode audio: {e}", source=source, utt_id=utt_id) from None
    return frames, int(sr)


def _span(
    start: float, end: float | None, n_frames: int, sr: int, source: str, utt_id: str | None
) -> tuple[int, int]:
    """Frame range for [start, end) seconds; tolerates an overshoot up to MAX_OVERSHOOT."""
    if not math.isfinite(start) or start < 0:
        raise AudioError(f"invalid segment start {start}", source=source, utt_id=utt_id)
    if end is not None and end == -1:
        end = None
    if end is not None and (not math.isfinite(end) or end <= start):
        raise AudioError(
            f"invalid segment: end {end} is not after start {start}", source=source, utt_id=utt_id
        )
    first = round(start * sr)
    last = n_frames if end is None else first + round((end - start) * sr)  # length = dur * sr
    total = n_frames / sr
    if last > n_frames:
        over = (last - n_frames) / sr
        if over > MAX_OVERSHOOT:
            raise AudioError(
                f"segment [{start}, {end}] ends {over:.3f} s after the recording ({total:.3f} s);"
                f" at most {MAX_OVERSHOOT} s is tolerated",
                source=source,
                utt_id=utt_id,
            )
        last = n_frames
    if first >= last:
        raise AudioError(
            f"segment [{start}, {end}] holds no samples (recording is {total:.3f} s)",
            source=source,
            utt_id=utt_id,
        )
    return first, last


def wav_shortfall(path: PathLike) -> tuple[int, int] | None:
    """``(declared, present)`` data bytes of a RIFF/WAVE file cut short, else None.

    libsndfile silently reads what is there; this compares the ``data`` chunk's size with the
    bytes that follow it. Sizes 0 and 0xFFFFFFFF (streamed WAVs: size unknown) are not checked.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        total = os.fstat(f.fileno()).st_size
        pos = 12
        while pos + 8 <= total:
            f.seek(pos)
            chunk = f.read(8)
            size = struct.unpack("<I", chunk[4:8])[0]
            if chunk[:4] == b"data":
                present = total - pos - 8
                if size in (0, 0xFFFFFFFF) or size <= present:
                    return None
                return size, present
            pos += 8 + size + (size & 1)
    return None


def _check_complete(
    f: sf.SoundFile, path: str, got: int, wanted: int, source: str, utt_id: str | None
) -> None:
    """Raise AudioError when a file is truncated (see :func:`wav_shortfall`) or read short."""
    short = wav_shortfall(path) if f.format == "WAV" else None
    if short is not None:
        declared, present = short
        raise AudioError(
            f"truncated file: its WAV header declares {declared} bytes of audio, the file holds "
            f"{present}",
            source=source,
            utt_id=utt_id,
        )
    if got < wanted:
        raise AudioError(
            f"truncated file: read {got} of the {wanted} frames it declares",
            source=source,
            utt_id=utt_id,
        )


def _read_file(
    path: str, start: float, end: float | None, source: str, utt_id: str | None
) -> tuple[np.ndarray, int]:
    if not os.path.exists(path):
        hint = ""
        if ":" in path and path.rsplit(":", 1)[1].isdigit():
            hint = " (Kaldi archive offsets 'file:offset' are not supported)"
        raise AudioError("file not found" + hint, source=source, utt_id=utt_id)
    try:
        with sf.SoundFile(path) as f:
            sr = int(f.samplerate)
            if f.frames == 0:
                raise AudioError("audio has no samples", source=source, utt_id=utt_id)
            if start == 0 and end is None:
                first, last = 0, f.frames
            else:
                first, last = _span(start, end, f.frames, sr, source, utt_id)
            if first:
                f.seek(first)
            frames = f.read(last - first, dtype="float32", always_2d=True)
            _check_complete(f, path, len(frames), last - first, source, utt_id)
            return frames, sr
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, EOFError) as e:
        raise AudioError(f"cannot read audio: {e}", source=source, utt_id=utt_id) from None


def _finish(
    frames: np.ndarray, sr: int, sample_rate: int, source: str, utt_id: str | None
) -> np.ndarray:
    """Check, down-mix, resample and clip native-rate frames."""
    if frames.size == 0:
        raise AudioError("audio has no samples", source=source, utt_id=utt_id)
    audio = frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0]
    if not np.isfinite(audio).all():
        bad = int((~np.isfinite(audio)).sum())
        raise AudioError(f"{bad} non-finite (NaN/Inf) samples", source=source, utt_id=utt_id)
    peak = float(np.abs(audio).max())
    if peak > 1.0 + 1e-6:
        log.warning("utterance %s (%s): peak %.3g > 1, clipped", utt_id or "?", source, peak)
    if sr != sample_rate:
        audio = soxr.resample(audio, sr, sample_rate, quality=RESAMPLE_QUALITY)
    return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# public functions


def read_audio(
    source: str,
    *,
    start: float = 0.0,
    end: float | None = None,
    sample_rate: int = SAMPLE_RATE,
    utt_id: str | None = None,
) -> np.ndarray:
    """Read ``source`` (a path or ``cmd |``), cut [start, end) seconds, as float32 mono."""
    return _read(source, start, end, sample_rate, utt_id, None)


def _read(
    source: str,
    start: float,
    end: float | None,
    sample_rate: int,
    utt_id: str | None,
    pipe_cache: dict[str, tuple[np.ndarray, int]] | None,
) -> np.ndarray:
    source = source.strip()
    if is_pipe(source):
        cached = pipe_cache.get(source) if pipe_cache is not None else None
        if cached is not None:
            frames, sr = cached
        else:
            frames, sr = _decode_bytes(_run_pipe(source, utt_id), source, utt_id)
            if pipe_cache is not None:
                pipe_cache.clear()  # keep one recording: segments of a recording are adjacent
                pipe_cache[source] = (frames, sr)
        if len(frames) == 0:
            raise AudioError("audio has no samples", source=source, utt_id=utt_id)
        if start != 0 or end is not None:
            first, last = _span(start, end, len(frames), sr, source, utt_id)
            frames = frames[first:last]
    else:
        frames, sr = _read_file(source, start, end, source, utt_id)
    return _finish(frames, sr, sample_rate, source, utt_id)


def decode_audio(
    data: bytes | BinaryIO,
    *,
    sample_rate: int = SAMPLE_RATE,
    utt_id: str | None = None,
    source: str = "<bytes>",
) -> np.ndarray:
    """Decode an in-memory audio file (WAV, FLAC, …) to float32 mono at ``sample_rate``."""
    raw = data if isinstance(data, bytes | bytearray) else data.read()
    if not raw:
        raise AudioError("audio has no bytes", source=source, utt_id=utt_id)
    frames, sr = _decode_bytes(bytes(raw), source, utt_id)
    return _finish(frames, sr, sample_rate, source, utt_id)


def audio_duration(source: str, *, utt_id: str | None = None) -> float:
    """Duration in seconds: from the header for files, by running and decoding for pipes."""
    source = source.strip()
    if is_pipe(source):
        frames, sr = _decode_bytes(_run_pipe(source, utt_id), source, utt_id)
        n = len(frames)
    else:
        if not os.path.exists(source):
            raise AudioError("file not found", source=source, utt_id=utt_id)
        try:
            info = sf.info(source)
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
            raise AudioError(f"cannot read audio: {e}", source=source, utt_id=utt_id) from None
        n, sr = info.frames, info.samplerate
    if n == 0:
        raise AudioError("audio has no samples", source=source, utt_id=utt_id)
    return n / sr


def encode_audio(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, fmt: str = "wav") -> bytes:
    """Encode samples as an in-memory 16-bit ``wav`` or ``flac`` file."""
    buf = io.BytesIO()
    sf.write(buf, _to_pcm_ready(audio), sample_rate, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue()


def write_wav(path: PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM WAV atomically (samples clipped to [-1, 1]). Encoded in memory first, so
    that a failed write (a full disk) is an ``OSError`` naming ``path`` with its errno, not
    soundfile's ``AssertionError`` on a short write."""
    atomic_write_bytes(path, encode_audio(audio, sample_rate))


def _to_pcm_ready(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim not in (1, 2) or audio.size == 0:
        raise ValueError(f"expected non-empty (samples,) or (samples, channels), got {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN/Inf samples")
    return np.clip(audio, -1.0, 1.0)


# --------------------------------------------------------------------------------------------
# data dirs


class AudioReader:
    """Random access to the utterances of a data dir (``wav.scp`` with or without ``segments``).

    The last pipe's decoded output is kept, so the segments of a piped recording (adjacent in
    C order when ids start with the recording id) run its command once. Threads may share a
    reader (at worst a pipe runs twice).
    """

    def __init__(self, datadir: DataDir | PathLike, sample_rate: int = SAMPLE_RATE):
        self.datadir = datadir if isinstance(datadir, DataDir) else DataDir(datadir)
        self.sample_rate = sample_rate
        self.wav_scp = self.datadir.wav_scp()
        self.segments: dict[str, Segment] | None = (
            self.datadir.segments() if self.datadir.has_segments else None
        )
        keys = self.segments if self.segments is not None else self.wav_scp
        self.utt_ids: list[str] = c_sorted(keys)
        self._utt2dur: dict[str, float] | None = None
        self._pipe_cache: dict[str, tuple[np.ndarray, int]] = {}

    def __len__(self) -> int:
        return len(self.utt_ids)

    def __contains__(self, utt_id: object) -> bool:
        keys = self.segments if self.segments is not None else self.wav_scp
        return utt_id in keys

    def source(self, utt_id: str) -> tuple[str, float, float | None]:
        """``(wav.scp value, start, end)`` of an utterance (end None: to the end)."""
        if self.segments is None:
            if utt_id not in self.wav_scp:
                raise KeyError(f"utterance {utt_id!r} not in {self.datadir.file('wav.scp')}")
            return self.wav_scp[utt_id], 0.0, None
        if utt_id not in self.segments:
            raise KeyError(f"utterance {utt_id!r} not in {self.datadir.file('segments')}")
        seg = self.segments[utt_id]
        if seg.reco not in self.wav_scp:
            raise DataDirError(
                f"recording {seg.reco!r} of utterance {utt_id!r} is not in wav.scp",
                self.datadir.file("segments"),
            )
        return self.wav_scp[seg.reco], seg.start, None if seg.end == -1 else seg.end

    def __call__(self, utt_id: str) -> np.ndarray:
        source, start, end = self.source(utt_id)
        return _read(source, start, end, self.sample_rate, utt_id, self._pipe_cache)

    def duration(self, utt_id: str) -> float:
        """Seconds: from ``utt2dur`` if present, else segments end - start, else the header."""
        if self._utt2dur is None:
            self._utt2dur = self.datadir.utt2dur() if self.datadir.exists("utt2dur") else {}
        if utt_id in self._utt2dur:
            return self._utt2dur[utt_id]
        source, start, end = self.source(utt_id)
        if end is not None:
            return end - start
        return audio_duration(source, utt_id=utt_id) - start


def format_seconds(seconds: float) -> str:
    """A duration for Kaldi files: microsecond precision, no trailing zeros (``1.25``, ``3``)."""
    return f"{seconds:.6f}".rstrip("0").rstrip(".")


def compute_utt2dur(datadir: DataDir | PathLike, *, write: bool = True) -> dict[str, float]:
    """Utterance durations, as Kaldi's ``utils/data/get_utt2dur.sh`` computes them.

    With ``segments``: end - start, the end clipped to the recording's as :func:`read_audio`
    clips it (overshoot up to :data:`MAX_OVERSHOOT`, an error beyond; -1 is the recording's end).
    Recording durations (headers; pipes decoded) go to ``reco2dur``, reused when it already lists
    every recording. Without segments: header durations. ``write`` writes ``utt2dur`` (and
    ``reco2dur``).
    """
    d = datadir if isinstance(datadir, DataDir) else DataDir(datadir)
    wav_scp = d.wav_scp()
    if not d.has_segments:
        utt2dur = {
            utt: audio_duration(src, utt_id=utt)
            for utt, src in tqdm(wav_scp.items(), desc=f"utt2dur {d.path}", unit="utt")
        }
        if write:
            write_kv(d.file("utt2dur"), {u: format_seconds(v) for u, v in utt2dur.items()})
        return utt2dur

    segments = d.segments()
    reco2dur = _reco2dur(d, wav_scp)
    utt2dur = {}
    for utt, seg in segments.items():
        if seg.reco not in reco2dur:
            raise DataDirError(
                f"recording {seg.reco!r} of utterance {utt!r} is not in wav.scp", d.file("segments")
            )
        total = reco2dur[seg.reco]
        end = total if seg.end == -1 else min(seg.end, total)
        if end <= seg.start or seg.end - total > MAX_OVERSHOOT:
            raise DataDirError(
                f"segment {seg.start} .. {seg.end} of {utt!r} does not fit recording "
                f"{seg.reco!r} ({total:.3f} s; overshoot tolerated: {MAX_OVERSHOOT} s)",
                d.file("segments"),
            )
        utt2dur[utt] = end - seg.start
    if write:
        write_kv(d.file("reco2dur"), {r: format_seconds(v) for r, v in reco2dur.items()})
        write_kv(d.file("utt2dur"), {u: format_seconds(v) for u, v in utt2dur.items()})
    return utt2dur


def _reco2dur(d: DataDir, wav_scp: Mapping[str, str]) -> dict[str, float]:
    if d.exists("reco2dur"):
        old = d.read_floats("reco2dur")
        if set(old) == set(wav_scp):
            return old
    out = {}
    for reco, src in tqdm(wav_scp.items(), desc=f"reco2dur {d.path}", unit="reco"):
        try:
            out[reco] = audio_duration(src)
        except AudioError as e:
            raise AudioError(e.reason, source=e.source, reco_id=reco) from None
    return out


__all__ = [
    "MAX_OVERSHOOT",
    "RESAMPLE_QUALITY",
    "SAMPLE_RATE",
    "AudioError",
    "AudioReader",
    "audio_duration",
    "compute_utt2dur",
    "decode_audio",
    "encode_audio",
    "format_seconds",
    "is_pipe",
    "read_audio",
    "wav_shortfall",
    "write_wav",
]
