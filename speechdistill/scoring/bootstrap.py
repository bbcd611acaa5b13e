"""Bootstrap confidence intervals: seeded resampling of utterances, percentile intervals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bootstrap_ci", "ci_json", "percentile_interval", "resampled_sums"]


def ci_json(ci: tuple[float, float] | None) -> list[float] | None:
    """An interval as a JSON list (None stays None)."""
    return None if ci is None else [float(ci[0]), float(ci[1])]


def resampled_sums(
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
    sums = resampled_sums(errors, totals, n_resamples, seed)
    return None if sums is None else percentile_interval(*sums, confidence)


def percentile_interval(
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
