"""``speechdistill compare``: two systems on the same references, B − A with a paired bootstrap."""

from __future__ import annotations

import argparse
import json

from speechdistill.cli.options import non_negative_int, out_file
from speechdistill.datadir import read_kv


def register(sub: argparse._SubParsersAction) -> None:
    from speechdistill.text import NORMALIZERS

    c = sub.add_parser(
        "compare",
        help="WER difference of two systems on the same references, with a paired bootstrap CI",
        description="Score --hyp-a and --hyp-b against --ref and print B − A with a paired "
        "bootstrap interval (utterances resampled jointly) and P(B better); --out writes JSON. "
        "A system given as several runs (seeds) is compared on its per-utterance mean errors.",
    )
    c.add_argument("--ref", required=True, help="reference text (utt text)")
    c.add_argument(
        "--hyp-a", required=True, nargs="+", metavar="HYP",
        help="hypotheses of system A (e.g. the teacher); several files are runs of one system "
        "(e.g. training seeds), each utterance's errors averaged over them",
    )  # fmt: skip
    c.add_argument(
        "--hyp-b", required=True, nargs="+", metavar="HYP",
        help="hypotheses of system B (e.g. the student), one or more runs",
    )  # fmt: skip
    c.add_argument("--name-a", default="A")
    c.add_argument("--name-b", default="B")
    c.add_argument(
        "--normalizer", default="english", choices=sorted(NORMALIZERS), help="(default: english)"
    )
    c.add_argument("--bootstrap", type=non_negative_int, default=1000, help="bootstrap resamples")
    c.add_argument("--seed", type=non_negative_int, default=0, help="bootstrap seed (default: 0)")
    c.add_argument("--out", type=out_file, help="write the comparison as JSON here")
    c.set_defaults(func=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from speechdistill.scoring import paired_bootstrap, score
    from speechdistill.utils import atomic_write_text

    refs = read_kv(args.ref)
    a, b = ([score(refs, read_kv(h), normalizer=args.normalizer, bootstrap=0, on_missing="error")
             for h in hyps] for hyps in (args.hyp_a, args.hyp_b))  # fmt: skip
    result = paired_bootstrap(a, b, n_resamples=args.bootstrap, seed=args.seed)
    print(result.summary(args.name_a, args.name_b))
    if args.out:
        body = {"a": args.hyp_a, "b": args.hyp_b, "ref": args.ref, "normalizer": args.normalizer,
                **result.to_dict()}  # fmt: skip
        atomic_write_text(args.out, json.dumps(body, indent=2) + "\n")
    return 0
