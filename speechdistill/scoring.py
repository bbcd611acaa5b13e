"""Scoring: WER/CER with jiwer, Kaldi/sclite-style reports, ``results.json`` and ESPnet's RESULTS.md.

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
- The 95 % confidence interval is a seeded percentile bootstrap over utterances.

:func:`write_score_dir` writes ``result.txt`` (sclite-style summary by speaker), ``per_utt``
(Kaldi's alignment lines, ``***`` for gaps), ``per_spk`` (Kaldi's raw/sys lines), ``wer`` and ``cer``
(Kaldi's one-line summaries), ``ref.trn``/``hyp.trn`` (normalised text for sclite) and
``results.json``. :func:`write_results_md` gathers results.json files into an ESPnet-style RESULTS.md.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import statistics
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import jiwer
import numpy as np

from speechdistill import __version__
from speechdistill.datadir import c_sorted
from speechdistill.text import get_normalizer
from speechdistill.utils import PathLike, atomic_write_text

log = logging.getLogger(__name__)

SCHEMA = "speechdistill.score/1"
GAP = "***"
#: Speed figures that RESULTS.md shows as extra columns when an entry's ``extra`` has them.
SPEED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("rtfx", "RTFx", "{:.1f}"),
    ("rtf", "RTF", "{:.3f}"),
)
_PACKAGES = ("jiwer", "transformers", "torch", "numpy", "num2words", "whisper-normalizer")


# --------------------------------------------------------------------------------------------------
# counts


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
        return _ratio(self.err, self.ref)

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
            "rate": _json_float(self.rate),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Counts:
        return cls(d["ref"], d["hyp"], d["corr"], d["sub"], d["del"], d["ins"])


def _ratio(num: float, den: float) -> float:
    if den == 0:
        return 0.0 if num == 0 else math.inf
    return num / den


def _json_float(x: float | None) -> float | None:
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
        return _ratio(self.snt_err, self.snt)

    @property
    def empty_refs(self) -> list[str]:
        return [u.utt for u in self.utts if not u.ref]

    def to_dict(self) -> dict[str, Any]:
        return {
            "normalizer": self.normalizer,
            "normalizer_options": dict(self.options),
            "wer": _json_float(self.wer),
            "cer": _json_float(self.cer),
            "ser": _json_float(self.ser),
            "wer_ci": _ci_json(self.wer_ci),
            "cer_ci": _ci_json(self.cer_ci),
            "snt": self.snt,
            "snt_err": self.snt_err,
            "words": self.words.to_dict(),
            "chars": self.chars.to_dict(),
            "n_empty_refs": len(self.empty_refs),
            "empty_refs": self.empty_refs,
        }


def _ci_json(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [float(ci[0]), float(ci[1])]


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
        return {spk: _pool(acc[spk]) for spk in c_sorted(acc)}

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
            "wer": _json_float(n.wer),
            "cer": _json_float(n.cer),
            "ser": _json_float(n.ser),
            "wer_ci": _ci_json(n.wer_ci),
            "cer_ci": _ci_json(n.cer_ci),
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
            f"{name}: {_kaldi_line('WER', n.words)}{ci}; %CER {100 * n.cer:.2f}; "
            f"%SER {100 * n.ser:.2f} ({n.normalizer}; {', '.join(notes)})",
            f"{name}: orthographic %WER {100 * o.wer:.2f}; %CER {100 * o.cer:.2f} (no normaliser)",
        ]


def _pool(utts: Sequence[UttScore]) -> SpeakerScore:
    words, chars = Counts(), Counts()
    for u in utts:
        words, chars = words + u.words, chars + u.chars
    return SpeakerScore(len(utts), sum(u.error for u in utts), words, chars)


# --------------------------------------------------------------------------------------------------
# scoring


def _name_some(keys: Sequence[str], k: int = 5) -> str:
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
    pooled = _pool(scored)
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


def _resampled_sums(
    errors: Sequence[float] | np.ndarray,
    totals: Sequence[float] | np.ndarray,
    n_resamples: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray] | None:
    """``sum(errors)`` and ``sum(totals)`` over ``n_resamples`` item resamples (numpy's
    ``default_rng(seed)``), or None when there is nothing to resample."""
    err = np.asarray(errors, dtype=np.float64)
    tot = np.asarray(totals, dtype=np.float64)
    n = len(err)
    if n == 0 or n_resamples <= 0:
        return None
    rng = np.random.default_rng(seed)
    e_sums, t_sums = np.empty(n_resamples), np.empty(n_resamples)
    chunk = max(1, 4_000_000 // n)  # bound the index matrix to ~32 MB
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        e_sums[start:stop], t_sums[start:stop] = err[idx].sum(axis=1), tot[idx].sum(axis=1)
    return e_sums, t_sums


def bootstrap_ci(
    errors: Sequence[float] | np.ndarray,
    totals: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``sum(errors) / sum(totals)``, resampling items.

    Deterministic for a seed (numpy's ``default_rng``); the same seed draws the same resamples for
    WER and CER. Resamples whose total is 0 are dropped; None when nothing is left to resample.
    """
    sums = _resampled_sums(errors, totals, n_resamples, seed)
    return None if sums is None else _percentile_interval(*sums, confidence)


def _percentile_interval(
    e: np.ndarray, t: np.ndarray, confidence: float
) -> tuple[float, float] | None:
    """The percentile interval of the resampled rates ``e / t`` (resamples with t = 0 dropped)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.where(t > 0, e / np.where(t > 0, t, 1), np.nan)
    rates = rates[np.isfinite(rates)]
    if rates.size == 0:
        return None
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(rates, [alpha, 1 - alpha])
    return float(lo), float(hi)


@dataclass(frozen=True)
class PairedComparison:
    """System B against system A on the same utterances: the WER difference B − A with a paired
    bootstrap interval (utterances resampled jointly, Bisani & Ney 2004)."""

    n_utts: int
    words: int
    wer_a: float
    wer_b: float
    delta_ci: tuple[float, float] | None
    #: share of resamples in which B makes fewer errors than A
    p_b_better: float | None

    @property
    def delta(self) -> float:
        return self.wer_b - self.wer_a

    def to_dict(self) -> dict[str, Any]:
        return {"n_utts": self.n_utts, "words": self.words, "wer_a": _json_float(self.wer_a),
                "wer_b": _json_float(self.wer_b), "delta": _json_float(self.delta),
                "delta_ci": _ci_json(self.delta_ci), "p_b_better": self.p_b_better}  # fmt: skip

    def summary(self, name_a: str = "A", name_b: str = "B") -> str:
        ci = self.delta_ci
        interval = f" [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]" if ci else ""
        better = (
            f", P({name_b} better) {self.p_b_better:.3f}" if self.p_b_better is not None else ""
        )
        return (f"{name_b} − {name_a}: WER {100 * self.wer_b:.2f} − {100 * self.wer_a:.2f} = "
                f"{100 * self.delta:+.2f}{interval} points on {self.n_utts} utterances "
                f"({self.words} words){better}")  # fmt: skip


def paired_bootstrap(
    a: ScoreResult,
    b: ScoreResult,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedComparison:
    """Compare two scorings of the same references (their normalised views).

    Raises ValueError when they differ in utterances, references or normaliser.
    """
    va, vb = a.normalized, b.normalized
    if (va.normalizer, dict(va.options)) != (vb.normalizer, dict(vb.options)):
        raise ValueError(f"scored with different normalisers: {va.normalizer}, {vb.normalizer}")
    ua, ub = {u.utt: u for u in va.utts}, {u.utt: u for u in vb.utts}
    if ua.keys() != ub.keys():
        only = c_sorted(ua.keys() ^ ub.keys())
        raise ValueError(f"{len(only)} utterances scored in one result only: {_name_some(only)}")
    utts = c_sorted(ua)
    differ = [u for u in utts if ua[u].ref != ub[u].ref]
    if differ:
        raise ValueError(f"references differ for {len(differ)} utterances: {_name_some(differ)}")
    err_a = np.array([ua[u].words.err for u in utts], dtype=np.float64)
    err_b = np.array([ub[u].words.err for u in utts], dtype=np.float64)
    words = np.array([ua[u].words.ref for u in utts], dtype=np.float64)
    sums = _resampled_sums(err_b - err_a, words, n_resamples, seed)
    delta_ci, p_better = None, None
    if sums is not None:
        delta_ci = _percentile_interval(*sums, confidence)
        p_better = float((sums[0] < 0).mean())
    return PairedComparison(len(utts), int(words.sum()), va.wer, vb.wer, delta_ci, p_better)


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
            f"{len(unknown)} hypotheses for utterances not in the reference: {_name_some(unknown)}"
        )
    utts = c_sorted(refs)
    missing = [u for u in utts if u not in hyps]
    if missing:
        msg = f"{len(missing)} of {len(utts)} reference utterances have no hypothesis: "
        msg += _name_some(missing)
        if on_missing == "error":
            raise ValueError(msg)
        log.warning("%s (scored as deletions)", msg)
    if utt2spk is not None:
        nospk = [u for u in utts if u not in utt2spk]
        if nospk:
            raise ValueError(f"{len(nospk)} utterances not in utt2spk: {_name_some(nospk)}")
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


# --------------------------------------------------------------------------------------------------
# environment


def versions() -> dict[str, str | None]:
    """Versions of Python, speechdistill and the libraries that shape the numbers."""
    out: dict[str, str | None] = {"python": platform.python_version(), "speechdistill": __version__}
    for pkg in _PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def git_revision() -> str | None:
    """The commit of the speechdistill checkout (``+dirty`` if modified), or None outside git."""
    rev = _git("rev-parse", "HEAD")
    if rev is None:
        return None
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return rev + ("+dirty" if dirty else "")


# --------------------------------------------------------------------------------------------------
# report files


def _kaldi_line(label: str, c: Counts) -> str:
    return (
        f"%{label} {100 * c.rate:.2f} [ {c.err} / {c.ref}, {c.ins} ins, {c.dels} del, {c.sub} sub ]"
    )


def format_kaldi_summary(result: ScoreResult, unit: str = "words") -> str:
    """Kaldi's ``compute-wer`` summary (``wer``/``cer`` files) for the normalised scores."""
    v = result.normalized
    c, label = (v.words, "WER") if unit == "words" else (v.chars, "CER")
    return (
        f"{_kaldi_line(label, c)}\n"
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
    rows = [*spk.items(), ("SUM", _pool(result.normalized.utts))]
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
            pct = [100 * x / c.ref for x in raw[:5]] + [100 * _ratio(s.snt_err, s.snt)]
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
        return [100 * _ratio(x, c.ref) for x in (c.corr, c.sub, c.dels, c.ins, c.err)] + [
            100 * _ratio(s.snt_err, s.snt)
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
        f"speechdistill {__version__} score: {result.dataset or '-'} (model {result.model or '-'})",
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
            head.append(f"{_kaldi_line(unit, c)}{extra} ({label})")
        head.append(f"%SER {100 * view.ser:.2f} [ {view.snt_err} / {view.snt} ] ({label})")
    spk = result.per_speaker()
    rows = list(spk.items()) if spk else []
    total = _pool(n.utts)
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


# --------------------------------------------------------------------------------------------------
# results.json


def save_results(path: PathLike, results: Mapping[str, Any]) -> None:
    """Write a results dict as JSON atomically."""
    text = json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")


def load_results(path: PathLike) -> dict[str, Any]:
    """Read a ``results.json`` (or the one in a score directory); errors name the file."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: results file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith(
        "speechdistill.score/"
    ):
        raise ValueError(f"{path}: not a speechdistill results.json (no 'schema')")
    for key in ("normalized", "orthographic", "normalizer"):
        if key not in data:
            raise ValueError(f"{path}: missing field {key!r}")
    data.setdefault("extra", {})
    return data


def update_results(path: PathLike, *, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``extra`` (e.g. ``{"rtfx": 12.3}`` from the decode stage) into a results.json."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    data = load_results(path)
    data["extra"] = {**data["extra"], **extra}
    save_results(path, data)
    return data


def infer_names(path: PathLike) -> tuple[str | None, str | None]:
    """(model, dataset) from ``exp/<model>/decode_<dataset>/score_*/results.json``-like paths."""
    p = Path(path)
    parts = p.parts[:-1] if p.suffix == ".json" else p.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].startswith("decode_"):
            model = parts[i - 1] if i > 0 else None
            return model, parts[i][len("decode_") :] or None
    return None, None


# --------------------------------------------------------------------------------------------------
# RESULTS.md

_TABLE_HEAD = ("dataset", "Snt", "Wrd", "Corr", "Sub", "Del", "Ins", "Err", "S.Err")


def _md_row(cells: Sequence[object]) -> str:
    return "|" + "|".join(str(c) for c in cells) + "|"


def _pct1(num: float, den: float) -> str:
    r = _ratio(num, den)
    return f"{100 * r:.1f}" if math.isfinite(r) else "inf"


def _md_table(
    rows: Sequence[tuple[str, dict[str, Any]]],
    view: str,
    unit: str,
    *,
    ci: bool,
    speed: Sequence[tuple[str, str, str]],
) -> list[str]:
    head = list(_TABLE_HEAD)
    if ci:
        head.append("95% CI")
    head += [label for _, label, _ in speed]
    lines = [_md_row(head), _md_row(["---"] * len(head))]
    for dataset, r in rows:
        v = r[view]
        c = v[unit]
        cells: list[object] = [dataset, v["snt"], c["ref"]]
        cells += [_pct1(c[k], c["ref"]) for k in ("corr", "sub", "del", "ins", "err")]
        cells.append(_pct1(v["snt_err"], v["snt"]))
        if ci:
            lo_hi = v.get(f"{'wer' if unit == 'words' else 'cer'}_ci")
            cells.append("-" if not lo_hi else f"[{100 * lo_hi[0]:.1f}, {100 * lo_hi[1]:.1f}]")
        for key, _, fmt in speed:
            val = r["extra"].get(key)
            cells.append("-" if val is None else fmt.format(val))
        lines.append(_md_row(cells))
    return lines


def format_results_md(
    entries: Sequence[tuple[str, PathLike | Mapping[str, Any]]], title: str = "RESULTS"
) -> str:
    """ESPnet-style RESULTS.md text: environment, then a section per model (first-seen order).

    ``entries`` are ``(model, results)``; ``results`` is a results.json path (or score dir) or an
    already-loaded dict. An empty model name falls back to the results' ``model`` field.
    """
    sections: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for model, res in entries:
        if isinstance(res, Mapping):
            r, (path_model, path_dataset) = dict(res), (None, None)
        else:
            r, (path_model, path_dataset) = load_results(res), infer_names(res)
        r.setdefault("extra", {})
        model = model or r.get("model") or path_model or "model"
        dataset = r.get("dataset") or path_dataset or "-"
        sections.setdefault(model, []).append((dataset, r))

    v = versions()
    rev = git_revision()
    env = [
        f"- date: `{datetime.now().astimezone().strftime('%a %b %d %H:%M:%S %Z %Y')}`",
        f"- python version: `{platform.python_version()} ({platform.platform()})`",
        f"- speechdistill version: `speechdistill {__version__}`",
        f"- pytorch version: `torch {v.get('torch')}`",
        f"- transformers version: `transformers {v.get('transformers')}`",
        f"- jiwer version: `jiwer {v.get('jiwer')}`",
        f"- Git hash: `{rev or 'unknown'}`",
    ]
    if rev:
        date = _git("log", "-1", "--format=%cd")
        if date:
            env.append(f"  - Commit date: `{date}`")
    lines = [
        f"<!-- Generated by speechdistill {__version__} (speechdistill results) -->",
        f"# {title}",
        "## Environments",
        *env,
        "",
    ]

    for model, rows in sections.items():
        lines += [f"## {model}"]
        norms = {f"{r['normalizer']}{_opts(r)}" for _, r in rows}
        if len(norms) == 1:
            lines.append(f"- normaliser: `{norms.pop()}`; orthographic = no normalisation")
        else:
            lines.append(
                "- normalisers: " + ", ".join(f"{d}=`{r['normalizer']}{_opts(r)}`" for d, r in rows)
            )
        boot = {json.dumps(r.get("bootstrap"), sort_keys=True) for _, r in rows}
        has_ci = any(r["normalized"].get("wer_ci") for _, r in rows)
        if has_ci and len(boot) == 1 and (b := rows[0][1].get("bootstrap")):
            lines.append(
                f"- 95% CI: percentile bootstrap over utterances "
                f"({b.get('resamples')} resamples, seed {b.get('seed')})"
            )
        missing = [(d, r["n_missing_hyps"]) for d, r in rows if r.get("n_missing_hyps")]
        if missing:
            lines.append(
                "- missing hypotheses (scored as deletions): "
                + ", ".join(f"{d}: {n}" for d, n in missing)
            )
        speed = [s for s in SPEED_COLUMNS if any(s[0] in r["extra"] for _, r in rows)]
        for heading, view, unit, ci, sp in (
            ("WER", "normalized", "words", has_ci, speed),
            ("CER", "normalized", "chars", False, []),
            ("WER (orthographic)", "orthographic", "words", False, []),
        ):
            lines += ["", f"### {heading}", ""]
            lines += _md_table(rows, view, unit, ci=ci, speed=sp)
        lines.append("")
    return "\n".join(lines)


def _opts(r: Mapping[str, Any]) -> str:
    o = r.get("normalizer_options") or {}
    return "" if not o else "(" + ", ".join(f"{k}={v}" for k, v in sorted(o.items())) + ")"


def write_results_md(
    path: PathLike,
    entries: Sequence[tuple[str, PathLike | Mapping[str, Any]]],
    title: str = "RESULTS",
    extra_sections: Sequence[str] = (),
) -> None:
    """Write :func:`format_results_md` (then ``extra_sections``) to ``path`` atomically."""
    text = format_results_md(entries, title=title)
    atomic_write_text(path, "\n".join([text, *extra_sections]))
    log.info("wrote %s", path)
