"""Scoring (stage 9): WER/CER with jiwer, Kaldi/sclite-style reports, ``results.json`` and
ESPnet's RESULTS.md.

- :mod:`~speechdistill.scoring.wer`: :func:`score`, normalised and orthographic counts per utterance.
- :mod:`~speechdistill.scoring.bootstrap`: seeded percentile bootstrap intervals.
- :mod:`~speechdistill.scoring.compare`: two systems, the paired bootstrap of their WER difference.
- :mod:`~speechdistill.scoring.reports`: the score dir (``result.txt``, ``per_utt``, ``per_spk``, …).
- :mod:`~speechdistill.scoring.results`: ``results.json`` and RESULTS.md.
- :mod:`~speechdistill.scoring.provenance`: library versions and the git commit of a result.
"""

from speechdistill.scoring.bootstrap import bootstrap_ci
from speechdistill.scoring.compare import PairedComparison, paired_bootstrap
from speechdistill.scoring.provenance import git_revision, versions
from speechdistill.scoring.reports import (
    format_kaldi_summary,
    format_per_spk,
    format_per_utt,
    format_result_txt,
    write_score_dir,
)
from speechdistill.scoring.results import (
    SPEED_COLUMNS,
    format_results_md,
    infer_names,
    load_results,
    save_results,
    update_results,
    write_results_md,
)
from speechdistill.scoring.wer import (
    GAP,
    SCHEMA,
    Counts,
    ScoreResult,
    SpeakerScore,
    UttScore,
    ViewScore,
    score,
)

__all__ = [
    "GAP",
    "SCHEMA",
    "SPEED_COLUMNS",
    "Counts",
    "PairedComparison",
    "ScoreResult",
    "SpeakerScore",
    "UttScore",
    "ViewScore",
    "bootstrap_ci",
    "format_kaldi_summary",
    "format_per_spk",
    "format_per_utt",
    "format_result_txt",
    "format_results_md",
    "git_revision",
    "infer_names",
    "load_results",
    "paired_bootstrap",
    "save_results",
    "score",
    "update_results",
    "versions",
    "write_results_md",
    "write_score_dir",
]
