"""``prepare_mini_pt``: plan, synthesise and write mini_pt in the layout of the NURC-SP Hub dataset.

``CORPUS_DIR`` gets what ``huggingface-cli download nilc-nlp/CORAA-NURC-SP-Audio-Corpus`` gives
(see :mod:`data_prep.nurc_sp`): ``{train,dev,test}.tar.gz`` (one 16 kHz mono 16-bit WAV per
segment, ``<split>/<audio_name>_<k>.wav``, cut from its synthesised recording at the CSV's
``start_time``/``end_time``), ``original/audios_<split>_metadata.csv`` (every segment) and
``filtered/audios_<split>_metadata.csv`` (the segments with a transcription), with the corpus'
columns; plus ``README.md`` and ``local/`` (the configuration, the voices, and every segment's
plain sentence and espeak-ng options). Segments are padded with silence to whole milliseconds, so
times are exact to 1 ms. Archives are written with fixed member order, times and owners (gzip
time 0): one seed gives byte-identical files. A previous ``CORPUS_DIR/extracted`` (the archives
extracted by ``data_prep.nurc_sp``) is removed, since the archives change.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import shutil
import tarfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from data_prep.mini_en import seeds
from data_prep.mini_en.plan import Utterance
from data_prep.mini_en.synthesis import SAMPLE_RATE, espeak_version, find_espeak, synthesize
from data_prep.mini_pt.plan import SPLITS, Recording, Segment, plan_corpus
from data_prep.mini_pt.text import load_sentences
from data_prep.mini_pt.voices import VARIANTS, installed_variants
from speechdistill.utils import PathLike, atomic_open, atomic_write_text, claim_dir

log = logging.getLogger(__name__)

#: The owner recorded in ``CORPUS_DIR`` (:func:`~speechdistill.utils.claim_dir`).
OWNER = "data_prep.mini_pt"
#: The metadata columns of the NURC-SP Hub dataset, in its order.
COLUMNS = (
    "audio_name", "file_path", "text", "start_time", "end_time", "duration", "quality",
    "speech_genre", "speech_style", "variety", "accent", "sex", "age_range", "num_speakers",
    "speaker_id",
)  # fmt: skip
#: The members' modification time in the archives (2024-01-01 UTC).
ARCHIVE_MTIME = 1704067200
_MS = SAMPLE_RATE // 1000


def _seconds(ms: int) -> str:
    return repr(round(ms / 1000, 3))


def _utterance(reco: Recording, seg: Segment) -> Utterance:
    v = reco.voices[seg.speaker]
    return Utterance(
        utt=f"{reco.audio_name}_{seg.index}",
        split=reco.split,
        spk=f"{reco.audio_name}_spk{seg.speaker}",
        voice=v.voice,
        text=seg.text,
        speed=seg.speed,
        pitch=seg.pitch,
        amplitude=v.amplitude,
        word_gap=v.word_gap,
        voiceset="seen" if reco.split == "train" else "unseen",
        reco=reco.audio_name,
    )


def _noise(reco: Recording, seg: Segment, seed: int) -> np.ndarray:
    """Faint seeded noise for a segment without transcription."""
    rng = seeds.rng(seed, f"noise-{reco.audio_name}-{seg.index}")
    gen = np.random.default_rng(rng.getrandbits(64))
    return np.round(gen.normal(0, 40, seg.empty_ms * _MS)).astype(np.int16)


def synthesize_recording(
    reco: Recording, espeak: str, seed: int
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The recording's samples and each segment's (start, end) in milliseconds."""
    parts: list[np.ndarray] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for seg, pause in zip(reco.segments, reco.pauses_ms, strict=True):
        parts.append(np.zeros(pause * _MS, dtype=np.int16))
        pos += pause
        samples = synthesize(_utterance(reco, seg), espeak) if seg.text else _noise(reco, seg, seed)
        pad = -samples.shape[0] % _MS  # whole milliseconds
        parts.append(np.concatenate([samples, np.zeros(pad, dtype=np.int16)]))
        ms = (samples.shape[0] + pad) // _MS
        spans.append((pos, pos + ms))
        pos += ms
    parts.append(np.zeros(reco.pauses_ms[-1] * _MS, dtype=np.int16))  # trailing silence
    return np.concatenate(parts), spans


def wav_bytes(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def write_archive(path: Path, split: str, files: dict[str, bytes]) -> None:
    """``files`` (member name → bytes) as a gzipped tar, deterministically, atomically."""
    with (
        atomic_open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar,
    ):
        folder = tarfile.TarInfo(split)
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, ARCHIVE_MTIME
        tar.addfile(folder)
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, ARCHIVE_MTIME
            tar.addfile(info, io.BytesIO(files[name]))


def _rows(reco: Recording, spans: Sequence[tuple[int, int]]) -> list[dict[str, str]]:
    rows = []
    for seg, (start, end) in zip(reco.segments, spans, strict=True):
        rows.append(
            {
                "audio_name": reco.audio_name,
                "file_path": reco.file_path(seg),
                "text": seg.reference,
                "start_time": _seconds(start),
                "end_time": _seconds(end),
                "duration": _seconds(end - start),
                "quality": seg.quality,
                "speech_genre": reco.genre,
                "speech_style": "spontaneous speech",
                "variety": "pt-br",
                "accent": "sp-city",
                "sex": reco.sex,
                "age_range": reco.age_range,
                "num_speakers": str(len(reco.voices)),
                "speaker_id": str(seg.speaker),
            }
        )
    return rows


def write_metadata(path: Path, rows: Sequence[dict[str, str]]) -> None:
    with atomic_open(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _write_local(local: Path, plan: dict[str, list[Recording]], config: dict) -> None:
    voices = ["audio_name\tspeaker_id\tvoice\tsex\tspeed\tpitch\tamplitude\tword_gap"]
    segments = ["file_path\tspeaker_id\tespeak_args\tsentence"]
    for split in SPLITS:
        for reco in plan[split]:
            for i, v in enumerate(reco.voices):
                voices.append(
                    f"{reco.audio_name}\t{i}\t{v.voice}\t{v.sex}\t{v.speed}\t{v.pitch}\t"
                    f"{v.amplitude}\t{v.word_gap}"
                )
            for seg in reco.segments:
                args = " ".join(_utterance(reco, seg).espeak_args()) if seg.text else "-"
                segments.append(f"{reco.file_path(seg)}\t{seg.speaker}\t{args}\t{seg.text}")
    atomic_write_text(local / "voices.tsv", "\n".join(voices) + "\n")
    atomic_write_text(local / "segments.tsv", "\n".join(segments) + "\n")
    atomic_write_text(local / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")


README = """# mini_pt

A synthetic stand-in for the NURC-SP Audio Corpus (nilc-nlp/CORAA-NURC-SP-Audio-Corpus) in its
layout, written by `python -m data_prep.mini_pt` (speechdistill): Brazilian Portuguese sentences
written for speechdistill, spoken by espeak-ng voices. Not speech of real people. `local/` has
the configuration, the voices and each segment's plain sentence.
"""


def prepare_mini_pt(
    corpus_dir: PathLike,
    *,
    num_train: int = 300,
    num_dev: int = 50,
    num_test: int = 100,
    seed: int = 0,
    nj: int = 2,
    text: Sequence[PathLike] | None = None,
    variants: Sequence[str] | None = None,
    espeak: str | None = None,
) -> dict[str, list[Recording]]:
    """Synthesise mini_pt into ``corpus_dir`` (see the module doc); returns the plan."""
    t0 = time.monotonic()
    out = claim_dir(Path(corpus_dir).resolve(), OWNER)
    exe = find_espeak(espeak)
    variants = installed_variants(exe, list(VARIANTS) if variants is None else variants)
    sentences = load_sentences(text)
    plan, train_var, held = plan_corpus(
        sentences,
        num_train=num_train,
        num_dev=num_dev,
        num_test=num_test,
        seed=seed,
        variants=variants,
    )
    if (out / "extracted").exists():
        log.info("removing %s (an extraction of the previous archives)", out / "extracted")
        shutil.rmtree(out / "extracted")
    seconds = 0.0
    with ThreadPoolExecutor(max_workers=max(1, nj)) as pool:
        for split in SPLITS:
            recos = plan[split]
            done = pool.map(lambda r: synthesize_recording(r, exe, seed), recos)
            files: dict[str, bytes] = {}
            rows: list[dict[str, str]] = []
            for reco, (samples, spans) in zip(recos, done, strict=True):
                seconds += samples.shape[0] / SAMPLE_RATE
                for seg, (start, end) in zip(reco.segments, spans, strict=True):
                    files[reco.file_path(seg)] = wav_bytes(samples[start * _MS : end * _MS])
                rows += _rows(reco, spans)
            write_archive(out / f"{split}.tar.gz", split, files)
            write_metadata(out / "original" / f"audios_{split}_metadata.csv", rows)
            write_metadata(
                out / "filtered" / f"audios_{split}_metadata.csv", [r for r in rows if r["text"]]
            )
            log.info(
                "%s: %d recordings, %d segments (%d without transcription)",
                split, len(recos), len(rows), sum(not r["text"] for r in rows),
            )  # fmt: skip
    config = {
        "corpus": "mini_pt",
        "seed": seed,
        "num_train": num_train,
        "num_dev": num_dev,
        "num_test": num_test,
        "text": None if text is None else [str(p) for p in text],
        "num_sentences": len(sentences),
        "train_variants": train_var,
        "held_out_variants": held,
        "espeak": espeak_version(exe),
        "sample_rate": SAMPLE_RATE,
        "hours": round(seconds / 3600, 4),
    }
    atomic_write_text(out / "README.md", README)
    _write_local(out / "local", plan, config)
    log.info("wrote %s: %.2f h of recordings in %.1f s", out, seconds / 3600, time.monotonic() - t0)
    return plan
