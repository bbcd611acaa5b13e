"""Recording-level references for long-form scoring: each recording's text is its utterances'
texts joined in segment start order (``speechdistill data reco-text``)."""

from __future__ import annotations

import logging
from itertools import pairwise

from speechdistill.datadir.core import DataDir, DataDirError, c_sorted, write_kv
from speechdistill.utils import PathLike

__all__ = ["reco_text", "write_reco_text"]

log = logging.getLogger(__name__)


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
    by_reco: dict[str, list[tuple[float, float, str]]] = {r: [] for r in d.wav_scp()}
    for utt, seg in segments.items():
        if seg.reco not in by_reco:
            raise DataDirError(
                f"recording {seg.reco!r} of utterance {utt!r} is not in wav.scp",
                d.file("segments"),
            )
        if utt in texts:
            end = float("inf") if seg.end == -1 else seg.end
            by_reco[seg.reco].append((seg.start, end, utt))
    out: dict[str, str] = {}
    empty = []
    for reco, spans in by_reco.items():
        spans.sort()
        for (_, prev_end, prev), (start, _, utt) in pairwise(spans):
            if start < prev_end:
                raise DataDirError(
                    f"segments of {prev!r} and {utt!r} overlap in recording {reco!r} "
                    f"({prev} ends at {prev_end:g} s, {utt} starts at {start:g} s): a "
                    "recording-level reference needs non-overlapping segments",
                    d.file("segments"),
                )
        out[reco] = " ".join(" ".join(texts[u] for _, _, u in spans).split())
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
