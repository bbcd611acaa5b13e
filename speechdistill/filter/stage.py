"""The filter stage: score the pseudo-labels, select, write the filtered data dir and a report.

``filter_data_dir`` reads a pseudo-labelled data dir (``text.teacher`` and the statistics of the
pseudo_label stage), computes the scores, applies the ``--keep`` rules and writes

- ``OUT/``: the input restricted to the kept utterances (``subset`` then ``fix``; validated), with
  the kept utterances' ``utt2score_<name>`` files and, when weights are asked for, ``utt2weight``;
- ``EXP/scores/utt2score_<name>``: every score of every input utterance;
- ``EXP/cache/``: model transcripts (``text.proxy``, ``text.self_*``) reused by reruns;
- ``EXP/report.{json,md}`` and ``EXP/plots/*.png`` (diagnostics, with references).

References (``--ref FILE``, else the data dir's ``text``) are used only for the diagnostics, for
``auto`` and for the ``supervised_*`` scores; ``--labelled LIST`` restricts them to some
utterances. With ``labelled_max_wer`` the labelled utterances are kept iff their label WER is at
most that value, whatever the rules say (the diagnostics describe the rules before that).
Utterances without an entry in ``text.teacher`` are dropped (counted).

``mode="weight"`` keeps every utterance that passes the thresholds (the quotas drop nothing) and
writes ``OUT/utt2weight`` from the first quota's score (or ``weight``'s):
:mod:`~speechdistill.filter.weights`. ``weight`` alone writes weights for what ``drop`` keeps.
Without either, the input's own ``utt2weight`` (if any) is carried for the kept utterances;
weights the filter computes replace it. ``min_hours``: a kept selection under that many hours is
a warning and a line of the report, and with ``fallback="weight"`` the stage switches to weight
mode.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from speechdistill import __version__
from speechdistill.datadir import (
    DataDir,
    DataDirError,
    check_stage_input,
    fix,
    read_kv,
    subset,
    validate,
)
from speechdistill.datadir.ops import read_keys
from speechdistill.datadir.weights import UTT2WEIGHT, is_weight, read_weights, write_weights
from speechdistill.filter.context import ScoreContext, ScoreOptions
from speechdistill.filter.diagnostics import (
    DEFAULT_BAD_WERS,
    AutoChoice,
    LabelQuality,
    candidate_values,
    choose_auto,
    label_quality,
    plot_histograms,
    plot_roc,
    roc_auc,
    selection_metrics,
)
from speechdistill.filter.report import count_hours, score_summary, write_report
from speechdistill.filter.scores import SCORES, compute_score, default_scores, write_scores
from speechdistill.filter.select import Rule, ScoreExpr, parse_rule, parse_score, select
from speechdistill.filter.weights import DEFAULT_FLOOR, utterance_weights, weight_summary
from speechdistill.utils import PathLike, locks_run
from speechdistill.whisper.language import check_model_language

log = logging.getLogger(__name__)

LABELS = "text.teacher"
MODES = ("drop", "weight")
FALLBACKS = ("none", "weight")


@dataclass
class FilterConfig:
    """Everything the filter stage needs (the CLI's options)."""

    data: PathLike
    out: PathLike
    exp_dir: PathLike | None = None
    scores: Sequence[str] = ()
    keep: Sequence[str] = ()
    options: ScoreOptions = field(default_factory=ScoreOptions)
    ref: PathLike | None = None
    labelled: PathLike | None = None
    bad_wers: Sequence[float] = DEFAULT_BAD_WERS
    bad_wer: float = 0.4
    objective: str = "f1"
    labelled_max_wer: float | None = None
    plots: bool = True
    mode: str = "drop"  # "weight": the quotas drop nothing, they rank utt2weight
    weight: str | None = None  # the score of utt2weight (a name or rank_avg(...))
    weight_floor: float = DEFAULT_FLOOR
    min_hours: float | None = None  # warn (and fall back) when less is kept
    fallback: str = "none"  # "weight": switch to weight mode when under min_hours


@dataclass
class FilterResult:
    """What the stage did (``report`` is the content of report.json)."""

    out: Path
    exp_dir: Path
    kept: list[str]
    scores: dict[str, dict[str, float]]
    report: dict[str, Any]
    auto: AutoChoice | None = None


def _references(config: FilterConfig, data: DataDir, utts: list[str]) -> tuple[dict[str, str], str]:
    if config.ref is not None:
        refs, where = read_kv(config.ref), str(config.ref)
    elif data.exists("text"):
        refs, where = data.text(), str(data.file("text"))
        if len(set(refs) & set(utts)) < len(utts):
            raise DataDirError(
                f"text covers {len(set(refs) & set(utts))} of {len(utts)} utterances: fix would "
                "drop the others; give partial references with --ref FILE instead",
                data.file("text"),
            )
    else:
        return {}, ""
    unknown = len(set(refs) - set(utts))
    if unknown:
        log.warning(
            "%s: %d references for utterances not in the data dir (ignored)", where, unknown
        )
    if config.labelled is not None:
        chosen = set(read_keys(config.labelled))
        refs = {u: t for u, t in refs.items() if u in chosen}
        where += f" restricted to {config.labelled}"
        missing = len(chosen - set(refs))
        if missing:
            log.warning("%s: %d labelled utterances have no reference", config.labelled, missing)
    return {u: refs[u] for u in utts if u in refs}, where


def _check_bad_wer(config: FilterConfig) -> None:
    for t in (*config.bad_wers, config.bad_wer):
        if not (math.isfinite(t) and t >= 0):
            raise ValueError(f"bad-label WER thresholds must be >= 0, got {t}")


def _weight_expr(config: FilterConfig, rules: list[Rule]) -> ScoreExpr | None:
    """The score of ``utt2weight`` should weights be written: ``weight``, else the first
    quota's; refuses settings that would need one and have none."""
    if config.mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}, got {config.mode!r}")
    if config.fallback not in FALLBACKS:
        raise ValueError(
            f"--fallback must be one of {', '.join(FALLBACKS)}, got {config.fallback!r}"
        )
    if not is_weight(config.weight_floor):
        raise ValueError(f"--weight-floor must be in (0, 1], got {config.weight_floor}")
    if config.min_hours is not None and not (
        math.isfinite(config.min_hours) and config.min_hours > 0
    ):
        raise ValueError(f"--min-hours must be positive, got {config.min_hours}")
    if config.weight is not None:
        return parse_score(config.weight, SCORES)
    quotas = [r for r in rules if r.is_quota]
    if quotas:
        return quotas[0].expr
    if config.mode == "weight" or config.fallback == "weight":
        what = "--mode weight" if config.mode == "weight" else "--fallback weight"
        raise ValueError(
            f"{what} needs a quota rule (--keep top:…:SCORE or hours:…:SCORE) whose score ranks "
            "the weights, or --weight SCORE"
        )
    return None


def filter_data_dir(config: FilterConfig) -> FilterResult:
    """Run the filter stage (see the module docstring)."""
    _check_bad_wer(config)
    _weight_expr(config, [parse_rule(r, SCORES) for r in config.keep])  # before any model
    opts = config.options
    if opts.proxy:  # languages before any model loads or the output dir is made
        check_model_language(opts.proxy, opts.proxy_language or opts.language, "the proxy")
    if opts.teacher:
        check_model_language(opts.teacher, opts.language, "the teacher")
    return _filter_data_dir(config)


@locks_run(lambda config: config.out)
def _filter_data_dir(config: FilterConfig) -> FilterResult:
    data = DataDir(config.data)
    out = Path(config.out)
    exp = Path(config.exp_dir) if config.exp_dir is not None else out / "filter"
    if not data.exists(LABELS):
        raise DataDirError(f"no {LABELS}: run the pseudo_label stage first", data.path)
    check_stage_input(data.path, "filter")
    all_utts = data.utt_ids()
    labels_all = data.text(LABELS)
    utts = [u for u in all_utts if u in labels_all]
    no_label = len(all_utts) - len(utts)
    if no_label:
        log.warning("%s: %d utterances have no label in %s: dropped", data.path, no_label, LABELS)
    if not utts:
        raise DataDirError(f"no utterance has a label in {LABELS}", data.path)
    labels = {u: labels_all[u] for u in utts}
    refs, ref_where = _references(config, data, utts)

    ctx = ScoreContext(data, utts, labels, refs, config.options, cache_dir=exp / "cache")
    rules = [parse_rule(r, SCORES) for r in config.keep]
    wants_auto = any(r.kind == "auto" for r in rules)
    weight_expr = _weight_expr(config, rules)
    names = list(dict.fromkeys(config.scores or default_scores(ctx)))
    for r in rules:
        names += [n for n in r.score_names if n not in names]
    if weight_expr is not None:
        names += [n for n in weight_expr.names if n not in names]
    if wants_auto and not refs:
        raise ValueError(
            "--keep auto needs reference transcripts for some utterances (--ref, text)"
        )
    log.info("scores: %s", ", ".join(names))
    scores = {n: compute_score(n, ctx) for n in names}
    scores_dir = exp / "scores"
    write_scores(scores_dir, scores)
    durations = ctx.durations()

    quality = (
        label_quality(labels, refs, config.options.normalizer, config.options.normalizer_options)
        if refs
        else None
    )
    label_free = [n for n in names if SCORES[n].label_free]
    auto = None
    if wants_auto:
        assert quality is not None
        auto = choose_auto(
            candidate_values(scores, label_free, utts),
            quality,
            bad_wer=config.bad_wer,
            objective=config.objective,
        )
        rules = [auto.rule if r.kind == "auto" else r for r in rules]
    selection = select(rules, scores, utts, durations)
    mode, starved = _mode(config, rules, selection.kept, scores, utts, durations, quality)
    kept = set(selection.kept) if mode == "drop" else _thresholds_kept(rules, scores, utts)

    report = _base_report(config, data, out, exp, scores_dir, all_utts, utts, kept, durations)
    report["mode"] = mode
    report["min_hours"] = starved
    report["rules"] = [
        {
            "rule": o.rule,
            "origin": o.origin,
            "alone": count_hours(o.alone, durations),
            "after": count_hours(o.after, durations),
        }
        for o in selection.outcomes
    ]
    report["scores"] = {
        n: {"help": SCORES[n].help, "label_free": SCORES[n].label_free, **score_summary(scores[n])}
        for n in names
    }
    plots: list[Path] = []
    if quality is not None and quality.wer:
        report["diagnostics"] = _diagnostics(config, quality, scores, label_free, kept, ref_where)
        if config.plots:
            shown = {n: scores[n] for n in label_free}
            plots += plot_histograms(
                exp / "plots", shown, quality.bad(config.bad_wer), config.bad_wer, auto
            )
            roc = plot_roc(exp / "plots" / "roc.png", shown, quality, config.bad_wers)
            if roc is not None:
                plots.append(roc)
    report["auto"] = None if auto is None else auto.to_dict()
    report["plots"] = [str(p) for p in plots]

    if config.labelled_max_wer is not None and quality is not None:
        kept, changed = _labelled_override(kept, quality, config.labelled_max_wer)
        report["labelled_override"] = {"n": len(quality.wer), "changed": changed}
        report |= _totals(utts, all_utts, kept, durations)

    if not kept:
        write_report(exp, report)
        raise ValueError(
            f"no utterance passed the rules ({', '.join(r.text for r in rules)}); "
            f"see {exp / 'report.md'}"
        )
    weights = None
    if weight_expr is not None and (mode == "weight" or config.weight is not None):
        weights = utterance_weights(weight_expr, scores, kept, config.weight_floor)
        report["weights"] = {"source": "filter", "score": weight_expr.text,
                             "floor": config.weight_floor, **weight_summary(weights, durations)}  # fmt: skip
        if data.exists(UTT2WEIGHT):
            log.info("%s: replaced by the weights of %s", data.file(UTT2WEIGHT), weight_expr.text)
    elif data.exists(UTT2WEIGHT):
        carried = read_weights(data.file(UTT2WEIGHT))
        carried = {u: w for u, w in carried.items() if u in kept}
        report["weights"] = {"source": "input", "score": None, "floor": None,
                             **weight_summary(carried, durations)}  # fmt: skip
    else:
        report["weights"] = None
    _write_output(data, out, sorted(kept), scores, weights)
    write_report(exp, report)
    w = report["weights"]
    log.info(
        "filter (%s): kept %d of %d utterances (%.2f of %.2f h%s) -> %s; report %s",
        mode,
        len(kept),
        len(all_utts),
        report["kept"]["hours"],
        report["input"]["hours"],
        f", {w['weighted_hours']:.2f} weighted h, mean weight {w['mean']:.3f}" if w else "",
        out,
        exp / "report.md",
    )
    return FilterResult(out, exp, sorted(kept), scores, report, auto)


def _labelled_override(
    kept: set[str], quality: LabelQuality, max_wer: float
) -> tuple[set[str], int]:
    """Labelled utterances kept iff their label WER <= ``max_wer``; (kept, decisions changed)."""
    judged = {u for u, w in quality.wer.items() if w <= max_wer}
    changed = sum((u in kept) != (u in judged) for u in quality.wer)
    return (kept - set(quality.wer)) | judged, changed


def _thresholds_kept(rules: list[Rule], scores: dict, utts: list[str]) -> set[str]:
    """What weight mode keeps: the utterances that pass every threshold (no quota applied)."""
    return set(select([r for r in rules if not r.is_quota], scores, utts, {}).kept)


def _mode(
    config: FilterConfig,
    rules: list[Rule],
    kept: set[str],
    scores: dict,
    utts: list[str],
    durations: dict[str, float],
    quality: LabelQuality | None,
) -> tuple[str, dict[str, Any] | None]:
    """The mode to apply and the ``min_hours`` entry of the report (None without min_hours):
    under ``min_hours`` a warning, and with ``fallback="weight"`` weight mode."""
    mode = config.mode
    if config.min_hours is None:
        return mode, None
    if mode == "weight":
        kept = _thresholds_kept(rules, scores, utts)
    if config.labelled_max_wer is not None and quality is not None:
        kept, _ = _labelled_override(kept, quality, config.labelled_max_wer)
    hours = count_hours(kept, durations)["hours"]
    under = hours < config.min_hours
    switched = under and mode == "drop" and config.fallback == "weight"
    message = None
    if under:
        message = f"the selection keeps {hours:.3f} h, under --min-hours {config.min_hours:g}"
        if switched:
            message += (
                "; --fallback weight: switched to --mode weight (every utterance that passes "
                "the thresholds kept, down-weighted by its rank)"
            )
        elif mode == "drop":
            message += "; --fallback weight would keep them down-weighted instead"
        log.warning("filter: %s", message)
    entry = {"min_hours": config.min_hours, "hours": hours, "under": under,
             "fallback": config.fallback, "switched": switched, "message": message}  # fmt: skip
    return ("weight" if switched else mode), entry


def _totals(
    utts: list[str], all_utts: list[str], kept: set[str], durations: dict[str, float]
) -> dict[str, Any]:
    return {
        "input": count_hours(all_utts, durations),
        "kept": count_hours(kept, durations),
        "dropped": count_hours([u for u in all_utts if u not in kept], durations),
        "no_label": len(all_utts) - len(utts),
    }


def _base_report(
    config: FilterConfig,
    data: DataDir,
    out: Path,
    exp: Path,
    scores_dir: Path,
    all_utts: list[str],
    utts: list[str],
    kept: set[str],
    durations: dict[str, float],
) -> dict[str, Any]:
    opts = asdict(config.options)
    return {
        "schema": "speechdistill.filter/1",
        "version": __version__,
        "data": str(data.path),
        "out": str(out),
        "exp_dir": str(exp),
        "scores_dir": str(scores_dir),
        "normalizer": config.options.normalizer,
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()},
        "keep": list(config.keep),
        "labelled_max_wer": config.labelled_max_wer,
        "mode_asked": config.mode,
        "weight_floor": config.weight_floor,
        **_totals(utts, all_utts, kept, durations),
    }


def _diagnostics(
    config: FilterConfig,
    quality: LabelQuality,
    scores: dict[str, dict[str, float]],
    label_free: list[str],
    kept: set[str],
    ref_where: str,
) -> dict[str, Any]:
    defs = [float(t) for t in config.bad_wers]
    auc: dict[str, dict[str, float | None]] = {n: {} for n in label_free}
    counts, selection = {}, {}
    for t in defs:
        bad = quality.bad(t)
        n_bad = sum(bad.values())
        counts[str(t)] = {"n_good": len(bad) - n_bad, "n_bad": n_bad}
        for n in label_free:
            auc[n][str(t)] = roc_auc(scores[n], bad)
        selection[str(t)] = selection_metrics(kept, bad, quality)
    return {
        "references": ref_where,
        "n_labelled": len(quality.wer),
        "label_wer": quality.pooled_wer(list(quality.wer)),
        "bad_wers": defs,
        "counts": counts,
        "auc": auc,
        "selection": selection,
    }


def _write_output(
    data: DataDir,
    out: Path,
    kept: list[str],
    scores: dict[str, dict[str, float]],
    weights: dict[str, float] | None,
) -> None:
    subset(data.path, out, utt_list=kept)  # carries the input's utt2weight, if any
    write_scores(out, scores, only=set(kept))
    if weights is not None:
        write_weights(out / UTT2WEIGHT, weights)
    fix(out, backup=False)
    validate(out, no_text=not (out / "text").is_file())
