"""Stage ``pseudo_label``: the teacher transcribes a data dir, with the statistics filtering needs.

Input: any data dir (``text`` optional). Output: a data dir with the input's files (restricted
to the labelled utterances), ``text.teacher`` (and ``text.teacher_ts`` with timestamp tokens
when asked), ``utt2teacher_tokens`` (the generated token ids, EOS included, so that training
and the RS-KD cache use exactly the teacher's tokens; without timestamp tokens) and with
timestamps ``utt2teacher_tokens_ts`` (the generated ids, timestamp tokens included), one
``utt2<stat>`` file per statistic of :data:`~speechdistill.pseudo_label.stats.STATS` (of the
generated sequence), ``utt2dur``, ``bad_utts`` (unreadable audio, and audio longer than the
30 s window or ``max_duration``: skipped, never truncated) and ``pseudo_label.json`` (counts,
speed); optionally the teacher caches (:mod:`speechdistill.cache`: with timestamps, RS-KD
samples of both labels). Resumable after a kill, and shardable over
recipe jobs and ``accelerate launch`` processes, with the same result.

- :mod:`~speechdistill.pseudo_label.config`: the settings and the label of one utterance;
- :mod:`~speechdistill.pseudo_label.plan`: the fixed batch plan and the per-shard results (resume);
- :mod:`~speechdistill.pseudo_label.hf`: the ``hf`` backend (transformers);
- :mod:`~speechdistill.pseudo_label.ct2`: the ``ct2`` backend (CTranslate2, for CPU throughput);
- :mod:`~speechdistill.pseudo_label.stats`: the statistics, from the raw logits and the text;
- :mod:`~speechdistill.pseudo_label.stage`: :func:`pseudo_label`, :func:`finalize`.
"""

from speechdistill.pseudo_label.config import WORK_DIR, PseudoLabelConfig, UttLabel
from speechdistill.pseudo_label.ct2 import CT2Labeler
from speechdistill.pseudo_label.hf import HFLabeler
from speechdistill.pseudo_label.plan import Plan, make_plan
from speechdistill.pseudo_label.stage import (
    PseudoLabelSummary,
    finalize,
    make_labeler,
    pseudo_label,
)
from speechdistill.pseudo_label.stats import STATS

__all__ = [
    "STATS",
    "WORK_DIR",
    "CT2Labeler",
    "HFLabeler",
    "Plan",
    "PseudoLabelConfig",
    "PseudoLabelSummary",
    "UttLabel",
    "finalize",
    "make_labeler",
    "make_plan",
    "pseudo_label",
]
