"""Recordings of a data dir: recording-level references for long-form scoring (each recording's
text is its utterances' texts joined in segment start order, ``speechdistill data reco-text``)
and the overlaps of segments within a recording."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from itertools import pairwise
from typing import NamedTuple

from speechdistill.datadir.core import DataDir, DataDirError, Segment, c_sorted, write_kv
from speechdistill.utils import PathLike

__all__ = [
    "Overlap",
    "reco_text",
    "segment_layout_warnings",
    "segment_overlaps",
    "write_reco_text",
]

log = logging.getLogger(__name__)


class Overlap(NamedTuple):
    """Segment ``later`` of ``reco`` starts (``start``) before ``earlier`` ends (``end``)."""

    reco: str
    earlier: str
    later: str
    end: float
    start: float


def segment_overlaps(segments: Mapping[str, Segment]) -> list[Overlap]:
    """Each segment that starts before the one before it in its recording ends (segments of a
    recording in start order; an end of -1 runs to the recording's end). Overlaps are legal in
    Kaldi (cross-talk) but have no single word order."""
    by_reco: dict[str, list[tuple[float, float, str]]] = {}
    for utt, seg in segments.items():
        end = float("inf") if seg.end == -1 else seg.end
        by_reco.setdefault(seg.reco, []).append((seg.start, end, utt))
    out = []
    for reco, spans in sorted(by_reco.items()):
        spans.sort()
        for (_, end, earlier), (start, _, later) in pairwise(spans):
            if start < end:
                out.append(Overlap(reco, earlier, later, end, start))
    return out


def segment_layout_warnings(segments: Mapping[str, Segment], max_seconds: float) -> list[str]:
    """What ``data validate`` warns about, with counts and an example: segments that overlap
    within a recording (legal: cross-talk) and segments longer than ``max_seconds``."""
    out = []
    overlaps = segment_overlaps(segments)
    if overlaps:
        o = overlaps[0]
        out.append(
            f"{len(overlaps)} segment(s) overlap the one before in their recording (e.g. "
            f"{o.later!r} starts at {o.start:g} s, before {o.earlier!r} ends at {o.end:g} s, in "
            f"{o.reco!r}): legal (cross-talk), but `data reco-text` refuses them"
        )
    long = sorted(u for u, s in segments.items() if s.end != -1 and s.end - s.start > max_seconds)
    if long:
        seg = segments[long[0]]
        out.append(
            f"{len(long)} segment(s) longer than {max_seconds:g} s, Whisper's window (e.g. "
            f"{long[0]!r}, {seg.end - seg.start:g} s): pseudo-labelling skips them, packing keeps "
            "them alone"
        )
    return out


def reco_text(data_dir: PathLike, text_file: str = "text") -> dict[str, str]:
    """``{recording: text}`` for every recording of ``wav.scp``.

    Without ``segments`` every utterance is a recording and ``text`` is returned as it is. With
    ``segments`` the utterances of a recording are joined in order of their start times;
    overlapping segments (two speakers at once have no single word order) and an utterance of
    ``text`` without a segment are errors naming them. A recording without utterances gets an
    empty reference (logged): its hypothesis then counts as insertions.
    """
    d = DataDir(data_dir)
    texts = d.text(text_file)
    if not d.has_segments:
        return {u: " ".join(t.split()) for u, t in texts.items()}
    segments = d.segments()
    missing = [u for u in c_sorted(texts) if u not in segments]
    if missing:
        raise DataDirError(
            f"utterance {missing[0]!r} has no segment ({len(missing)} such): its place in its "
            "recording is unknown",
            d.file(text_file),
        )
    wav_scp = d.wav_scp()
    for utt, seg in segments.items():
        if seg.reco not in wav_scp:
            raise DataDirError(
                f"recording {seg.reco!r} of utterance {utt!r} is not in wav.scp",
                d.file("segments"),
            )
    overlaps = segment_overlaps({u: s for u, s in segments.items() if u in texts})
    if overlaps:
        o = overlaps[0]
        raise DataDirError(
            f"segments of {o.earlier!r} and {o.later!r} overlap in recording {o.reco!r} "
            f"({o.earlier} ends at {o.end:g} s, {o.later} starts at {o.start:g} s): a "
            "recording-level reference needs non-overlapping segments",
            d.file("segments"),
        )
    by_reco: dict[str, list[tuple[float, str]]] = {r: [] for r in wav_scp}
    for utt, seg in segments.items():
        if utt in texts:
            by_reco[seg.reco].append((seg.start, utt))
    out: dict[str, str] = {}
    empty = []
    for reco, spans in by_reco.items():
        spans.sort()
        out[reco] = " ".join(" ".join(texts[u] for _, u in spans).split())
        if not spans:
            empty.append(reco)
    if empty:
        log.warning(
            "%d recording(s) of %s have no transcribed segment (e.g. %s): empty reference",
            len(empty),
            d.file("wav.scp"),
            empty[0],
        )
    return out


def write_reco_text(data_dir: PathLike, out: PathLike, text_file: str = "text") -> int:
    """Write :func:`reco_text` of ``data_dir`` to the file ``out``; returns the recordings."""
    texts = reco_text(data_dir, text_file)
    write_kv(out, texts)
    return len(texts)
