"""Synthesis for mini_en: running espeak-ng, reading its WAV stream, writing 16 kHz WAVs.

Each sentence is synthesised on its own; a recording is its sentences' samples joined with the
planned pauses (digital silence) between them, written as one WAV, so every utterance's start and
length in its recording are known to the sample. espeak-ng is deterministic for a given command
line, and soxr's resampling is too, so one plan gives byte-identical WAVs.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from data_prep.mini_en.plan import Recording, Utterance
from speechdistill.utils import PathLike, atomic_open

SAMPLE_RATE = 16000


def find_espeak(espeak: str | None = None) -> str:
    """The espeak-ng executable (``espeak`` as a fallback); a clear error when neither exists."""
    for name in [espeak] if espeak else ["espeak-ng", "espeak"]:
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError(
        "espeak-ng not found: install it (Debian/Ubuntu: apt-get install espeak-ng; "
        "`make sysdeps` does) or pass --espeak PATH"
    )


def espeak_version(espeak: str) -> str:
    out = subprocess.run([espeak, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def parse_espeak_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Decode espeak-ng's ``--stdout`` WAV (16-bit PCM mono; the RIFF and data sizes are
    placeholders because a pipe cannot seek, so the samples run to the end of the stream)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("espeak-ng output is not a WAV stream")
    pos, rate = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if cid == b"fmt ":
            fmt, channels = (
                int.from_bytes(data[body + o : body + o + 2], "little") for o in (0, 2)
            )
            rate = int.from_bytes(data[body + 4 : body + 8], "little")
            bits = int.from_bytes(data[body + 14 : body + 16], "little")
            if (fmt, channels, bits) != (1, 1, 16):
                raise ValueError(f"unexpected espeak-ng WAV format {fmt}/{channels}ch/{bits}bit")
        elif cid == b"data":
            if rate is None:
                raise ValueError("espeak-ng WAV has no fmt chunk before its data")
            pcm = data[body:]
            pcm = pcm[: len(pcm) // 2 * 2]
            return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, rate
        pos = body + size + (size & 1)
    raise ValueError("espeak-ng WAV has no data chunk")


def synthesize(utt: Utterance, espeak: str, timeout: float = 120.0) -> np.ndarray:
    """Speak ``utt`` with espeak-ng; 16 kHz mono int16 samples."""
    proc = subprocess.run(
        [espeak, *utt.espeak_args(), "--stdout"],
        input=utt.text.encode("utf-8"),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"espeak-ng failed for {utt.utt} ({utt.voice}): {err}")
    audio, rate = parse_espeak_wav(proc.stdout)
    if audio.size == 0:
        raise RuntimeError(f"espeak-ng produced no audio for {utt.utt} ({utt.voice})")
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ")
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)


def write_wav16(path: PathLike, samples: np.ndarray) -> None:
    """Write int16 samples as a 16 kHz mono 16-bit WAV, atomically."""
    with atomic_open(path, "wb") as f:
        sf.write(f, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")


def synthesize_recording(reco: Recording, espeak: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The samples of ``reco`` (its utterances with the pauses between) and each utterance's
    ``(first, end)`` sample in them."""
    parts: list[np.ndarray] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for i, utt in enumerate(reco.utts):
        if i:
            gap = reco.pauses_ms[i - 1] * SAMPLE_RATE // 1000
            parts.append(np.zeros(gap, dtype=np.int16))
            pos += gap
        samples = synthesize(utt, espeak)
        parts.append(samples)
        spans.append((pos, pos + samples.shape[0]))
        pos += samples.shape[0]
    return np.concatenate(parts), spans


def _synth_one(reco: Recording, path: Path, espeak: str) -> tuple[int, list[tuple[int, int]]]:
    samples, spans = synthesize_recording(reco, espeak)
    write_wav16(path, samples)
    return int(samples.shape[0]), spans


def synthesize_all(
    recordings: Sequence[Recording],
    wav_dir: Path,
    espeak: str,
    nj: int = 2,
    progress: bool = True,
) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """Synthesise ``recordings`` into ``wav_dir/<split>/<reco>.wav`` with ``nj`` concurrent
    espeak-ng processes; returns the samples of each recording and each utterance's
    ``(first, end)`` sample in its recording."""
    from tqdm.auto import tqdm

    reco_samples: dict[str, int] = {}
    spans: dict[str, tuple[int, int]] = {}
    with (
        ThreadPoolExecutor(max_workers=max(1, nj)) as pool,
        # disable=None: a bar only on a terminal
        tqdm(
            total=sum(len(r.utts) for r in recordings),
            desc="espeak-ng",
            unit="utt",
            disable=None if progress else True,
        ) as bar,
    ):
        futures = {
            pool.submit(_synth_one, r, wav_dir / r.split / f"{r.reco}.wav", espeak): r
            for r in recordings
        }
        for fut in as_completed(futures):
            reco = futures[fut]
            reco_samples[reco.reco], reco_spans = fut.result()
            spans.update(zip((u.utt for u in reco.utts), reco_spans, strict=True))
            bar.update(len(reco.utts))
    return reco_samples, spans
