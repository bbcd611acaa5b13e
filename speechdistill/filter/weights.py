"""Per-utterance loss weights from a filter score: down-weighting instead of dropping.

``weight = floor + (1 − floor) · rank`` where ``rank`` is the utterance's percentile rank of the
score among the kept utterances (in (0, 1], 1 = the best; ties share their average rank:
:func:`~speechdistill.filter.select.percentile_ranks`); an utterance the score could not judge
(NaN) gets ``floor``. Training multiplies the utterance's token losses by it (``utt2weight``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from speechdistill.datadir.weights import is_weight
from speechdistill.filter.select import ScoreExpr, Scores, percentile_ranks

#: The default lowest weight (of an utterance the score could not judge).
DEFAULT_FLOOR = 0.1


def utterance_weights(
    expr: ScoreExpr, scores: Scores, utts: Iterable[str], floor: float = DEFAULT_FLOOR
) -> dict[str, float]:
    """Each utterance's weight from ``expr`` ranked among ``utts`` (see the module docstring)."""
    if not is_weight(floor):
        raise ValueError(f"the weight floor must be in (0, 1], got {floor}")
    utts = sorted(utts)
    values = expr.values(scores, utts)
    ranks = percentile_ranks(values, utts)
    return {u: floor if math.isnan(values[u]) else floor + (1 - floor) * ranks[u] for u in utts}


def weight_summary(weights: Mapping[str, float], durations: Mapping[str, float]) -> dict[str, Any]:
    """``weighted_hours`` (Σ w·dur), ``mean`` weight, ``min`` and ``max`` of ``weights``."""
    if not weights:
        return {"n": 0, "weighted_hours": 0.0, "mean": None, "min": None, "max": None}
    seconds = sum(w * durations.get(u, 0.0) for u, w in weights.items())
    values = list(weights.values())
    return {
        "n": len(values),
        "weighted_hours": round(seconds / 3600, 6),
        "mean": round(sum(values) / len(values), 6),
        "min": round(min(values), 6),
        "max": round(max(values), 6),
    }
