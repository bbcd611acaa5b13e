"""``speechdistill filter``: score pseudo-labels, keep the good ones, report (stage 5)."""

from __future__ import annotations

import argparse
import textwrap

from speechdistill.cli.options import (
    data_dir,
    key_values,
    model_dir,
    model_source,
    non_negative_float,
    non_negative_int,
    out_dir,
    positive_float,
    positive_int,
    probability,
    unit_weight,
)

RULES_HELP = """\
rules (--keep, repeatable; an utterance is kept when it passes all of them):
  SCORE>=X, SCORE>X, SCORE<=X, SCORE<X   threshold on a score (higher = better label)
  top:P%:SCORE, top:N:SCORE              the best P % / N utterances
  hours:H:SCORE                          the best utterances up to H hours of audio
  auto                                   the label-free score and threshold that work best on
                                         the labelled utterances (--ref or text)
  SCORE: a score name or rank_avg(a,b,...) (mean percentile rank). Thresholds are evaluated
  on the whole input, then quotas in order on what is left.

scores (each written as utt2score_<name>):
{scores}

examples:
  label-free:  --keep "empty>=1" --keep "compression_ratio>=-2.4" --keep "ngram_repeat>=-3" \\
               --keep "top:80%:rank_avg(confidence,entropy_mean)"
  supervised (distil-whisper, WER < 10 %):  --keep "supervised_wer>-0.1"
  clips of another language (multilingual teacher, pseudo-label --language pt):  --min-lang-prob 0.01
  chosen on a labelled subset:  --ref data/dev_labelled/text --keep auto
  down-weight instead of dropping (utt2weight, used by train):
               --keep "empty>=1" --keep "top:80%:confidence" --mode weight
  drop, but fall back to weighting when under 10 h are left:
               --keep "top:50%:confidence" --min-hours 10 --fallback weight
"""


def _floats(text: str, n: int | None = None) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.replace(":", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
    if n is not None and len(values) != n:
        raise argparse.ArgumentTypeError(f"expected {n} numbers, got {text!r}")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    from speechdistill.filter.scores import SCORES
    from speechdistill.text import NORMALIZERS

    listing = "\n".join(
        textwrap.fill(
            f"{name}: {s.help}", width=96, initial_indent="  ", subsequent_indent="      "
        )
        for name, s in SCORES.items()
    )
    p = sub.add_parser(
        "filter",
        help="score pseudo-labels and keep the good ones (label-free or supervised)",
        description="Compute label-quality scores for a pseudo-labelled data dir (text.teacher "
        "and the pseudo_label statistics), select utterances with --keep rules, write the "
        "filtered data dir to --out and report.{md,json} (+ diagnostics against references "
        "when some exist) to --exp-dir.",
        epilog=RULES_HELP.format(scores=listing),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", type=data_dir, required=True, help="pseudo-labelled data dir (with text.teacher)"
    )
    p.add_argument("--out", type=out_dir, required=True, help="filtered data dir to write")
    p.add_argument(
        "--exp-dir", type=out_dir, help="report, plots, scores and caches (default: OUT/filter)"
    )
    p.add_argument(
        "--score",
        action="append",
        metavar="NAME[,NAME…]",
        help="scores to compute (repeatable; default: every score the inputs allow; the scores "
        "named in --keep are always computed)",
    )
    p.add_argument("--keep", action="append", metavar="RULE", help="selection rule (repeatable)")
    p.add_argument(
        "--min-lang-prob",
        type=probability,
        default=None,
        metavar="P",
        help="reject clips of another language: the rule lang_id>=P (a multilingual teacher's "
        "probability of --language, utt2lang_prob)",
    )
    w = p.add_argument_group("weights (utt2weight: per-utterance loss weights for train)")
    w.add_argument(
        "--mode",
        choices=("drop", "weight"),
        default="drop",
        help="drop: the rules drop utterances; weight: only the thresholds drop, every other "
        "utterance is kept with weight FLOOR + (1 - FLOOR) x its percentile rank of the first "
        "quota rule's score (or --weight's) among the kept ones (default: drop)",
    )
    w.add_argument(
        "--weight",
        metavar="SCORE",
        help="the score that ranks the weights (a name or rank_avg(a,b,...)); in drop mode, "
        "write utt2weight for the kept utterances too. Without it and in drop mode the input's "
        "utt2weight, if any, is carried for the kept utterances",
    )
    w.add_argument(
        "--weight-floor",
        type=unit_weight,
        default=0.1,
        metavar="FLOOR",
        help="the lowest weight, in (0, 1]: NaN-scored utterances get it, the worst-ranked one "
        "FLOOR + (1 - FLOOR) / n (default: 0.1)",
    )
    w.add_argument(
        "--min-hours",
        type=positive_float,
        default=None,
        metavar="H",
        help="warn (log and report) when the kept audio is under H hours",
    )
    w.add_argument(
        "--fallback",
        choices=("none", "weight"),
        default="none",
        help="under --min-hours: none (keep the small selection) or weight (switch to --mode "
        "weight) (default: none)",
    )
    g = p.add_argument_group("references (diagnostics, auto, supervised scores)")
    g.add_argument("--ref", help="reference text for some or all utterances (default: DATA/text)")
    g.add_argument("--labelled", help="utterance list: use references only for these")
    g.add_argument(
        "--bad-wer",
        type=probability,
        default=0.4,
        help="a label is bad above this WER, for auto and the histograms (default: 0.4)",
    )
    g.add_argument(
        "--bad-wers",
        type=_floats,
        default=(0.2, 0.4, 0.8),
        help="bad-label WER definitions of the AUC table (default: 0.2,0.4,0.8)",
    )
    g.add_argument(
        "--objective",
        choices=("f1", "youden"),
        default="f1",
        help="what auto maximises on the labelled utterances (default: f1 of keeping good labels)",
    )
    g.add_argument(
        "--labelled-max-wer",
        type=non_negative_float,
        default=None,
        help="keep labelled utterances iff their label WER <= this, whatever the rules say",
    )
    g.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")
    m = p.add_argument_group("models (proxy, self-agreement, LM)")
    m.add_argument(
        "--proxy", type=model_dir, help="proxy ASR model dir: Whisper, CTC (transformers) or CT2"
    )
    m.add_argument("--proxy-language", help="language of a multilingual proxy (e.g. en)")
    m.add_argument("--teacher", type=model_dir, help="teacher model dir, for self_wer/self_cer")
    m.add_argument(
        "--perturb",
        action="append",
        metavar="noise:SNR_DB|speed:F",
        help="perturbation for self-agreement (repeatable; default: speed:0.9)",
    )
    m.add_argument("--lm", type=model_source, help="causal LM dir (transformers), for lm_nll")
    m.add_argument("--language", help="language for a multilingual teacher (e.g. en)")
    m.add_argument("--batch-size", type=positive_int, default=16)
    m.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=None,
        help="token limit of proxy/teacher decoding",
    )
    m.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, …")
    m.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    m.add_argument("--seed", type=non_negative_int, default=0, help="noise seed (default: 0)")
    t = p.add_argument_group("text")
    t.add_argument(
        "--normalizer", default="english", choices=sorted(NORMALIZERS), help="(default: english)"
    )
    t.add_argument("--normalizer-option", action="append", metavar="KEY=VALUE", help="(repeatable)")
    t.add_argument(
        "--cps-range",
        type=lambda s: _floats(s, 2),
        default=(5.0, 25.0),
        metavar="LO,HI",
        help="plausible characters per second of a label (default: 5,25)",
    )
    p.set_defaults(func=run_filter)


def run_filter(args: argparse.Namespace) -> int:
    from speechdistill.filter import FilterConfig, ScoreOptions, filter_data_dir
    from speechdistill.filter.context import DEFAULT_PERTURBATIONS
    from speechdistill.filter.models import parse_perturbation

    perturb = args.perturb or list(DEFAULT_PERTURBATIONS)
    for spec in perturb:
        parse_perturbation(spec)
    lo, hi = args.cps_range
    if not 0 <= lo < hi:
        raise ValueError(f"--cps-range: expected 0 <= LO < HI, got {lo},{hi}")
    options = ScoreOptions(
        normalizer=args.normalizer,
        normalizer_options=key_values(args.normalizer_option, "--normalizer-option"),
        cps_range=(lo, hi),
        proxy=args.proxy,
        proxy_language=args.proxy_language,
        teacher=args.teacher,
        perturbations=tuple(perturb),
        lm=args.lm,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        device=args.device,
        dtype=args.dtype,
        language=args.language,
        seed=args.seed,
    )
    scores = [n.strip() for item in args.score or [] for n in item.split(",") if n.strip()]
    lang_rule = [] if args.min_lang_prob is None else [f"lang_id>={args.min_lang_prob}"]
    config = FilterConfig(
        data=args.data,
        out=args.out,
        exp_dir=args.exp_dir,
        scores=scores,
        keep=[*(args.keep or []), *lang_rule],
        options=options,
        ref=args.ref,
        labelled=args.labelled,
        bad_wers=args.bad_wers,
        bad_wer=args.bad_wer,
        objective=args.objective,
        labelled_max_wer=args.labelled_max_wer,
        plots=not args.no_plots,
        mode=args.mode,
        weight=args.weight,
        weight_floor=args.weight_floor,
        min_hours=args.min_hours,
        fallback=args.fallback,
    )
    result = filter_data_dir(config)
    r = result.report
    w = r["weights"]
    weighted = f", {w['weighted_hours']:.3f} weighted h, mean weight {w['mean']:.3f}" if w else ""
    print(
        f"filter ({r['mode']}): kept {r['kept']['utts']} of {r['input']['utts']} utterances "
        f"({r['kept']['hours']:.3f} of {r['input']['hours']:.3f} h{weighted}) -> {result.out}"
    )
    if r["min_hours"] and r["min_hours"]["message"]:
        print(f"warning: {r['min_hours']['message']}")
    print(f"report: {result.exp_dir / 'report.md'}")
    return 0
