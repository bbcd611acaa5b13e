"""The filter stage (5): label-free and supervised scores for pseudo-labels, selection rules,
diagnostics against references, and the report.

- :mod:`~speechdistill.filter.context`: what the scores read (:class:`ScoreContext`, options).
- :mod:`~speechdistill.filter.scores`: the table of scores (every score: higher = better label).
- :mod:`~speechdistill.filter.models`: proxy ASR models, perturbed teacher decoding, causal LM.
- :mod:`~speechdistill.filter.select`: the ``--keep`` rule language and its evaluation.
- :mod:`~speechdistill.filter.diagnostics`: label WER, ROC-AUC, precision/recall, ``auto``, plots.
- :mod:`~speechdistill.filter.stage`: :func:`filter_data_dir`, the whole stage.
"""

from speechdistill.filter.context import ScoreContext, ScoreOptions
from speechdistill.filter.diagnostics import (
    DEFAULT_BAD_WERS,
    AutoChoice,
    LabelQuality,
    choose_auto,
    label_quality,
    roc_auc,
    selection_metrics,
)
from speechdistill.filter.scores import SCORES, Score, compute_score
from speechdistill.filter.select import Rule, RuleError, Selection, parse_rule, select
from speechdistill.filter.stage import FilterConfig, FilterResult, filter_data_dir

__all__ = [
    "DEFAULT_BAD_WERS",
    "SCORES",
    "AutoChoice",
    "FilterConfig",
    "FilterResult",
    "LabelQuality",
    "Rule",
    "RuleError",
    "Score",
    "ScoreContext",
    "ScoreOptions",
    "Selection",
    "choose_auto",
    "compute_score",
    "filter_data_dir",
    "label_quality",
    "parse_rule",
    "roc_auc",
    "select",
    "selection_metrics",
]
