"""How well each score finds bad labels, measured on the utterances that have a reference.

- Label WER: the label (hypothesis) against the reference, both normalised; errors / max(1, reference
  words), so an empty reference makes any non-empty label bad. A label is *bad* at definition ``t``
  when its WER > t (``t`` = 0.2, 0.4, 0.8 by default).
- ROC-AUC: the probability that a random good label scores higher than a random bad one, ties
  counting one half (Mann–Whitney U from average ranks). NaN scores rank lowest. Undefined (None)
  when one class is empty. 0.5 = useless; below 0.5 the score is inverted.
- Selection metrics: on the labelled utterances, precision = good kept / kept, recall = good kept
  / good, F1, and the share of bad labels removed, plus the pooled label WER of the kept labels.
- ``--keep auto``: for every label-free score (and the rank average of all of them), every
  threshold ``score >= v`` with ``v`` a value seen on the labelled utterances is tried; the one
  maximising the objective (F1 of keeping good labels, or Youden's J = recall of good labels −
  share of bad labels kept) wins; ties go to the lower threshold (more data), then to the higher
  AUC. The rule's threshold is placed halfway between the chosen value and the next lower one. The choice is in-sample (optimistic); a 2-fold estimate (choose on one half of the
  labelled utterances, measure on the other) is reported beside it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechdistill.filter.select import Rule, ScoreExpr, Scores, average_ranks

log = logging.getLogger(__name__)

#: Label WERs above which a label counts as bad (the diagnostics' three definitions).
DEFAULT_BAD_WERS = (0.2, 0.4, 0.8)
OBJECTIVES = ("f1", "youden")


@dataclass(frozen=True)
class LabelQuality:
    """Per-utterance label WER against the references (normalised)."""

    wer: dict[str, float]
    errors: dict[str, int]
    ref_words: dict[str, int]

    def bad(self, threshold: float) -> dict[str, bool]:
        return {u: w > threshold for u, w in self.wer.items()}

    def pooled_wer(self, utts: Sequence[str] | set[str]) -> float | None:
        ref = sum(self.ref_words[u] for u in utts)
        return sum(self.errors[u] for u in utts) / ref if ref else None


def label_quality(
    labels: Mapping[str, str],
    refs: Mapping[str, str],
    normalizer: str = "english",
    normalizer_options: Mapping[str, Any] | None = None,
) -> LabelQuality:
    """Label WER for every utterance that has both a label and a reference."""
    from speechdistill.scoring import score

    utts = [u for u in refs if u in labels]
    if not utts:
        return LabelQuality({}, {}, {})
    result = score(
        {u: refs[u] for u in utts},
        {u: labels[u] for u in utts},
        normalizer=normalizer,
        normalizer_options=normalizer_options,
        bootstrap=0,
    )
    utt_scores = result.normalized.utts
    return LabelQuality(
        {s.utt: s.words.err / max(1, s.words.ref) for s in utt_scores},
        {s.utt: s.words.err for s in utt_scores},
        {s.utt: s.words.ref for s in utt_scores},
    )


# --------------------------------------------------------------------------------------------------
# ROC


def _finite(values: Mapping[str, float], utts: Sequence[str]) -> np.ndarray:
    x = np.array([values.get(u, math.nan) for u in utts], dtype=np.float64)
    return np.where(np.isnan(x), -np.inf, x)


def roc_auc(values: Mapping[str, float], bad: Mapping[str, bool]) -> float | None:
    """P(score of a good label > score of a bad label), ties 1/2; None if a class is empty."""
    utts = list(bad)
    is_bad = np.array([bad[u] for u in utts], dtype=bool)
    n_bad = int(is_bad.sum())
    n_good = len(utts) - n_bad
    if n_bad == 0 or n_good == 0:
        return None
    ranks = average_ranks(_finite(values, utts))
    u_stat = ranks[~is_bad].sum() - n_good * (n_good + 1) / 2
    return float(u_stat / (n_good * n_bad))


@dataclass(frozen=True)
class Sweep:
    """Counts for every threshold ``score >= t`` (t descending), on labelled utterances."""

    thresholds: np.ndarray
    good_kept: np.ndarray
    bad_kept: np.ndarray
    n_good: int
    n_bad: int

    def objective(self, name: str) -> np.ndarray:
        tp, fp = self.good_kept, self.bad_kept
        fn = self.n_good - tp
        if name == "f1":
            den = 2 * tp + fp + fn
            return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)
        if name == "youden":
            return tp / max(self.n_good, 1) - fp / max(self.n_bad, 1)
        raise ValueError(f"unknown objective {name!r}; valid: {', '.join(OBJECTIVES)}")


def sweep(values: Mapping[str, float], bad: Mapping[str, bool]) -> Sweep:
    """Good and bad labels kept by ``score >= t`` for each distinct finite value ``t``."""
    utts = list(bad)
    x = _finite(values, utts)
    is_bad = np.array([bad[u] for u in utts], dtype=bool)
    thresholds = np.unique(x[np.isfinite(x)])[::-1]
    order = np.argsort(-x, kind="mergesort")
    xs, bs = x[order], is_bad[order]
    cum_bad = np.cumsum(bs)
    cum_good = np.cumsum(~bs)
    # number of utterances with x >= t, for each t
    counts = np.searchsorted(-xs, -thresholds, side="right")
    good = np.where(counts > 0, cum_good[np.maximum(counts - 1, 0)], 0)
    badk = np.where(counts > 0, cum_bad[np.maximum(counts - 1, 0)], 0)
    return Sweep(thresholds, good, badk, int((~is_bad).sum()), int(is_bad.sum()))


def roc_points(
    values: Mapping[str, float], bad: Mapping[str, bool]
) -> tuple[np.ndarray, np.ndarray]:
    """(share of bad labels kept, share of good labels kept) from keeping nothing to everything."""
    s = sweep(values, bad)
    fpr = np.concatenate([[0.0], s.bad_kept / max(s.n_bad, 1), [1.0]])
    tpr = np.concatenate([[0.0], s.good_kept / max(s.n_good, 1), [1.0]])
    return fpr, tpr


# --------------------------------------------------------------------------------------------------
# selection metrics


def selection_metrics(
    kept: set[str], bad: Mapping[str, bool], quality: LabelQuality | None = None
) -> dict[str, Any]:
    """Precision/recall of keeping good labels, on the utterances of ``bad``."""
    tp = sum(1 for u, b in bad.items() if not b and u in kept)
    fp = sum(1 for u, b in bad.items() if b and u in kept)
    n_bad = sum(bad.values())
    n_good = len(bad) - n_bad
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / n_good if n_good else None
    f1 = 2 * tp / (2 * tp + fp + (n_good - tp)) if (tp + fp + n_good) else None
    out: dict[str, Any] = {
        "n_labelled": len(bad),
        "n_good": n_good,
        "n_bad": n_bad,
        "kept": tp + fp,
        "good_kept": tp,
        "bad_kept": fp,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "bad_removed": (n_bad - fp) / n_bad if n_bad else None,
    }
    if quality is not None:
        labelled_kept = [u for u in bad if u in kept]
        out["label_wer_all"] = quality.pooled_wer(list(bad))
        out["label_wer_kept"] = quality.pooled_wer(labelled_kept) if labelled_kept else None
    return out


# --------------------------------------------------------------------------------------------------
# auto


@dataclass
class AutoChoice:
    """What ``--keep auto`` chose, and how the candidates did."""

    score: str
    threshold: float
    objective: str
    bad_wer: float
    value: float
    auc: float | None
    metrics: dict[str, Any]
    candidates: list[dict[str, Any]] = field(default_factory=list)
    heldout: dict[str, Any] | None = None

    @property
    def rule(self) -> Rule:
        return rule_for(self.score, self.threshold)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rule"] = self.rule.text
        return d


def rule_for(expr_text: str, threshold: float) -> Rule:
    if expr_text.startswith("rank_avg("):
        expr = ScoreExpr(tuple(expr_text[len("rank_avg(") : -1].split(",")), rank_avg=True)
    else:
        expr = ScoreExpr((expr_text,))
    return Rule("threshold", expr, ">=", float(threshold), origin="auto")


def candidate_values(
    scores: Scores, names: Sequence[str], utts: Sequence[str]
) -> dict[str, dict[str, float]]:
    """The candidate scores of ``auto``: each name, plus the rank average of all of them."""
    out = {n: dict(scores[n]) for n in names}
    if len(names) >= 2:
        expr = ScoreExpr(tuple(names), rank_avg=True)
        out[expr.text] = expr.values(scores, utts)
    return out


def _best(
    values: Mapping[str, float], bad: Mapping[str, bool], objective: str
) -> tuple[float, float]:
    s = sweep(values, bad)
    if len(s.thresholds) == 0:
        return math.nan, -math.inf
    obj = s.objective(objective)
    best = float(obj.max())
    # ties: the lowest threshold (thresholds are descending, so the last maximum); the rule's
    # threshold is then put halfway to the next lower value seen, which keeps the same labelled
    # utterances and generalises better than the value itself
    i = int(np.flatnonzero(np.isclose(obj, best, rtol=0, atol=1e-12))[-1])
    t = float(s.thresholds[i])
    if i + 1 < len(s.thresholds):
        t = (t + float(s.thresholds[i + 1])) / 2
    return t, best


def _choose(
    candidates: Mapping[str, Mapping[str, float]], bad: Mapping[str, bool], objective: str
) -> tuple[str, float, float, list[dict[str, Any]]]:
    table = []
    for name, values in candidates.items():
        t, v = _best(values, bad, objective)
        table.append({"score": name, "threshold": t, "value": v, "auc": roc_auc(values, bad)})
    ranked = sorted(table, key=lambda c: (-c["value"], -(c["auc"] or 0.0), c["score"]))
    top = ranked[0]
    return top["score"], top["threshold"], top["value"], ranked


def choose_auto(
    candidates: Mapping[str, Mapping[str, float]],
    quality: LabelQuality,
    *,
    bad_wer: float = 0.4,
    objective: str = "f1",
) -> AutoChoice:
    """Choose a candidate score and threshold on the labelled utterances (module docstring)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
    if not candidates:
        raise ValueError("--keep auto: no label-free score to choose from")
    bad = quality.bad(bad_wer)
    n_bad = sum(bad.values())
    if n_bad == 0 or n_bad == len(bad):
        raise ValueError(
            f"--keep auto needs labelled utterances with both good and bad labels at WER > "
            f"{bad_wer:g}; got {len(bad) - n_bad} good and {n_bad} bad"
        )
    score, threshold, value, table = _choose(candidates, bad, objective)
    kept = {u for u in bad if _keeps(candidates[score].get(u, math.nan), threshold)}
    choice = AutoChoice(
        score=score,
        threshold=threshold,
        objective=objective,
        bad_wer=bad_wer,
        value=value,
        auc=roc_auc(candidates[score], bad),
        metrics=selection_metrics(kept, bad, quality),
        candidates=table,
        heldout=_two_fold(candidates, bad, objective),
    )
    log.info(
        "auto: %s >= %.4g (%s %.3f on %d labelled utterances; precision %s, recall %s)",
        score,
        threshold,
        objective,
        value,
        len(bad),
        _pct(choice.metrics["precision"]),
        _pct(choice.metrics["recall"]),
    )
    return choice


def _keeps(v: float, t: float) -> bool:
    return not math.isnan(v) and v >= t


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _two_fold(
    candidates: Mapping[str, Mapping[str, float]], bad: Mapping[str, bool], objective: str
) -> dict[str, Any] | None:
    """Choose on one half of the labelled utterances, measure on the other, both ways; pooled."""
    utts = sorted(bad)
    folds = [utts[0::2], utts[1::2]]
    kept: set[str] = set()
    chosen = []
    for i in (0, 1):
        train = {u: bad[u] for u in folds[i]}
        if all(train.values()) or not any(train.values()):
            return None
        score, t, _, _ = _choose(candidates, train, objective)
        chosen.append(f"{score}>={t:.4g}")
        kept |= {u for u in folds[1 - i] if _keeps(candidates[score].get(u, math.nan), t)}
    m = selection_metrics(kept, bad)
    return {"chosen": chosen, **{k: m[k] for k in ("precision", "recall", "f1", "bad_removed")}}


# --------------------------------------------------------------------------------------------------
# plots


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning(
            "plots skipped: matplotlib is not installed (pip install 'speechdistill[plots]')"
        )
        return None
    return plt


def plot_histograms(
    out_dir: Path,
    scores: Scores,
    bad: Mapping[str, bool],
    bad_wer: float,
    chosen: AutoChoice | None = None,
) -> list[Path]:
    """One PNG per score: its distribution on good and on bad labels (``hist_<score>.png``)."""
    plt = _pyplot()
    if plt is None:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, values in scores.items():
        x = np.array([values.get(u, math.nan) for u in bad], dtype=np.float64)
        b = np.array(list(bad.values()), dtype=bool)
        ok = np.isfinite(x)
        if not ok.any():
            continue
        lo, hi = float(x[ok].min()), float(x[ok].max())
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.linspace(lo, hi, 31)
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.hist(x[ok & ~b], bins=bins, alpha=0.6, label=f"good (WER <= {bad_wer:.0%})")
        ax.hist(x[ok & b], bins=bins, alpha=0.6, label=f"bad (WER > {bad_wer:.0%})")
        if chosen is not None and chosen.score == name:
            ax.axvline(chosen.threshold, color="k", linestyle="--", label="auto threshold")
        auc = roc_auc(values, bad)
        ax.set_title(f"{name}: AUC {'-' if auc is None else f'{auc:.3f}'}")
        ax.set_xlabel(f"{name} (higher = better label)")
        ax.set_ylabel("utterances")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"hist_{_file_name(name)}.png"
        _save(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_roc(
    path: Path, scores: Scores, quality: LabelQuality, bad_wers: Sequence[float]
) -> Path | None:
    """ROC curves of every score, one panel per bad-label definition."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, len(bad_wers), figsize=(5 * len(bad_wers), 4.6), squeeze=False)
    for ax, t in zip(axes[0], bad_wers, strict=True):
        bad = quality.bad(t)
        n_bad = sum(bad.values())
        for name, values in scores.items():
            auc = roc_auc(values, bad)
            if auc is None:
                continue
            fpr, tpr = roc_points(values, bad)
            ax.plot(fpr, tpr, label=f"{name} ({auc:.2f})", linewidth=1.2)
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"bad = WER > {t:.0%} ({len(bad) - n_bad} good, {n_bad} bad)")
        ax.set_xlabel("bad labels kept")
        ax.set_ylabel("good labels kept")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(fig, path)
    plt.close(fig)
    return path


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name).strip("_")


def _save(fig: Any, path: Path) -> None:
    from speechdistill.utils import atomic_open

    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
