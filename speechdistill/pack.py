"""Pack consecutive utterances into windows of at most 30 s (``speechdistill data pack``).

Whisper sees 30 s at a time; a window labelled once (with timestamps) runs the encoder once for
all its utterances, as distil-whisper and the NURC-SP setup do. Utterances are grouped

- by recording from ``segments``, in segment start order;
- else by the recording of ``utt2reco`` (``<utt> <recording>``), in order of the utterance id
  without its speaker prefix (NURC-SP's ``<spk>-<audio>_<start>_<end>`` ids order by time);
- else by speaker (``utt2spk``), in utterance-id order;

and joined greedily, in that order, into windows of at most ``max_duration`` seconds.

With ``segments`` a window is a new segment of the same recording, from its first utterance's
start to its last one's end (the real pauses included); a pause over ``max_gap`` starts a new
window (untranscribed audio may hold speech). No audio is written. Without ``segments`` a
window's audio is its utterances' audio joined with ``gap`` seconds of silence, written as
``OUT/wav/<window>.wav`` (16 kHz mono); a rerun rewrites only WAVs whose sources changed
(``OUT/wav/pack_manifest.json``).

OUT is a Kaldi data dir: ``wav.scp`` (+ ``segments``, ``reco2dur``), ``utt2spk``/``spk2utt``,
``utt2dur``, ``text`` (the utterances' texts joined, when IN has text), ``window2utts``
(``<window> <utt1> <utt2> …``) and ``pack.json`` (settings and counts). A window's id is its
first utterance's id and its speaker theirs when its utterances share one; else the id is
``<recording>-<first utterance>`` and the speaker the recording. Other utterance-keyed files of
IN (``utt2*``, ``text.*``) are not carried: they describe utterances, not windows.

Decisions, each logged and counted in ``pack.json``: an utterance longer than ``max_duration``
is a window of its own (``too_long``; pseudo-labelling skips it beyond 30 s); with segments, an
utterance whose segment overlaps another's is a window of its own, and so is the other
(``overlapping``: two voices at once have no single word order). Errors naming the culprit: a
segment ending past its recording (beyond :data:`~speechdistill.audio.MAX_OVERSHOOT`), an
utterance without a segment or ``utt2reco`` entry, a recording missing from ``wav.scp``.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from speechdistill.audio import (
    MAX_OVERSHOOT,
    SAMPLE_RATE,
    AudioReader,
    audio_duration,
    format_seconds,
    is_pipe,
    write_wav,
)
from speechdistill.datadir import DataDir, DataDirError, Segment, c_sorted, check_id, validate
from speechdistill.datadir.fix import write_tables
from speechdistill.datadir.validate import check_stage_input
from speechdistill.utils import (
    CLAIM_IGNORED,
    PathLike,
    atomic_write_text,
    check_owned,
    claim_dir,
    file_stat,
    run_lock,
)
from speechdistill.whisper.tokens import WINDOW_SECONDS

__all__ = ["OWNER", "REPORT_FILE", "WINDOW_FILE", "PackReport", "pack_data_dir", "window_utts"]

log = logging.getLogger(__name__)

#: The command that owns a packed dir (:func:`speechdistill.utils.claim_dir`).
OWNER = "data pack"
#: ``<window> <utt1> <utt2> …``: each window's utterances in order.
WINDOW_FILE = "window2utts"
#: Settings and counts of a pack run.
REPORT_FILE = "pack.json"
#: Beside the concatenated WAVs: what each was made from.
MANIFEST = "pack_manifest.json"
MANIFEST_VERSION = 1
#: Files a pack run writes; others of a previous run in the other mode are removed.
OUT_FILES = ("wav.scp", "segments", "reco2dur", "text", "utt2spk", "spk2utt", "utt2dur")


@dataclass
class PackReport:
    """Settings and counts of a pack run (``OUT/pack.json``, all but the WAV counts)."""

    max_duration: float
    max_gap: float
    gap: float
    grouped_by: str = ""
    mode: str = ""
    windows: int = 0
    utterances: int = 0
    packed: int = 0
    alone: int = 0
    too_long: list[str] = field(default_factory=list)
    overlapping: list[str] = field(default_factory=list)
    utterance_seconds: float = 0.0
    window_seconds: float = 0.0
    wavs_written: int = 0
    wavs_reused: int = 0


@dataclass
class _Utt:
    id: str
    spk: str
    start: float
    end: float

    @property
    def dur(self) -> float:
        return self.end - self.start


def _strip_speaker(utt: str, spk: str) -> str:
    rest = utt[len(spk) :] if utt.startswith(spk) else utt
    return rest.lstrip("-_")


def _groups(d: DataDir, reco_dur: dict[str, float] | None) -> tuple[str, dict[str, list[_Utt]]]:
    """``(grouped_by, {group: utterances in order})``; times are segment times with segments,
    else ``0 .. duration``."""
    utt2spk = d.utt2spk()
    groups: dict[str, list[_Utt]] = {}
    if reco_dur is not None:
        segments = d.segments()
        for utt in c_sorted(utt2spk):
            if utt not in segments:
                raise DataDirError(
                    f"utterance {utt!r} has no segment (no recording)", d.file("segments")
                )
            seg = segments[utt]
            if seg.reco not in reco_dur:
                raise DataDirError(
                    f"recording {seg.reco!r} of utterance {utt!r} is not in wav.scp",
                    d.file("segments"),
                )
            total = reco_dur[seg.reco]
            end = total if seg.end == -1 else seg.end
            if end - total > MAX_OVERSHOOT:
                raise DataDirError(
                    f"segment of {utt!r} ends at {end:g} s, after its recording {seg.reco!r} "
                    f"({total:.3f} s; overshoot tolerated: {MAX_OVERSHOOT} s)",
                    d.file("segments"),
                )
            groups.setdefault(seg.reco, []).append(
                _Utt(utt, utt2spk[utt], seg.start, min(end, total))
            )
        for utts in groups.values():
            utts.sort(key=lambda u: (u.start, u.end, u.id.encode()))
        return "segments", groups

    reader = AudioReader(d)
    if d.exists("utt2reco"):
        utt2reco = d.read("utt2reco")
        for utt in c_sorted(utt2spk):
            if utt not in utt2reco:
                raise DataDirError(f"utterance {utt!r} has no recording", d.file("utt2reco"))
            check_id(utt2reco[utt], "recording id", d.file("utt2reco"))
            groups.setdefault(utt2reco[utt], []).append(_Utt(utt, utt2spk[utt], 0.0, 0.0))
        for utts in groups.values():
            utts.sort(key=lambda u: (_strip_speaker(u.id, u.spk).encode(), u.id.encode()))
        grouped_by = "utt2reco"
    else:
        for utt in c_sorted(utt2spk):
            groups.setdefault(utt2spk[utt], []).append(_Utt(utt, utt2spk[utt], 0.0, 0.0))
        grouped_by = "utt2spk"
    for utts in tqdm(groups.values(), desc=f"durations {d.path.name}", unit="group"):
        for u in utts:
            u.end = reader.duration(u.id)
    return grouped_by, groups


def _overlapping(utts: list[_Utt]) -> set[str]:
    """Ids of utterances (sorted by start) whose span overlaps another's."""
    out: set[str] = set()
    reach = -1.0
    for i, u in enumerate(utts):
        if u.start < reach:
            out.add(u.id)
            out.update(v.id for v in utts[:i] if v.end > u.start)
        reach = max(reach, u.end)
    return out


def _windows(utts: list[_Utt], report: PackReport, segmented: bool) -> list[list[_Utt]]:
    """Greedy windows of consecutive utterances (see the module docstring)."""
    overlap = _overlapping(utts) if segmented else set()
    out: list[list[_Utt]] = []
    cur: list[_Utt] = []
    span = 0.0
    for u in utts:
        alone = u.dur > report.max_duration or u.id in overlap
        if alone:
            (report.too_long if u.dur > report.max_duration else report.overlapping).append(u.id)
        if cur and not alone:
            if segmented:
                new_span = u.end - cur[0].start
                fits = u.start - cur[-1].end <= report.max_gap
            else:
                new_span = span + report.gap + u.dur
                fits = True
            if fits and new_span <= report.max_duration:
                cur.append(u)
                span = new_span
                continue
        if cur:
            out.append(cur)
        cur, span = [u], u.dur
        if alone:
            out.append(cur)
            cur, span = [], 0.0
    if cur:
        out.append(cur)
    return out


def _window_id(window: list[_Utt], group: str) -> tuple[str, str]:
    """``(window id, speaker)``."""
    speakers = {u.spk for u in window}
    if len(speakers) == 1:
        return window[0].id, window[0].spk
    return f"{group}-{window[0].id}", group


def _origin(reader: AudioReader, window: list[_Utt], gap: float) -> dict[str, Any]:
    """What a concatenated WAV is made from; equal origins give identical WAVs."""
    parts = []
    for u in window:
        source, start, end = reader.source(u.id)
        stripped = source.strip()
        parts.append([source, None if is_pipe(stripped) else file_stat(stripped), start, end])
    return {"parts": parts, "gap": gap, "sample_rate": SAMPLE_RATE}


def _write_if_changed(path: Path, text: str) -> None:
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        atomic_write_text(path, text)


def _load_manifest(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        return {}
    windows = data.get("windows")
    return windows if isinstance(windows, dict) else {}


def _write_audio(
    d: DataDir, out: Path, windows: dict[str, list[_Utt]], report: PackReport
) -> tuple[dict[str, str], dict[str, float]]:
    """Concatenate each window's audio into ``out/wav/<window>.wav``; reuse unchanged ones."""
    reader = AudioReader(d)
    wav_dir = out / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    old = _load_manifest(wav_dir / MANIFEST)
    manifest: dict[str, dict[str, Any]] = {}
    silence = np.zeros(round(report.gap * SAMPLE_RATE), dtype=np.float32)
    wav_scp, durs = {}, {}
    try:
        for wid, window in tqdm(windows.items(), desc=f"pack {d.path.name}", unit="window"):
            path = (wav_dir / f"{wid}.wav").resolve()
            origin = _origin(reader, window, report.gap)
            entry = old.get(wid)
            if entry and entry.get("origin") == origin and entry.get("wav_stat") == file_stat(path):
                report.wavs_reused += 1
                frames = int(entry["frames"])
            else:
                pieces: list[np.ndarray] = []
                for i, u in enumerate(window):
                    if i:
                        pieces.append(silence)
                    pieces.append(reader(u.id))
                audio = np.concatenate(pieces)
                write_wav(path, audio)
                frames = len(audio)
                report.wavs_written += 1
            manifest[wid] = {"origin": origin, "frames": frames, "wav_stat": file_stat(path)}
            wav_scp[wid] = str(path)
            durs[wid] = frames / SAMPLE_RATE
    finally:  # also after an error: what was written stays reusable
        data = {"version": MANIFEST_VERSION, "windows": dict(sorted(manifest.items()))}
        _write_if_changed(wav_dir / MANIFEST, json.dumps(data) + "\n")
    for stale in wav_dir.glob("*.wav"):
        if stale.stem not in windows and stale.stem in old:
            stale.unlink()
    return wav_scp, durs


def pack_data_dir(
    in_dir: PathLike,
    out_dir: PathLike,
    *,
    max_duration: float = WINDOW_SECONDS,
    max_gap: float = 3.0,
    gap: float = 0.5,
) -> PackReport:
    """Pack the utterances of ``in_dir`` into windows, written as the data dir ``out_dir``
    (see the module docstring). ``out_dir`` must be absent, empty or an earlier pack output."""
    if not 0 < max_duration <= WINDOW_SECONDS:
        raise ValueError(
            f"max_duration must be in (0, {WINDOW_SECONDS:g}] s (Whisper's window), got {max_duration}"
        )
    if max_gap < 0 or gap < 0:
        raise ValueError(f"max_gap and gap must be >= 0, got {max_gap} and {gap}")
    in_dir, out = Path(in_dir), Path(out_dir)
    if in_dir.resolve() == out.resolve():
        raise ValueError(f"{out}: the output must differ from the input")
    check_stage_input(in_dir, "data pack")
    check_owned(out, OWNER, ignore=CLAIM_IGNORED)
    with run_lock(out):
        claim_dir(out, OWNER, ignore=CLAIM_IGNORED)
        return _pack(DataDir(in_dir), out, PackReport(max_duration, max_gap, gap))


def _reco_durations(d: DataDir) -> dict[str, float]:
    wav_scp = d.wav_scp()
    known = d.read_floats("reco2dur") if d.exists("reco2dur") else {}
    return {r: known[r] if r in known else audio_duration(src) for r, src in wav_scp.items()}


def _pack(d: DataDir, out: Path, report: PackReport) -> PackReport:
    segmented = d.has_segments
    reco_dur = _reco_durations(d) if segmented else None
    report.grouped_by, groups = _groups(d, reco_dur)
    report.mode = "segments" if segmented else "concatenate"
    texts = d.text() if d.exists("text") else None

    windows: dict[str, list[_Utt]] = {}
    utt2spk: dict[str, str] = {}
    group_of: dict[str, str] = {}
    for group in c_sorted(groups):
        for window in _windows(groups[group], report, segmented):
            wid, spk = _window_id(window, group)
            if wid in windows:
                raise DataDirError(f"window id {wid!r} made twice: rename the utterances", d.path)
            check_id(wid, "window id (<recording>-<utterance>)", d.file("utt2spk"))
            windows[wid], utt2spk[wid], group_of[wid] = window, spk, group
    for kind in ("too_long", "overlapping"):
        ids = getattr(report, kind)
        if ids:
            log.warning(
                "%s: %d utterance(s) %s kept alone, e.g. %s",
                d.path,
                len(ids),
                kind.replace("_", " "),
                ids[0],
            )

    tables: dict[str, dict[str, str]] = {"utt2spk": utt2spk}
    if segmented:
        assert reco_dur is not None
        segs = {w: Segment(group_of[w], win[0].start, win[-1].end) for w, win in windows.items()}
        wav_scp = d.wav_scp()
        used = set(group_of.values())
        tables["wav.scp"] = {r: wav_scp[r] for r in used}
        tables["segments"] = {
            w: f"{s.reco} {format_seconds(s.start)} {format_seconds(s.end)}"
            for w, s in segs.items()
        }
        tables["reco2dur"] = {r: format_seconds(reco_dur[r]) for r in used}
        durs = {w: s.end - s.start for w, s in segs.items()}
        if (out / "wav" / MANIFEST).is_file():  # the WAVs of an earlier run without segments
            shutil.rmtree(out / "wav")
    else:
        tables["wav.scp"], durs = _write_audio(d, out, windows, report)
    tables["utt2dur"] = {w: format_seconds(v) for w, v in durs.items()}
    if texts is not None:
        missing = [u.id for win in windows.values() for u in win if u.id not in texts]
        if missing:
            raise DataDirError(
                f"utterance {missing[0]!r} has no text ({len(missing)} such)", d.file("text")
            )
        tables["text"] = {
            w: " ".join(" ".join(texts[u.id] for u in win).split()) for w, win in windows.items()
        }
    for name in OUT_FILES:
        if name not in tables and name != "spk2utt":
            (out / name).unlink(missing_ok=True)
    tables[WINDOW_FILE] = {w: " ".join(u.id for u in win) for w, win in windows.items()}
    write_tables(out, tables)

    report.windows = len(windows)
    report.utterances = sum(len(w) for w in windows.values())
    report.alone = sum(len(w) == 1 for w in windows.values())
    report.packed = report.utterances - report.alone
    report.utterance_seconds = round(sum(u.dur for w in windows.values() for u in w), 3)
    report.window_seconds = round(sum(durs.values()), 3)
    stats = {k: v for k, v in asdict(report).items() if not k.startswith("wavs_")}
    _write_if_changed(
        out / REPORT_FILE, json.dumps({"input": str(d.path), **stats}, indent=2) + "\n"
    )
    validate(out, no_text=texts is None)
    log.info(
        "pack %s -> %s: %d utterances (%.1f s) in %d windows (%.1f s); %d alone (%d too long, "
        "%d overlapping); by %s; %d WAVs written, %d reused",
        d.path, out, report.utterances, report.utterance_seconds, report.windows,
        report.window_seconds, report.alone, len(report.too_long), len(report.overlapping),
        report.grouped_by, report.wavs_written, report.wavs_reused,
    )  # fmt: skip
    return report


def window_utts(out_dir: PathLike) -> dict[str, list[str]]:
    """``{window: [utterance, …]}`` of a packed dir's ``window2utts``."""
    return {w: v.split() for w, v in DataDir(out_dir).read(WINDOW_FILE).items()}
