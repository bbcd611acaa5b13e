"""Stage ``format``: turn any data dir into 16 kHz mono WAV files, one per utterance.

Pipes and segments are resolved once here, so later stages read plain files. Optional
duration limits (used on train/dev, never on test) drop utterances with a logged count.
Rerunning reuses the WAV files already written (each is written atomically).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import soundfile as sf
from tqdm.auto import tqdm

from speechdistill.audio import SAMPLE_RATE, AudioError, AudioReader, write_wav
from speechdistill.datadir.fix import load_tables, restrict, write_tables
from speechdistill.utils import PathLike, atomic_write_text, locks_run

log = logging.getLogger(__name__)

#: Files that describe the source audio and are replaced by the formatted ones.
SOURCE_AUDIO_FILES = ("wav.scp", "segments", "reco2dur", "reco2file_and_channel", "utt2num_frames")


@dataclass
class FormatReport:
    """Counts of a format run (also written as ``DST/format.json``)."""

    total: int = 0
    kept: int = 0
    reused: int = 0
    too_short: list[str] = field(default_factory=list)
    too_long: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    hours: float = 0.0


def _existing_duration(path: Path) -> float | None:
    """Duration of a WAV written by an earlier run, or None when absent or not ours."""
    try:
        info = sf.info(str(path))
    except (OSError, RuntimeError):
        return None
    if info.samplerate != SAMPLE_RATE or info.channels != 1 or info.frames == 0:
        return None
    return info.frames / SAMPLE_RATE


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
    ``utt2dur`` holds their exact durations. Unreadable audio is an error naming the
    utterance, or with ``skip_bad`` a logged skip listed in ``format.json``.
    """
    src, dst = Path(src), Path(dst)
    audio_dir = Path(audio_dir) if audio_dir is not None else dst / "wav"
    audio_dir.mkdir(parents=True, exist_ok=True)
    reader = AudioReader(src)
    report = FormatReport(total=len(reader))
    wav_scp: dict[str, str] = {}
    utt2dur: dict[str, float] = {}
    for utt in tqdm(reader.utt_ids, desc=f"format {src.name}", unit="utt"):
        path = (audio_dir / f"{utt}.wav").resolve()
        duration = _existing_duration(path)
        if duration is not None:
            report.reused += 1
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
        if min_duration is not None and duration < min_duration:
            report.too_short.append(utt)
            continue
        if max_duration is not None and duration > max_duration:
            report.too_long.append(utt)
            continue
        wav_scp[utt] = str(path)
        utt2dur[utt] = duration
    if not wav_scp:
        raise ValueError(f"format: no utterance of {src} left (see the log for why)")

    tables, kinds = load_tables(src)
    for name in SOURCE_AUDIO_FILES:
        tables.pop(name, None)
        kinds.pop(name, None)
    kinds.update({"wav.scp": "utt", "utt2dur": "utt"})
    tables["wav.scp"] = wav_scp
    tables["utt2dur"] = {u: f"{d:.6f}".rstrip("0").rstrip(".") for u, d in utt2dur.items()}
    dst.mkdir(parents=True, exist_ok=True)
    for stale in SOURCE_AUDIO_FILES:
        (dst / stale).unlink(missing_ok=True)
    write_tables(dst, restrict(tables, kinds, wav_scp))

    report.kept = len(wav_scp)
    report.hours = round(sum(utt2dur.values()) / 3600, 4)
    atomic_write_text(dst / "format.json", json.dumps(asdict(report), indent=2) + "\n")
    log.info(
        "format %s: kept %d of %d utterances (%.2f h); dropped %d too short, %d too long, "
        "%d unreadable",
        src,
        report.kept,
        report.total,
        report.hours,
        len(report.too_short),
        len(report.too_long),
        len(report.unreadable),
    )
    return report
