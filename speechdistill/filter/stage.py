"""The filter stage: score the pseudo-labels, select, write the filtered data dir and a report.

``filter_data_dir`` reads a pseudo-labelled data dir (``text.teacher`` and the statistics of the
pseudo_label stage), computes the scores, applies the ``--keep`` rules and writes

- ``OUT/``: the input restricted to the kept utterances (``subset`` then ``fix``; validated), with
  the kept utterances' ``utt2score_<name>`` files;
- ``EXP/scores/utt2score_<name>``: every score of every input utterance;
- ``EXP/cache/``: model transcripts (``text.proxy``, ``text.self_*``) reused by reruns;
- ``EXP/report.{json,md}`` and ``EXP/plots/*.png`` (diagnostics, with references).

References (``--ref FILE``, else the data dir's ``text``) are used only for the diagnostics, for
``auto`` and for the ``supervised_*`` scores; ``--labelled LIST`` restricts them to some
utterances. With ``labelled_max_wer`` the labelled utterances are kept iff their label WER is at
most that value, whatever the rules say (the diagnostics describe the rules before that).
Utterances without an entry in ``text.teacher`` are dropped (counted).
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
from speechdistill.filter.select import parse_rule, select
from speechdistill.utils import PathLike, locks_run
from speechdistill.whisper.language import check_model_language

log = logging.getLogger(__name__)

LABELS = "text.teacher"


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


def filter_data_dir(config: FilterConfig) -> FilterResult:
    """Run the filter stage (see the module docstring)."""
    _check_bad_wer(config)
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
    names = list(dict.fromkeys(config.scores or default_scores(ctx)))
    for r in rules:
        names += [n for n in r.score_names if n not in names]
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
    kept = set(selection.kept)

    report = _base_report(config, data, out, exp, scores_dir, all_utts, utts, kept, durations)
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
        judged = {u for u, w in quality.wer.items() if w <= config.labelled_max_wer}
        changed = sum((u in kept) != (u in judged) for u in quality.wer)
        kept = (kept - set(quality.wer)) | judged
        report["labelled_override"] = {"n": len(quality.wer), "changed": changed}
        report |= _totals(utts, all_utts, kept, durations)

    if not kept:
        write_report(exp, report)
        raise ValueError(
            f"no utterance passed the rules ({', '.join(r.text for r in rules)}); "
            f"see {exp / 'report.md'}"
        )
    _write_output(data, out, sorted(kept), scores)
    write_report(exp, report)
    log.info(
        "filter: kept %d of %d utterances (%.2f of %.2f h) -> %s; report %s",
        len(kept),
        len(all_utts),
        report["kept"]["hours"],
        report["input"]["hours"],
        out,
        exp / "report.md",
    )
    return FilterResult(out, exp, sorted(kept), scores, report, auto)


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
    data: DataDir, out: Path, kept: list[str], scores: dict[str, dict[str, float]]
) -> None:
    subset(data.path, out, utt_list=kept)
    write_scores(out, scores, only=set(kept))
    fix(out, backup=False)
    validate(out, no_text=not (out / "text").is_file())
