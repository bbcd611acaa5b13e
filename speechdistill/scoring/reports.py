"""Report files of a score dir: sclite-style ``result.txt``, Kaldi ``per_utt``, ``per_spk``,
``wer`` and ``cer``, ``ref.trn``/``hyp.trn`` (normalised text for sclite), and ``results.json``
(:func:`write_score_dir`)."""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Sequence
from pathlib import Path

from speechdistill.scoring.provenance import VERSION
from speechdistill.scoring.results import save_results
from speechdistill.scoring.wer import (
    Counts,
    ScoreResult,
    SpeakerScore,
    ViewScore,
    kaldi_line,
    pool,
    ratio,
)
from speechdistill.utils import PathLike, atomic_write_text

__all__ = [
    "format_kaldi_summary",
    "format_per_spk",
    "format_per_utt",
    "format_result_txt",
    "write_score_dir",
]

log = logging.getLogger(__name__)


def format_kaldi_summary(result: ScoreResult, unit: str = "words") -> str:
    """Kaldi's ``compute-wer`` summary (``wer``/``cer`` files) for the normalised scores."""
    v = result.normalized
    c, label = (v.words, "WER") if unit == "words" else (v.chars, "CER")
    return (
        f"{kaldi_line(label, c)}\n"
        f"%SER {100 * v.ser:.2f} [ {v.snt_err} / {v.snt} ]\n"
        f"Scored {v.snt} sentences, {len(result.missing_hyps)} not present in hyp.\n"
    )


def _cjust(s: str, width: int) -> str:
    right = (width - len(s)) // 2
    return " " * (width - len(s) - right) + s + " " * right


def format_per_utt(result: ScoreResult) -> str:
    """Kaldi's per-utterance alignment lines (``ref``, ``hyp``, ``op``, ``#csid C S I D``)."""
    lines = []
    for u in result.normalized.utts:
        cols = [max(len(r), len(h), len(o)) for r, h, o in u.alignment]
        for label, k in (("ref  ", 0), ("hyp  ", 1), ("op   ", 2)):
            cells = "  ".join(_cjust(row[k], w) for row, w in zip(u.alignment, cols, strict=True))
            lines.append(f"{u.utt} {label}{cells}".rstrip())
        c = u.words
        lines.append(f"{u.utt} #csid {c.corr} {c.sub} {c.ins} {c.dels}")
    return "\n".join(lines) + "\n"


def format_per_spk(result: ScoreResult) -> str:
    """Kaldi's ``per_spk``: a ``raw`` (counts) and ``sys`` (percent) line per speaker, then SUM."""
    spk = result.per_speaker() or {}
    rows = [*spk.items(), ("SUM", pool(result.normalized.utts))]
    width = max(15, *(len(s) for s, _ in rows))
    head = ("#SENT", "#WORD", "Corr", "Sub", "Ins", "Del", "Err", "S.Err")
    lines = [f"{'SPEAKER':<{width}} id  " + " ".join(f"{h:>10}" for h in head)]
    for name, s in rows:
        c = s.words
        raw = (c.corr, c.sub, c.ins, c.dels, c.err, s.snt_err)
        lines.append(
            f"{name:<{width}} raw {s.snt:>10d} {c.ref:>10d} " + " ".join(f"{x:>10d}" for x in raw)
        )
        if c.ref:
            pct = [100 * x / c.ref for x in raw[:5]] + [100 * ratio(s.snt_err, s.snt)]
            lines.append(
                f"{name:<{width}} sys {s.snt:>10d} {c.ref:>10d} "
                + " ".join(f"{x:>10.2f}" for x in pct)
            )
    return "\n".join(lines) + "\n"


def _sclite_table(
    title: str,
    rows: Sequence[tuple[str, SpeakerScore]],
    total: SpeakerScore,
    unit: str,
    stats: bool,
) -> str:
    """sclite's "SYSTEM SUMMARY PERCENTAGES by SPEAKER" table (Mean/S.D./Median with ``stats``)."""

    def pct(c: Counts, s: SpeakerScore) -> list[float]:
        return [100 * ratio(x, c.ref) for x in (c.corr, c.sub, c.dels, c.ins, c.err)] + [
            100 * ratio(s.snt_err, s.snt)
        ]

    def counts(s: SpeakerScore) -> Counts:
        return s.words if unit == "words" else s.chars

    w = max(8, *(len(name) for name, _ in rows)) if rows else 8

    def line(name: str, snt: str, wrd: str, vals: Sequence[str]) -> str:
        return f"| {name:<{w}} | {snt:>6} {wrd:>7} | " + " ".join(f"{v:>6}" for v in vals) + " |"

    header = line("SPKR", "# Snt", "# Wrd", ["Corr", "Sub", "Del", "Ins", "Err", "S.Err"])
    inner = len(header) - 2
    sep = "|" + "=" * inner + "|"
    out = [
        title.center(inner + 2).rstrip(),
        "",
        "," + "-" * inner + ".",
        header,
        "|" + "-" * (w + 2) + "+" + "-" * 16 + "+" + "-" * (inner - w - 20) + "|",
    ]
    for name, s in rows:
        out.append(
            line(name, str(s.snt), str(counts(s).ref), [f"{v:.1f}" for v in pct(counts(s), s)])
        )
    out.append(sep)
    out.append(
        line(
            "Sum/Avg",
            str(total.snt),
            str(counts(total).ref),
            [f"{v:.1f}" for v in pct(counts(total), total)],
        )
    )
    if stats and rows:
        table = [[float(s.snt), float(counts(s).ref), *pct(counts(s), s)] for _, s in rows]
        cols = list(zip(*table, strict=True))
        out.append(sep)
        for label, fn in (
            ("Mean", statistics.fmean),
            ("S.D.", lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0),
            ("Median", statistics.median),
        ):
            v = [fn(list(col)) for col in cols]
            out.append(
                line(label.center(w), f"{v[0]:.1f}", f"{v[1]:.1f}", [f"{x:.1f}" for x in v[2:]])
            )
    out.append("`" + "-" * inner + "'")
    return "\n".join(out) + "\n"


def format_result_txt(result: ScoreResult) -> str:
    """The human-readable summary: headline numbers, then sclite-style tables by speaker."""
    n, o = result.normalized, result.orthographic
    head = [
        f"speechdistill {VERSION} score: {result.dataset or '-'} (model {result.model or '-'})",
        f"ref: {result.ref_path or '-'}",
        f"hyp: {result.hyp_path or '-'}",
        f"normaliser: {n.normalizer} {json.dumps(dict(n.options)) if n.options else ''}".rstrip(),
        f"utterances: {n.snt}; missing hypotheses: {len(result.missing_hyps)}; "
        f"empty references: {len(n.empty_refs)} (orthographic: {len(o.empty_refs)})",
        "",
    ]
    for view, label in ((n, n.normalizer), (o, "orthographic")):
        for c, unit, ci in ((view.words, "WER", view.wer_ci), (view.chars, "CER", view.cer_ci)):
            extra = ""
            if ci is not None:
                extra = f" {result.confidence:.0%} CI [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"
            head.append(f"{kaldi_line(unit, c)}{extra} ({label})")
        head.append(f"%SER {100 * view.ser:.2f} [ {view.snt_err} / {view.snt} ] ({label})")
    spk = result.per_speaker()
    rows = list(spk.items()) if spk else []
    total = pool(n.utts)
    body = [
        _sclite_table(
            f"SYSTEM SUMMARY PERCENTAGES by SPEAKER ({unit}, {n.normalizer})",
            rows,
            total,
            unit,
            stats=spk is not None,
        )
        for unit in ("words", "chars")
    ]
    return "\n".join(head) + "\n\n" + "\n".join(body)


def _format_trn(view: ViewScore, which: str) -> str:
    return "".join(f"{' '.join(getattr(u, which))} ({u.utt})\n" for u in view.utts)


def write_score_dir(result: ScoreResult, out_dir: PathLike) -> None:
    """Write result.txt, per_utt, per_spk, wer, cer, ref.trn, hyp.trn and results.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "per_utt", format_per_utt(result))
    atomic_write_text(out / "per_spk", format_per_spk(result))
    atomic_write_text(out / "wer", format_kaldi_summary(result, "words"))
    atomic_write_text(out / "cer", format_kaldi_summary(result, "chars"))
    atomic_write_text(out / "ref.trn", _format_trn(result.normalized, "ref"))
    atomic_write_text(out / "hyp.trn", _format_trn(result.normalized, "hyp"))
    atomic_write_text(out / "result.txt", format_result_txt(result))
    save_results(out / "results.json", result.to_dict())
    log.info("wrote %s", out)
