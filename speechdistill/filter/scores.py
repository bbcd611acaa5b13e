"""Label-quality scores for pseudo-labels: every score "higher = better label", declared in one
table, :data:`SCORES`, at the end of this module (name, meaning, function, what it needs).

Each score maps every utterance to a float; an utterance it cannot judge gets NaN (missing
statistic, unreadable audio, no reference), which fails every threshold and ranks last. Scores are
written as ``utt2score_<name>``.

The hallucination heuristics read the pseudo_label stage's statistics, or compute them from
``text.teacher`` with :mod:`speechdistill.whisper.heuristics` (as that stage does) when the file is
missing.

The agreement scores compare the label with another transcript of the same audio (both
normalised; the other transcript is the reference, the label the hypothesis): score = −WER or −CER,
with an empty reference counting as one word, so 0 = full agreement and the score is always finite.
The other transcript is a proxy model's (Whisper, CTC or CTranslate2 dir), the teacher's own on
perturbed audio (noise at an SNR, speed perturbation; averaged over the perturbations) or the human
reference ``text`` (the ``supervised_*`` scores, distil-whisper's filter, per segment: not
label-free).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechdistill.filter.context import ScoreContext
from speechdistill.whisper.heuristics import compression_ratio, max_ngram_repeat

__all__ = [
    "SCORES",
    "SCORE_FILE",
    "Agreement",
    "Score",
    "agreement",
    "compute_score",
    "cps_score",
    "default_scores",
    "get_score",
    "write_scores",
]

log = logging.getLogger(__name__)

NAN = float("nan")
#: File name of a score in the score and output dirs.
SCORE_FILE = "utt2score_{}"


@dataclass(frozen=True)
class Score:
    """One score: its name, its meaning (``help``), how to compute it, and what it needs.

    ``needs(ctx)`` is None when ``ctx`` has what the score needs, else the reason it cannot be
    computed.
    """

    name: str
    help: str
    compute: Callable[[ScoreContext], dict[str, float]]
    needs: Callable[[ScoreContext], str | None]
    label_free: bool = True
    model_based: bool = False


def get_score(name: str) -> Score:
    """The score called ``name``; the error lists the valid names."""
    try:
        return SCORES[name]
    except KeyError:
        raise ValueError(f"unknown score {name!r}; valid names: {', '.join(SCORES)}") from None


def compute_score(name: str, ctx: ScoreContext) -> dict[str, float]:
    """One score for every utterance of ``ctx`` (NaN where it cannot judge); errors say why not."""
    s = get_score(name)
    reason = s.needs(ctx)
    if reason:
        raise ValueError(f"score {name!r} cannot be computed: {reason}")
    values = s.compute(ctx)
    out = {u: float(values.get(u, NAN)) for u in ctx.utts}
    missing = sum(math.isnan(v) for v in out.values())
    if missing:
        log.warning("score %s: %d of %d utterances have no value (NaN)", name, missing, len(out))
    return out


def default_scores(ctx: ScoreContext) -> list[str]:
    """Every score that can be computed from what ``ctx`` has (models when given)."""
    return [name for name, s in SCORES.items() if s.needs(ctx) is None]


def write_scores(
    directory: Path,
    scores: Mapping[str, Mapping[str, float]],
    only: set[str] | None = None,
) -> list[Path]:
    """Write each score as ``directory/utt2score_<name>`` (C-sorted, atomic), for ``only``'s utts."""
    from speechdistill.datadir import write_kv

    paths = []
    for name, values in scores.items():
        path = directory / SCORE_FILE.format(name)
        table = {u: _fmt(v) for u, v in values.items() if only is None or u in only}
        write_kv(path, table)
        paths.append(path)
    return paths


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:.6g}"


def _minus(x: float) -> float:
    """-x, but 0.0 rather than -0.0 (files and reports show "0")."""
    return 0.0 - float(x)


def _neg(values: Mapping[str, float]) -> dict[str, float]:
    return {u: _minus(v) for u, v in values.items()}


# --------------------------------------------------------------------------------------------------
# what a score needs (None: everything is there; else what is missing)


def _stats(*stats: str) -> Callable[[ScoreContext], str | None]:
    def check(ctx: ScoreContext) -> str | None:
        for s in stats:
            if not ctx.data.exists(f"utt2{s}"):
                return f"no utt2{s} in {ctx.data.path} (written by the pseudo_label stage)"
        return None

    return check


def _languages(ctx: ScoreContext) -> str | None:
    if ctx.data.exists("utt2lang_prob"):
        return None
    return (
        f"no utt2lang_prob in {ctx.data.path} (written by the pseudo_label stage with a "
        "multilingual teacher)"
    )


def _labels(ctx: ScoreContext) -> str | None:
    return None if ctx.labels else f"no labels (text.teacher) in {ctx.data.path}"


def _refs(ctx: ScoreContext) -> str | None:
    return None if ctx.refs else "no reference transcripts (text, or --ref)"


def _proxy_model(ctx: ScoreContext) -> str | None:
    return None if ctx.options.proxy else "needs a proxy model (--proxy MODEL_DIR)"


def _teacher_model(ctx: ScoreContext) -> str | None:
    if not ctx.options.teacher:
        return "needs the teacher model (--teacher MODEL_DIR)"
    if not ctx.options.perturbations:
        return "needs at least one perturbation (--perturb)"
    return None


def _lm_model(ctx: ScoreContext) -> str | None:
    return None if ctx.options.lm else "needs a causal LM (--lm MODEL_DIR)"


# --------------------------------------------------------------------------------------------------
# statistics of the pseudo-label stage


def _from_stat(
    stat: str, fn: Callable[[float], float]
) -> Callable[[ScoreContext], dict[str, float]]:
    """A score that is ``fn`` of the statistic ``utt2<stat>``."""

    def compute(ctx: ScoreContext) -> dict[str, float]:
        values = ctx.stat(stat) or {}
        return {u: fn(values[u]) for u in ctx.utts if u in values}

    return compute


# --------------------------------------------------------------------------------------------------
# hallucination heuristics


def _compression_ratio(ctx: ScoreContext) -> dict[str, float]:
    stat = ctx.stat("compression_ratio")
    if stat is not None:
        return {u: _minus(v) for u, v in stat.items()}
    return {u: _minus(compression_ratio(t)) for u, t in ctx.labels.items()}


def _ngram_repeat(ctx: ScoreContext) -> dict[str, float]:
    stat = ctx.stat("max_ngram_repeat")
    if stat is not None:
        return {u: _minus(v) for u, v in stat.items()}
    return {u: _minus(max_ngram_repeat(t)) for u, t in ctx.labels.items()}


def cps_score(cps: float, lo: float, hi: float) -> float:
    """0 inside [lo, hi], else minus the distance (characters per second) to the range."""
    return _minus(max(0.0, lo - cps, cps - hi))


def _chars_per_sec(ctx: ScoreContext) -> dict[str, float]:
    lo, hi = ctx.options.cps_range
    stat = ctx.stat("chars_per_sec")
    if stat is None:
        dur = ctx.durations()
        stat = {u: len(t) / dur[u] for u, t in ctx.labels.items() if dur.get(u)}
    return {u: cps_score(v, lo, hi) for u, v in stat.items()}


def _empty(ctx: ScoreContext) -> dict[str, float]:
    return {u: 1.0 if ctx.normalize(t) else 0.0 for u, t in ctx.labels.items()}


# --------------------------------------------------------------------------------------------------
# agreement with other transcripts


@dataclass(frozen=True)
class Agreement:
    """Per-utterance error rates of the labels against other transcripts (the references)."""

    wer: dict[str, float]
    cer: dict[str, float]
    empty_ref: frozenset[str]


def agreement(
    others: Mapping[str, str],
    labels: Mapping[str, str],
    normalizer: str = "english",
    normalizer_options: Mapping[str, Any] | None = None,
) -> Agreement:
    """WER/CER of ``labels`` against ``others`` (utt → text), via :func:`speechdistill.scoring.score`.

    Only utterances in both are scored. Rates are errors / max(1, reference length), so an empty
    reference counts as one word (or character) and the rate stays finite.
    """
    from speechdistill.scoring import score

    utts = [u for u in others if u in labels]
    if not utts:
        return Agreement({}, {}, frozenset())
    result = score(
        {u: others[u] for u in utts},
        {u: labels[u] for u in utts},
        normalizer=normalizer,
        normalizer_options=normalizer_options,
        bootstrap=0,
    )
    wer, cer, empty = {}, {}, set()
    for s in result.normalized.utts:
        wer[s.utt] = s.words.err / max(1, s.words.ref)
        cer[s.utt] = s.chars.err / max(1, s.chars.ref)
        if not s.ref:
            empty.add(s.utt)
    return Agreement(wer, cer, frozenset(empty))


def _agree(ctx: ScoreContext, key: str, others: Callable[[], dict[str, str]]) -> Agreement:
    if key not in ctx.memo:
        opts = ctx.options
        ctx.memo[key] = agreement(others(), ctx.labels, opts.normalizer, opts.normalizer_options)
    return ctx.memo[key]


def _supervised(ctx: ScoreContext) -> Agreement:
    return _agree(ctx, "agree:supervised", lambda: dict(ctx.refs))


def _supervised_wer(ctx: ScoreContext) -> dict[str, float]:
    a = _supervised(ctx)
    return {u: _minus(v) for u, v in a.wer.items() if u not in a.empty_ref}


def _supervised_cer(ctx: ScoreContext) -> dict[str, float]:
    a = _supervised(ctx)
    return {u: _minus(v) for u, v in a.cer.items() if u not in a.empty_ref}


def _proxy(ctx: ScoreContext) -> Agreement:
    from speechdistill.filter.models import proxy_transcripts

    return _agree(ctx, "agree:proxy", lambda: proxy_transcripts(ctx))


def _proxy_wer(ctx: ScoreContext) -> dict[str, float]:
    return _neg(_proxy(ctx).wer)


def _proxy_cer(ctx: ScoreContext) -> dict[str, float]:
    return _neg(_proxy(ctx).cer)


def _self(ctx: ScoreContext) -> tuple[dict[str, float], dict[str, float]]:
    from speechdistill.filter.models import perturbed_transcripts

    key = "agree:self"
    if key not in ctx.memo:
        per = [
            _agree(ctx, f"agree:self:{p}", lambda p=p: perturbed_transcripts(ctx, p))
            for p in ctx.options.perturbations
        ]
        ctx.memo[key] = (_mean_over(per, "wer"), _mean_over(per, "cer"))
    return ctx.memo[key]


def _mean_over(parts: Sequence[Agreement], what: str) -> dict[str, float]:
    tables = [getattr(p, what) for p in parts]
    common = set.intersection(*(set(t) for t in tables))
    return {u: sum(t[u] for t in tables) / len(tables) for u in common}


def _self_wer(ctx: ScoreContext) -> dict[str, float]:
    return _neg(_self(ctx)[0])


def _self_cer(ctx: ScoreContext) -> dict[str, float]:
    return _neg(_self(ctx)[1])


# --------------------------------------------------------------------------------------------------
# language model


def _lm_nll(ctx: ScoreContext) -> dict[str, float]:
    from speechdistill.filter.models import lm_nll

    nll = lm_nll(ctx)
    return {u: _minus(v) for u, v in nll.items() if not math.isnan(v)}


# --------------------------------------------------------------------------------------------------
# the scores


def _table(*scores: Score) -> dict[str, Score]:
    table = {s.name: s for s in scores}
    if len(table) != len(scores):
        raise ValueError("two scores have the same name")
    return table


#: Every score by name, in the order of the report and of ``--help``.
SCORES: dict[str, Score] = _table(
    # from the pseudo-label statistics (no new decode)
    Score(
        "confidence",
        "teacher confidence: mean token log-probability (utt2avg_logprob)",
        _from_stat("avg_logprob", lambda x: x),
        needs=_stats("avg_logprob"),
    ),
    Score(
        "entropy_mean",
        "minus the mean token entropy in nats (utt2entropy_mean)",
        _from_stat("entropy_mean", _minus),
        needs=_stats("entropy_mean"),
    ),
    Score(
        "entropy_max",
        "minus the largest token entropy in nats (utt2entropy_max)",
        _from_stat("entropy_max", _minus),
        needs=_stats("entropy_max"),
    ),
    Score(
        "min_token_prob",
        "the smallest token probability (utt2min_token_prob)",
        _from_stat("min_token_prob", lambda x: x),
        needs=_stats("min_token_prob"),
    ),
    Score(
        "no_speech",
        "1 - the no-speech probability (utt2no_speech_prob)",
        _from_stat("no_speech_prob", lambda x: 1.0 - x),
        needs=_stats("no_speech_prob"),
    ),
    Score(
        # a clip of another language has a low one (English clips under --language pt with
        # Whisper base: <= 0.0005, espeak Portuguese >= 0.011): "lang_id>=P" rejects them
        "lang_id",
        "a multilingual teacher's probability of the expected language at the first decoder "
        "step, over the language tokens (utt2lang_prob)",
        _from_stat("lang_prob", lambda x: x),
        needs=_languages,
    ),
    # hallucination heuristics
    Score(
        # a label passes Whisper's 2.4 limit when compression_ratio>=-2.4
        "compression_ratio",
        "minus the label's zlib compression ratio (Whisper rejects > 2.4)",
        _compression_ratio,
        needs=_labels,
    ),
    Score(
        # 0 for an empty label
        "ngram_repeat",
        "minus the largest number of consecutive repeats of a word 1..4-gram (-1 = none)",
        _ngram_repeat,
        needs=_labels,
    ),
    Score(
        # the range is ScoreOptions.cps_range; chars_per_sec>=0 = inside it
        "chars_per_sec",
        "0 when the label's characters per second are inside the range, else minus the distance",
        _chars_per_sec,
        needs=_labels,
    ),
    Score(
        "empty",
        "1 for a label with words after normalisation, 0 for an empty label",
        _empty,
        needs=_labels,
    ),
    # agreement with the human reference; NaN also when the reference normalises to nothing
    # (distil-whisper drops those: their WER is unknown)
    Score(
        "supervised_wer",
        "minus the label's WER against the reference text (NaN without reference)",
        _supervised_wer,
        needs=_refs,
        label_free=False,
    ),
    Score(
        "supervised_cer",
        "minus the label's CER against the reference text (NaN without reference)",
        _supervised_cer,
        needs=_refs,
        label_free=False,
    ),
    # agreement with a proxy model (Whisper, CTC or CTranslate2 dir)
    Score(
        "proxy_wer",
        "minus the WER between the label and a proxy model's transcript",
        _proxy_wer,
        needs=_proxy_model,
        model_based=True,
    ),
    Score(
        "proxy_cer",
        "minus the CER between the label and a proxy model's transcript",
        _proxy_cer,
        needs=_proxy_model,
        model_based=True,
    ),
    # self-agreement: the teacher on perturbed audio, averaged over the perturbations
    Score(
        "self_wer",
        "minus the WER between the label and the teacher's transcript of perturbed audio",
        _self_wer,
        needs=_teacher_model,
        model_based=True,
    ),
    Score(
        "self_cer",
        "minus the CER between the label and the teacher's transcript of perturbed audio",
        _self_cer,
        needs=_teacher_model,
        model_based=True,
    ),
    # language model
    Score(
        "lm_nll",
        "minus the label's mean per-token negative log-likelihood under a causal LM",
        _lm_nll,
        needs=_lm_model,
        model_based=True,
    ),
)
