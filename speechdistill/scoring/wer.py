"""WER/CER with jiwer: alignment counts, per-utterance records, normalised and orthographic views.

:func:`score` aligns every reference utterance with its hypothesis twice: after the chosen
normaliser (the headline numbers) and orthographically (``none``: whitespace collapsed only).
Rates are fractions (0.123 = 12.3 %); counts follow sclite: ``ref`` reference tokens, ``corr``,
``sub``, ``del``, ``ins``, ``err = sub + del + ins``; WER = err / ref pooled over utterances.
CER counts characters of the normalised text, the single spaces between words included (as
ESPnet's ``<space>`` and jiwer's CER do).

- An empty reference (after normalisation) adds its hypothesis words as insertions; it is listed in
  ``empty_refs``. Pooled rates divide by the total number of reference tokens.
- A reference utterance without hypothesis is scored against an empty hypothesis (all deletions) and
  listed in ``missing_hyps``; ``on_missing="error"`` refuses instead. A hypothesis for an utterance
  that is not in the reference is always an error.
- The 95 % confidence interval is a seeded percentile bootstrap over utterances
  (:mod:`speechdistill.scoring.bootstrap`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import jiwer
import numpy as np

from speechdistill.datadir import c_sorted
from speechdistill.scoring.bootstrap import bootstrap_ci, ci_json
from speechdistill.scoring.provenance import git_revision, versions
from speechdistill.text import get_normalizer
from speechdistill.utils import PathLike

__all__ = [
    "GAP",
    "SCHEMA",
    "Counts",
    "ScoreResult",
    "SpeakerScore",
    "UttScore",
    "ViewScore",
    "json_float",
    "kaldi_line",
    "name_some",
    "pool",
    "ratio",
    "score",
]

log = logging.getLogger(__name__)

#: Schema of ``results.json`` (:meth:`ScoreResult.to_dict`).
SCHEMA = "speechdistill.score/1"
#: The gap word of an alignment.
GAP = "***"


@dataclass(frozen=True)
class Counts:
    """Edit counts of an alignment (words or characters)."""

    ref: int = 0
    hyp: int = 0
    corr: int = 0
    sub: int = 0
    dels: int = 0
    ins: int = 0

    @property
    def err(self) -> int:
        return self.sub + self.dels + self.ins

    @property
    def rate(self) -> float:
        """err / ref; 0 for an empty reference without errors, inf with errors."""
        return ratio(self.err, self.ref)

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(self._tuple(), other._tuple(), strict=True)))

    def _tuple(self) -> tuple[int, ...]:
        return (self.ref, self.hyp, self.corr, self.sub, self.dels, self.ins)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "hyp": self.hyp,
            "corr": self.corr,
            "sub": self.sub,
            "del": self.dels,
            "ins": self.ins,
            "err": self.err,
            "rate": json_float(self.rate),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Counts:
        return cls(d["ref"], d["hyp"], d["corr"], d["sub"], d["del"], d["ins"])


def ratio(num: float, den: float) -> float:
    """num / den; 0 for 0 / 0 and inf for x / 0."""
    if den == 0:
        return 0.0 if num == 0 else math.inf
    return num / den


def json_float(x: float | None) -> float | None:
    """``x``, or None when it is missing or not finite (JSON has no inf/NaN)."""
    return x if x is not None and math.isfinite(x) else None


@dataclass(frozen=True)
class UttScore:
    """One utterance: normalised words, their alignment (``***`` for gaps) and counts."""

    utt: str
    ref: tuple[str, ...]
    hyp: tuple[str, ...]
    alignment: tuple[tuple[str, str, str], ...]  # (ref word, hyp word, op in C/S/D/I)
    words: Counts
    chars: Counts

    @property
    def error(self) -> bool:
        return self.words.err > 0


@dataclass(frozen=True)
class ViewScore:
    """All utterances scored after one normaliser, pooled, with bootstrap intervals."""

    normalizer: str
    options: Mapping[str, Any]
    utts: tuple[UttScore, ...]
    words: Counts
    chars: Counts
    wer_ci: tuple[float, float] | None = None
    cer_ci: tuple[float, float] | None = None

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate

    @property
    def snt(self) -> int:
        return len(self.utts)

    @property
    def snt_err(self) -> int:
        return sum(u.error for u in self.utts)

    @property
    def ser(self) -> float:
        return ratio(self.snt_err, self.snt)

    @property
    def empty_refs(self) -> list[str]:
        return [u.utt for u in self.utts if not u.ref]

    def to_dict(self) -> dict[str, Any]:
        return {
            "normalizer": self.normalizer,
            "normalizer_options": dict(self.options),
            "wer": json_float(self.wer),
            "cer": json_float(self.cer),
            "ser": json_float(self.ser),
            "wer_ci": ci_json(self.wer_ci),
            "cer_ci": ci_json(self.cer_ci),
            "snt": self.snt,
            "snt_err": self.snt_err,
            "words": self.words.to_dict(),
            "chars": self.chars.to_dict(),
            "n_empty_refs": len(self.empty_refs),
            "empty_refs": self.empty_refs,
        }


@dataclass(frozen=True)
class SpeakerScore:
    """Pooled counts of one speaker's utterances (normalised)."""

    snt: int
    snt_err: int
    words: Counts
    chars: Counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "snt": self.snt,
            "snt_err": self.snt_err,
            "words": self.words.to_dict(),
            "chars": self.chars.to_dict(),
        }


@dataclass
class ScoreResult:
    """Everything :func:`score` computed; :meth:`to_dict` is the ``results.json`` content."""

    normalized: ViewScore
    orthographic: ViewScore
    missing_hyps: list[str]
    utt2spk: dict[str, str] | None = None
    on_missing: str = "delete"
    bootstrap: int = 1000
    seed: int = 0
    confidence: float = 0.95
    model: str | None = None
    dataset: str | None = None
    ref_path: str | None = None
    hyp_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    created: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )

    @property
    def normalizer(self) -> str:
        return self.normalized.normalizer

    @property
    def wer(self) -> float:
        return self.normalized.wer

    @property
    def cer(self) -> float:
        return self.normalized.cer

    @property
    def ser(self) -> float:
        return self.normalized.ser

    @property
    def empty_refs(self) -> list[str]:
        return self.normalized.empty_refs

    def per_speaker(self) -> dict[str, SpeakerScore] | None:
        """Normalised counts per speaker (C-sorted), or None without ``utt2spk``."""
        if self.utt2spk is None:
            return None
        acc: dict[str, list[UttScore]] = {}
        for u in self.normalized.utts:
            acc.setdefault(self.utt2spk[u.utt], []).append(u)
        return {spk: pool(acc[spk]) for spk in c_sorted(acc)}

    def to_dict(self) -> dict[str, Any]:
        spk = self.per_speaker()
        n = self.normalized
        return {
            "schema": SCHEMA,
            "model": self.model,
            "dataset": self.dataset,
            "created": self.created,
            "ref": self.ref_path,
            "hyp": self.hyp_path,
            "normalizer": n.normalizer,
            "normalizer_options": dict(n.options),
            "n_utts": n.snt,
            "wer": json_float(n.wer),
            "cer": json_float(n.cer),
            "ser": json_float(n.ser),
            "wer_ci": ci_json(n.wer_ci),
            "cer_ci": ci_json(n.cer_ci),
            "n_missing_hyps": len(self.missing_hyps),
            "missing_hyps": list(self.missing_hyps),
            "on_missing": self.on_missing,
            "n_empty_refs": len(n.empty_refs),
            "empty_refs": n.empty_refs,
            "normalized": n.to_dict(),
            "orthographic": self.orthographic.to_dict(),
            "per_speaker": None if spk is None else {k: v.to_dict() for k, v in spk.items()},
            "bootstrap": {
                "resamples": self.bootstrap,
                "seed": self.seed,
                "confidence": self.confidence,
                "unit": "utterance",
                "method": "percentile",
            },
            "versions": versions(),
            "git": git_revision(),
            "extra": dict(self.extra),
        }

    def summary_lines(self) -> list[str]:
        """Human-readable one-liners (normalised, then orthographic)."""
        name = self.dataset or "score"
        n, o = self.normalized, self.orthographic
        ci = ""
        if n.wer_ci is not None:
            ci = f" {self.confidence:.0%} CI [{100 * n.wer_ci[0]:.2f}, {100 * n.wer_ci[1]:.2f}]"
        notes = [f"{n.snt} utts"]
        if self.missing_hyps:
            notes.append(f"{len(self.missing_hyps)} missing hyps")
        if n.empty_refs:
            notes.append(f"{len(n.empty_refs)} empty refs")
        return [
            f"{name}: {kaldi_line('WER', n.words)}{ci}; %CER {100 * n.cer:.2f}; "
            f"%SER {100 * n.ser:.2f} ({n.normalizer}; {', '.join(notes)})",
            f"{name}: orthographic %WER {100 * o.wer:.2f}; %CER {100 * o.cer:.2f} (no normaliser)",
        ]


def pool(utts: Sequence[UttScore]) -> SpeakerScore:
    """The pooled counts of some utterances."""
    words, chars = Counts(), Counts()
    for u in utts:
        words, chars = words + u.words, chars + u.chars
    return SpeakerScore(len(utts), sum(u.error for u in utts), words, chars)


def name_some(keys: Sequence[str], k: int = 5) -> str:
    """The first ``k`` keys, for error messages (``a, b, … (12 in all)``)."""
    shown = ", ".join(keys[:k])
    return shown + (f", … ({len(keys)} in all)" if len(keys) > k else "")


def _counts_from_chunks(chunks: Sequence[Any], ref_len: int, hyp_len: int) -> Counts:
    c = {"equal": 0, "substitute": 0, "delete": 0, "insert": 0}
    for ch in chunks:
        n = max(ch.ref_end_idx - ch.ref_start_idx, ch.hyp_end_idx - ch.hyp_start_idx)
        c[ch.type] += n
    return Counts(ref_len, hyp_len, c["equal"], c["substitute"], c["delete"], c["insert"])


def _align(
    ref: Sequence[str], hyp: Sequence[str], chunks: Sequence[Any]
) -> tuple[tuple[str, str, str], ...]:
    rows: list[tuple[str, str, str]] = []
    for ch in chunks:
        r = ref[ch.ref_start_idx : ch.ref_end_idx]
        h = hyp[ch.hyp_start_idx : ch.hyp_end_idx]
        if ch.type == "equal":
            rows += [(a, b, "C") for a, b in zip(r, h, strict=True)]
        elif ch.type == "substitute":
            rows += [(a, b, "S") for a, b in zip(r, h, strict=False)]
            rows += [(a, GAP, "D") for a in r[len(h) :]] + [(GAP, b, "I") for b in h[len(r) :]]
        elif ch.type == "delete":
            rows += [(a, GAP, "D") for a in r]
        else:
            rows += [(GAP, b, "I") for b in h]
    return tuple(rows)


def _score_view(
    utts: Sequence[str],
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    name: str,
    options: Mapping[str, Any],
    *,
    bootstrap: int,
    seed: int,
    confidence: float,
) -> ViewScore:
    norm = get_normalizer(name, **options)
    ref_txt = [" ".join(norm(refs[u]).split()) for u in utts]
    hyp_txt = [" ".join(norm(hyps.get(u, "")).split()) for u in utts]
    w = jiwer.process_words(ref_txt, hyp_txt)
    c = jiwer.process_characters(ref_txt, hyp_txt)
    scored = []
    for i, utt in enumerate(utts):
        r, h = w.references[i], w.hypotheses[i]
        scored.append(
            UttScore(
                utt,
                tuple(r),
                tuple(h),
                _align(r, h, w.alignments[i]),
                _counts_from_chunks(w.alignments[i], len(r), len(h)),
                _counts_from_chunks(c.alignments[i], len(c.references[i]), len(c.hypotheses[i])),
            )
        )
    pooled = pool(scored)
    # jiwer's own totals must agree with the per-utterance counts
    assert (pooled.words.corr, pooled.words.sub, pooled.words.dels, pooled.words.ins) == (
        w.hits,
        w.substitutions,
        w.deletions,
        w.insertions,
    )
    wer_ci = cer_ci = None
    if bootstrap > 0:
        arr = np.array([(u.words.err, u.words.ref, u.chars.err, u.chars.ref) for u in scored])
        wer_ci = bootstrap_ci(
            arr[:, 0], arr[:, 1], n_resamples=bootstrap, seed=seed, confidence=confidence
        )
        cer_ci = bootstrap_ci(
            arr[:, 2], arr[:, 3], n_resamples=bootstrap, seed=seed, confidence=confidence
        )
    return ViewScore(name, dict(options), tuple(scored), pooled.words, pooled.chars, wer_ci, cer_ci)


def score(
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    *,
    normalizer: str = "english",
    utt2spk: Mapping[str, str] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    normalizer_options: Mapping[str, Any] | None = None,
    on_missing: str = "delete",
    confidence: float = 0.95,
    model: str | None = None,
    dataset: str | None = None,
    ref_path: PathLike | None = None,
    hyp_path: PathLike | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ScoreResult:
    """Score hypotheses against references (utterance id → text), normalised and orthographic.

    ``on_missing``: ``"delete"`` scores a reference without hypothesis as all deletions (and lists
    it), ``"error"`` raises. Hypotheses for unknown utterances always raise ValueError.
    ``bootstrap`` resamples (0 disables the interval) drawn with ``seed``.
    """
    if on_missing not in ("delete", "error"):
        raise ValueError(f"on_missing must be 'delete' or 'error', got {on_missing!r}")
    if not refs:
        raise ValueError("no reference utterances to score")
    unknown = c_sorted(set(hyps) - set(refs))
    if unknown:
        raise ValueError(
            f"{len(unknown)} hypotheses for utterances not in the reference: {name_some(unknown)}"
        )
    utts = c_sorted(refs)
    missing = [u for u in utts if u not in hyps]
    if missing:
        msg = f"{len(missing)} of {len(utts)} reference utterances have no hypothesis: "
        msg += name_some(missing)
        if on_missing == "error":
            raise ValueError(msg)
        log.warning("%s (scored as deletions)", msg)
    if utt2spk is not None:
        nospk = [u for u in utts if u not in utt2spk]
        if nospk:
            raise ValueError(f"{len(nospk)} utterances not in utt2spk: {name_some(nospk)}")
        utt2spk = {u: utt2spk[u] for u in utts}
    options = dict(normalizer_options or {})
    kw = {"bootstrap": bootstrap, "seed": seed, "confidence": confidence}
    normalized = _score_view(utts, refs, hyps, normalizer, options, **kw)
    if normalizer == "none" and not options:
        orthographic = normalized
    else:
        orthographic = _score_view(utts, refs, hyps, "none", {}, **kw)
    if normalized.empty_refs:
        log.info("%d utterances have an empty (normalised) reference", len(normalized.empty_refs))
    return ScoreResult(
        normalized=normalized,
        orthographic=orthographic,
        missing_hyps=missing,
        utt2spk=None if utt2spk is None else dict(utt2spk),
        on_missing=on_missing,
        bootstrap=bootstrap,
        seed=seed,
        confidence=confidence,
        model=model,
        dataset=dataset,
        ref_path=None if ref_path is None else str(ref_path),
        hyp_path=None if hyp_path is None else str(hyp_path),
        extra=dict(extra or {}),
    )


def kaldi_line(label: str, c: Counts) -> str:
    """Kaldi's one-line summary, e.g. ``%WER 12.50 [ 2 / 16, 1 ins, 0 del, 1 sub ]``."""
    return (
        f"%{label} {100 * c.rate:.2f} [ {c.err} / {c.ref}, {c.ins} ins, {c.dels} del, {c.sub} sub ]"
    )
