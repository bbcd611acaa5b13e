"""Label-quality scores for pseudo-labels: a registry by name, every score "higher = better label".

Each score maps every utterance to a float; an utterance it cannot judge gets NaN (missing
statistic, unreadable audio, no reference), which fails every threshold and ranks last. Scores are
written as ``utt2score_<name>``.

From the pseudo-label statistics (no new decode):

- ``confidence``: the teacher's mean token log-probability (``utt2avg_logprob``).
- ``entropy_mean`` / ``entropy_max``: minus the mean / largest token entropy (nats).
- ``min_token_prob``: the smallest token probability.
- ``no_speech``: 1 − ``utt2no_speech_prob``.

Hallucination heuristics (from the statistics, or computed from ``text.teacher`` with
:mod:`speechdistill.pseudo_label.stats`, as the pseudo_label stage does, when the file is missing):

- ``compression_ratio``: minus the zlib compression ratio of the label (Whisper's test: a label
  passes Whisper's 2.4 limit when ``compression_ratio>=-2.4``).
- ``ngram_repeat``: minus the largest number of consecutive repeats of a word n-gram (n = 1..4);
  -1 = no repetition (0 for an empty label).
- ``chars_per_sec``: 0 when the label's characters per second lie inside ``cps_range``, else minus
  the distance to the range (``chars_per_sec>=0`` = inside the range).
- ``empty``: 1 for a label with words after normalisation, 0 for an empty one.

Agreement with another transcript of the same audio (both normalised; the other transcript is the
reference, the label the hypothesis; score = −WER or −CER, with an empty reference counting as
one word, so 0 = full agreement and the score is always finite):

- ``proxy_wer`` / ``proxy_cer``: a proxy model's transcript (Whisper, CTC or CTranslate2 dir).
- ``self_wer`` / ``self_cer``: the teacher's own transcript of perturbed audio (noise at an SNR,
  speed perturbation), averaged over the perturbations.
- ``supervised_wer`` / ``supervised_cer``: the human reference ``text`` (distil-whisper's filter,
  per segment). NaN without a reference or when it normalises to nothing (distil-whisper drops
  those: their WER is unknown). Not label-free.

Language model: ``lm_nll``: minus the label's mean per-token negative log-likelihood (nats) under a
causal LM.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechdistill.datadir import DataDir, read_floats
from speechdistill.pseudo_label.stats import compression_ratio, max_ngram_repeat
from speechdistill.text import get_normalizer

log = logging.getLogger(__name__)

NAN = float("nan")
#: File name of a score in the score and output dirs.
SCORE_FILE = "utt2score_{}"
#: Perturbations used by ``self_wer`` when none are given. On mini_en's 300 training labels the
#: ROC-AUC of ``self_wer`` at flagging label WER > 40 % was 0.88 with ``speed:0.9``, 0.80 with
#: ``noise:20`` and 0.71 with ``noise:10``.
DEFAULT_PERTURBATIONS = ("speed:0.9",)


@dataclass
class ScoreOptions:
    """What the model- and text-based scores need (the CLI's options)."""

    normalizer: str = "english"
    normalizer_options: Mapping[str, Any] = field(default_factory=dict)
    cps_range: tuple[float, float] = (5.0, 25.0)
    proxy: str | None = None
    proxy_language: str | None = None
    teacher: str | None = None
    perturbations: Sequence[str] = DEFAULT_PERTURBATIONS
    lm: str | None = None
    batch_size: int = 16
    max_new_tokens: int | None = None
    device: str = "cpu"
    dtype: str | None = None
    language: str | None = None
    seed: int = 0


@dataclass
class ScoreContext:
    """The input of every score: the data dir, its labels, references and options."""

    data: DataDir
    utts: list[str]
    labels: dict[str, str]
    refs: dict[str, str] = field(default_factory=dict)
    options: ScoreOptions = field(default_factory=ScoreOptions)
    cache_dir: Path | None = None
    memo: dict[str, Any] = field(default_factory=dict)

    def stat(self, name: str) -> dict[str, float] | None:
        """``utt2<name>`` of the data dir as floats, or None when the file is missing."""
        if not self.data.exists(f"utt2{name}"):
            return None
        key = f"stat:{name}"
        if key not in self.memo:
            self.memo[key] = read_floats(self.data.file(f"utt2{name}"))
        return self.memo[key]

    def durations(self) -> dict[str, float]:
        if "durations" not in self.memo:
            if self.data.exists("utt2dur"):
                self.memo["durations"] = self.data.utt2dur()
            else:
                from speechdistill.audio import compute_utt2dur

                log.info("%s has no utt2dur: reading durations from the audio", self.data.path)
                self.memo["durations"] = compute_utt2dur(self.data, write=False)
        return self.memo["durations"]

    def normalize(self, text: str) -> str:
        return get_normalizer(self.options.normalizer, **dict(self.options.normalizer_options))(
            text
        )


@dataclass(frozen=True)
class Score:
    """A registered score: how to compute it and whether it can be computed here."""

    name: str
    help: str
    compute: Callable[[ScoreContext], dict[str, float]]
    unavailable: Callable[[ScoreContext], str | None]
    label_free: bool = True
    model_based: bool = False


SCORES: dict[str, Score] = {}


def register_score(
    name: str,
    help: str,
    *,
    unavailable: Callable[[ScoreContext], str | None] = lambda ctx: None,
    label_free: bool = True,
    model_based: bool = False,
) -> Callable[
    [Callable[[ScoreContext], dict[str, float]]], Callable[[ScoreContext], dict[str, float]]
]:
    """Decorator adding a score function to :data:`SCORES`."""

    def deco(fn: Callable[[ScoreContext], dict[str, float]]):
        if name in SCORES:
            raise ValueError(f"score {name!r} is already registered")
        SCORES[name] = Score(name, help, fn, unavailable, label_free, model_based)
        return fn

    return deco


def get_score(name: str) -> Score:
    try:
        return SCORES[name]
    except KeyError:
        raise ValueError(f"unknown score {name!r}; valid names: {', '.join(SCORES)}") from None


def compute_score(name: str, ctx: ScoreContext) -> dict[str, float]:
    """One score for every utterance of ``ctx`` (NaN where it cannot judge); errors say why not."""
    s = get_score(name)
    reason = s.unavailable(ctx)
    if reason:
        raise ValueError(f"score {name!r} cannot be computed: {reason}")
    values = s.compute(ctx)
    out = {u: float(values.get(u, NAN)) for u in ctx.utts}
    missing = sum(math.isnan(v) for v in out.values())
    if missing:
        log.warning("score %s: %d of %d utterances have no value (NaN)", name, missing, len(out))
    return out


# --------------------------------------------------------------------------------------------------
# statistics of the pseudo-label stage


def _minus(x: float) -> float:
    """-x, but 0.0 rather than -0.0 (files and reports show "0")."""
    return 0.0 - float(x)


def _needs(*stats: str) -> Callable[[ScoreContext], str | None]:
    def check(ctx: ScoreContext) -> str | None:
        for s in stats:
            if not ctx.data.exists(f"utt2{s}"):
                return f"no utt2{s} in {ctx.data.path} (written by the pseudo_label stage)"
        return None

    return check


def _from_stat(ctx: ScoreContext, stat: str, fn: Callable[[float], float]) -> dict[str, float]:
    values = ctx.stat(stat) or {}
    return {u: fn(values[u]) for u in ctx.utts if u in values}


@register_score(
    "confidence",
    "teacher confidence: mean token log-probability (utt2avg_logprob)",
    unavailable=_needs("avg_logprob"),
)
def _confidence(ctx: ScoreContext) -> dict[str, float]:
    return _from_stat(ctx, "avg_logprob", lambda x: x)


@register_score(
    "entropy_mean",
    "minus the mean token entropy in nats (utt2entropy_mean)",
    unavailable=_needs("entropy_mean"),
)
def _entropy_mean(ctx: ScoreContext) -> dict[str, float]:
    return _from_stat(ctx, "entropy_mean", _minus)


@register_score(
    "entropy_max",
    "minus the largest token entropy in nats (utt2entropy_max)",
    unavailable=_needs("entropy_max"),
)
def _entropy_max(ctx: ScoreContext) -> dict[str, float]:
    return _from_stat(ctx, "entropy_max", _minus)


@register_score(
    "min_token_prob",
    "the smallest token probability (utt2min_token_prob)",
    unavailable=_needs("min_token_prob"),
)
def _min_token_prob(ctx: ScoreContext) -> dict[str, float]:
    return _from_stat(ctx, "min_token_prob", lambda x: x)


@register_score(
    "no_speech",
    "1 - the no-speech probability (utt2no_speech_prob)",
    unavailable=_needs("no_speech_prob"),
)
def _no_speech(ctx: ScoreContext) -> dict[str, float]:
    return _from_stat(ctx, "no_speech_prob", lambda x: 1.0 - x)


# --------------------------------------------------------------------------------------------------
# hallucination heuristics


def _labels_needed(ctx: ScoreContext) -> str | None:
    return None if ctx.labels else f"no labels (text.teacher) in {ctx.data.path}"


@register_score(
    "compression_ratio",
    "minus the label's zlib compression ratio (Whisper rejects > 2.4)",
    unavailable=_labels_needed,
)
def _compression_ratio(ctx: ScoreContext) -> dict[str, float]:
    stat = ctx.stat("compression_ratio")
    if stat is not None:
        return {u: _minus(v) for u, v in stat.items()}
    return {u: _minus(compression_ratio(t)) for u, t in ctx.labels.items()}


@register_score(
    "ngram_repeat",
    "minus the largest number of consecutive repeats of a word 1..4-gram (-1 = none)",
    unavailable=_labels_needed,
)
def _ngram_repeat(ctx: ScoreContext) -> dict[str, float]:
    stat = ctx.stat("max_ngram_repeat")
    if stat is not None:
        return {u: _minus(v) for u, v in stat.items()}
    return {u: _minus(max_ngram_repeat(t)) for u, t in ctx.labels.items()}


def cps_score(cps: float, lo: float, hi: float) -> float:
    """0 inside [lo, hi], else minus the distance (characters per second) to the range."""
    return _minus(max(0.0, lo - cps, cps - hi))


@register_score(
    "chars_per_sec",
    "0 when the label's characters per second are inside the range, else minus the distance",
    unavailable=_labels_needed,
)
def _chars_per_sec(ctx: ScoreContext) -> dict[str, float]:
    lo, hi = ctx.options.cps_range
    stat = ctx.stat("chars_per_sec")
    if stat is None:
        dur = ctx.durations()
        stat = {u: len(t) / dur[u] for u, t in ctx.labels.items() if dur.get(u)}
    return {u: cps_score(v, lo, hi) for u, v in stat.items()}


@register_score(
    "empty",
    "1 for a label with words after normalisation, 0 for an empty label",
    unavailable=_labels_needed,
)
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


def _neg(values: Mapping[str, float]) -> dict[str, float]:
    return {u: _minus(v) for u, v in values.items()}


# supervised --------------------------------------------------------------------------------------


def _refs_needed(ctx: ScoreContext) -> str | None:
    return None if ctx.refs else "no reference transcripts (text, or --ref)"


def _supervised(ctx: ScoreContext) -> Agreement:
    return _agree(ctx, "agree:supervised", lambda: dict(ctx.refs))


@register_score(
    "supervised_wer",
    "minus the label's WER against the reference text (NaN without reference)",
    unavailable=_refs_needed,
    label_free=False,
)
def _supervised_wer(ctx: ScoreContext) -> dict[str, float]:
    a = _supervised(ctx)
    return {u: _minus(v) for u, v in a.wer.items() if u not in a.empty_ref}


@register_score(
    "supervised_cer",
    "minus the label's CER against the reference text (NaN without reference)",
    unavailable=_refs_needed,
    label_free=False,
)
def _supervised_cer(ctx: ScoreContext) -> dict[str, float]:
    a = _supervised(ctx)
    return {u: _minus(v) for u, v in a.cer.items() if u not in a.empty_ref}


# proxy model -------------------------------------------------------------------------------------


def _proxy_needed(ctx: ScoreContext) -> str | None:
    return None if ctx.options.proxy else "needs a proxy model (--proxy MODEL_DIR)"


def _proxy(ctx: ScoreContext) -> Agreement:
    from speechdistill.filter.models import proxy_transcripts

    return _agree(ctx, "agree:proxy", lambda: proxy_transcripts(ctx))


@register_score(
    "proxy_wer",
    "minus the WER between the label and a proxy model's transcript",
    unavailable=_proxy_needed,
    model_based=True,
)
def _proxy_wer(ctx: ScoreContext) -> dict[str, float]:
    return _neg(_proxy(ctx).wer)


@register_score(
    "proxy_cer",
    "minus the CER between the label and a proxy model's transcript",
    unavailable=_proxy_needed,
    model_based=True,
)
def _proxy_cer(ctx: ScoreContext) -> dict[str, float]:
    return _neg(_proxy(ctx).cer)


# self-agreement ----------------------------------------------------------------------------------


def _teacher_needed(ctx: ScoreContext) -> str | None:
    if not ctx.options.teacher:
        return "needs the teacher model (--teacher MODEL_DIR)"
    if not ctx.options.perturbations:
        return "needs at least one perturbation (--perturb)"
    return None


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


@register_score(
    "self_wer",
    "minus the WER between the label and the teacher's transcript of perturbed audio",
    unavailable=_teacher_needed,
    model_based=True,
)
def _self_wer(ctx: ScoreContext) -> dict[str, float]:
    return _neg(_self(ctx)[0])


@register_score(
    "self_cer",
    "minus the CER between the label and the teacher's transcript of perturbed audio",
    unavailable=_teacher_needed,
    model_based=True,
)
def _self_cer(ctx: ScoreContext) -> dict[str, float]:
    return _neg(_self(ctx)[1])


# language model ----------------------------------------------------------------------------------


@register_score(
    "lm_nll",
    "minus the label's mean per-token negative log-likelihood under a causal LM",
    unavailable=lambda ctx: None if ctx.options.lm else "needs a causal LM (--lm MODEL_DIR)",
    model_based=True,
)
def _lm_nll(ctx: ScoreContext) -> dict[str, float]:
    from speechdistill.filter.models import lm_nll

    nll = lm_nll(ctx)
    return {u: _minus(v) for u, v in nll.items() if not math.isnan(v)}


# --------------------------------------------------------------------------------------------------


def default_scores(ctx: ScoreContext) -> list[str]:
    """Every registered score that can be computed from what ``ctx`` has (models when given)."""
    return [name for name, s in SCORES.items() if s.unavailable(ctx) is None]


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
