"""Stage ``format``: turn any data dir into 16 kHz mono WAV files, one per utterance.

Pipes and segments are resolved once here, so later stages read plain files. Optional
duration limits (used on train/dev, never on test) drop utterances with a logged count.
A rerun reuses a WAV file only when it is provably the one this run would write: the manifest
``AUDIO_DIR/format_manifest.json`` records, per utterance, the ``wav.scp`` entry, the segment
times, the source file's size and mtime, the sample rate and the WAV's own size and mtime; any
difference rewrites the file (written atomically). Utterance ids must be safe file names
(:func:`speechdistill.datadir.check_id`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from speechdistill.audio import SAMPLE_RATE, AudioError, AudioReader, is_pipe, write_wav
from speechdistill.datadir import DataDirError
from speechdistill.datadir.fix import load_tables, restrict, write_tables
from speechdistill.utils import PathLike, atomic_write_text, file_stat, locks_run

log = logging.getLogger(__name__)

#: Beside the WAVs: what each was written from (see the module docstring).
MANIFEST = "format_manifest.json"
#: Bump when the WAVs format writes change, so older ones are rewritten.
MANIFEST_VERSION = 1

#: Files that describe the source audio and are replaced by the formatted ones.
SOURCE_AUDIO_FILES = ("wav.scp", "segments", "reco2dur", "reco2file_and_channel", "utt2num_frames")


@dataclass
class FormatReport:
    """Counts of a format run (written as ``DST/format.json``, all but ``reused``)."""

    total: int = 0
    kept: int = 0
    reused: int = 0
    too_short: list[str] = field(default_factory=list)
    too_long: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    hours: float = 0.0


def _origin(reader: AudioReader, utt: str) -> dict[str, Any]:
    """What the WAV of ``utt`` is made from; equal origins give byte-identical WAVs."""
    source, start, end = reader.source(utt)
    stripped = source.strip()
    return {
        "source": source,
        "source_stat": None if is_pipe(stripped) else file_stat(stripped),
        "start": start,
        "end": end,
        "sample_rate": SAMPLE_RATE,
    }


def _load_manifest(audio_dir: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((audio_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        return {}
    utts = data.get("utterances")
    return utts if isinstance(utts, dict) else {}


def _reusable(entry: dict[str, Any] | None, origin: dict[str, Any], path: Path) -> float | None:
    """Duration of the WAV an earlier run wrote from the same origin, else None."""
    if not entry or entry.get("origin") != origin or entry.get("wav_stat") != file_stat(path):
        return None
    frames = entry.get("frames")
    return frames / SAMPLE_RATE if isinstance(frames, int) and frames > 0 else None


@locks_run("dst")
def format_data_dir(
    src: PathLike,
    dst: PathLike,
    *,
    audio_dir: PathLike | None = None,
    min_duration: float | None = None,
    max_duration: float | None = None,
    skip_bad: bool = False,
) -> FormatReport:
    """Write each utterance of ``src`` as ``audio_dir/<utt>.wav`` and a data dir ``dst`` of them.

    ``dst`` keeps every utterance-, speaker-keyed file of ``src`` (``text``, ``text.*``,
    ``utt2*`` …) restricted to the kept utterances; ``wav.scp`` points at the new files and
    ``utt2dur`` holds their exact durations; with ``segments``, ``utt2reco`` keeps each
    utterance's recording. An utterance of ``utt2spk`` without audio (no segment, no ``wav.scp``
    entry) is an error naming it. Unreadable audio (missing, corrupt, truncated, empty, NaN, a
    segment ending more than ``MAX_OVERSHOOT`` s past its recording) is an error naming the
    utterance, or with ``skip_bad`` a logged skip listed in ``format.json``. An unsafe utterance id is an error before any audio is read.
    """
    src, dst = Path(src), Path(dst)
    audio_dir = Path(audio_dir) if audio_dir is not None else dst / "wav"
    reader = AudioReader(src)  # reading wav.scp/segments checks every id (check_id)
    tables, kinds = load_tables(src)  # before the long part: a missing utt2spk fails now
    _check_every_utterance_has_audio(src, reader, tables["utt2spk"])
    audio_dir.mkdir(parents=True, exist_ok=True)
    old_manifest = _load_manifest(audio_dir)
    manifest: dict[str, dict[str, Any]] = {}
    report = FormatReport(total=len(reader))
    wav_scp: dict[str, str] = {}
    utt2dur: dict[str, float] = {}
    try:
        for utt in tqdm(reader.utt_ids, desc=f"format {src.name}", unit="utt"):
            path = (audio_dir / f"{utt}.wav").resolve()
            origin = _origin(reader, utt)
            duration = _reusable(old_manifest.get(utt), origin, path)
            if duration is not None:
                report.reused += 1
                manifest[utt] = old_manifest[utt]
            else:
                try:
                    audio = reader(utt)
                except AudioError as e:
                    if not skip_bad:
                        raise
                    log.warning("skipping %s: %s", utt, e)
                    report.unreadable[utt] = str(e)
                    continue
                write_wav(path, audio)
                duration = len(audio) / SAMPLE_RATE
                manifest[utt] = {
                    "origin": origin,
                    "frames": len(audio),
                    "wav_stat": file_stat(path),
                }
            if min_duration is not None and duration < min_duration:
                report.too_short.append(utt)
                continue
            if max_duration is not None and duration > max_duration:
                report.too_long.append(utt)
                continue
            wav_scp[utt] = str(path)
            utt2dur[utt] = duration
    finally:  # also after an error: what was written stays reusable
        kept = {
            u: e
            for u, e in old_manifest.items()
            if u not in manifest and u not in report.unreadable
        }
        _write_manifest(audio_dir, {**kept, **manifest})
    if not wav_scp:
        raise ValueError(f"format: no utterance of {src} left (see the log for why)")

    for name in SOURCE_AUDIO_FILES:
        tables.pop(name, None)
        kinds.pop(name, None)
    if reader.segments is not None:  # the recording of each cut-out utterance stays known
        tables["utt2reco"] = {u: seg.reco for u, seg in reader.segments.items()}
        kinds["utt2reco"] = "utt"
    kinds.update({"wav.scp": "utt", "utt2dur": "utt"})
    tables["wav.scp"] = wav_scp
    tables["utt2dur"] = {u: f"{d:.6f}".rstrip("0").rstrip(".") for u, d in utt2dur.items()}
    dst.mkdir(parents=True, exist_ok=True)
    for stale in SOURCE_AUDIO_FILES:
        (dst / stale).unlink(missing_ok=True)
    write_tables(dst, restrict(tables, kinds, wav_scp))

    report.kept = len(wav_scp)
    report.hours = round(sum(utt2dur.values()) / 3600, 4)
    stats = {k: v for k, v in asdict(report).items() if k != "reused"}  # same on every rerun
    atomic_write_text(dst / "format.json", json.dumps(stats, indent=2) + "\n")
    log.info(
        "format %s: kept %d of %d utterances (%.2f h; %d WAVs reused); dropped %d too short, "
        "%d too long, %d unreadable",
        src,
        report.kept,
        report.total,
        report.hours,
        report.reused,
        len(report.too_short),
        len(report.too_long),
        len(report.unreadable),
    )
    return report


def _check_every_utterance_has_audio(
    src: Path, reader: AudioReader, utt2spk: dict[str, str]
) -> None:
    """An utterance of ``utt2spk`` without a segment (or ``wav.scp`` entry) is an error naming
    it: dropping it would lose its text silently."""
    missing = [u for u in utt2spk if u not in reader]
    if missing:
        name = "segments" if reader.segments is not None else "wav.scp"
        raise DataDirError(
            f"utterance {missing[0]!r} of utt2spk is not in {name} ({len(missing)} such): "
            "its audio is unknown",
            src / name,
        )


def _write_manifest(audio_dir: Path, utterances: dict[str, dict[str, Any]]) -> None:
    data = {"version": MANIFEST_VERSION, "utterances": dict(sorted(utterances.items()))}
    text = json.dumps(data, separators=(",", ":")) + "\n"
    path = audio_dir / MANIFEST
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):  # a rerun: unchanged
        atomic_write_text(path, text)
