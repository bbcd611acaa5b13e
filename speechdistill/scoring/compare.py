"""Two systems on the same references: the WER difference with a paired bootstrap interval
(what ``speechdistill compare`` prints)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from speechdistill.datadir import c_sorted
from speechdistill.scoring.bootstrap import ci_json, percentile_interval, resampled_sums
from speechdistill.scoring.wer import ScoreResult, json_float, name_some

__all__ = ["PairedComparison", "paired_bootstrap"]


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
        return {"n_utts": self.n_utts, "words": self.words, "wer_a": json_float(self.wer_a),
                "wer_b": json_float(self.wer_b), "delta": json_float(self.delta),
                "delta_ci": ci_json(self.delta_ci), "p_b_better": self.p_b_better}  # fmt: skip

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
    a: ScoreResult | Sequence[ScoreResult],
    b: ScoreResult | Sequence[ScoreResult],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedComparison:
    """Compare two scorings of the same references (their normalised views).

    Either side may be several runs of one system (e.g. three training seeds): an utterance's
    errors are then its mean over the runs, so the interval covers the test set's sampling with
    the seeds averaged, and ``wer_a``/``wer_b`` are the runs' pooled WERs.

    Raises ValueError when the scorings differ in utterances, references or normaliser.
    """
    runs_a = [a] if isinstance(a, ScoreResult) else list(a)
    runs_b = [b] if isinstance(b, ScoreResult) else list(b)
    if not runs_a or not runs_b:
        raise ValueError("each system needs at least one scored run")
    first = runs_a[0]
    utts, words = _utterances(first)
    err_a = np.mean([_errors(first, r, utts) for r in runs_a], axis=0)
    err_b = np.mean([_errors(first, r, utts) for r in runs_b], axis=0)
    sums = resampled_sums(err_b - err_a, words, n_resamples, seed)
    delta_ci, p_better = None, None
    if sums is not None:
        delta_ci = percentile_interval(*sums, confidence)
        p_better = float((sums[0] < 0).mean())
    total = float(words.sum())
    wer_a, wer_b = (float(e.sum()) / total if total else float("nan") for e in (err_a, err_b))
    return PairedComparison(len(utts), int(total), wer_a, wer_b, delta_ci, p_better)


def _utterances(result: ScoreResult) -> tuple[list[str], np.ndarray]:
    by_utt = {u.utt: u for u in result.normalized.utts}
    utts = c_sorted(by_utt)
    return utts, np.array([by_utt[u].words.ref for u in utts], dtype=np.float64)


def _errors(first: ScoreResult, other: ScoreResult, utts: list[str]) -> np.ndarray:
    """``other``'s word errors per utterance, after checking it scores what ``first`` scores."""
    va, vb = first.normalized, other.normalized
    if (va.normalizer, dict(va.options)) != (vb.normalizer, dict(vb.options)):
        raise ValueError(f"scored with different normalisers: {va.normalizer}, {vb.normalizer}")
    ua, ub = {u.utt: u for u in va.utts}, {u.utt: u for u in vb.utts}
    if ua.keys() != ub.keys():
        only = c_sorted(ua.keys() ^ ub.keys())
        raise ValueError(f"{len(only)} utterances scored in one result only: {name_some(only)}")
    differ = [u for u in utts if ua[u].ref != ub[u].ref]
    if differ:
        raise ValueError(f"references differ for {len(differ)} utterances: {name_some(differ)}")
    return np.array([ub[u].words.err for u in utts], dtype=np.float64)
