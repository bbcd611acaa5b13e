"""Command line of mini_pt: ``python -m data_prep.mini_pt CORPUS_DIR [options]`` (see ``--help``)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from data_prep.mini_pt.prepare import prepare_mini_pt
from data_prep.mini_pt.voices import VARIANTS
from speechdistill.utils import setup_logging

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m data_prep.mini_pt",
        description="Synthesise mini_pt (Brazilian Portuguese, espeak-ng) in the layout of the "
        "NURC-SP Hub dataset: CORPUS_DIR/{train,dev,test}.tar.gz and "
        "CORPUS_DIR/{original,filtered}/audios_<split>_metadata.csv; read it with "
        "`python -m data_prep.nurc_sp CORPUS_DIR OUT`.",
    )
    p.add_argument("corpus_dir", metavar="CORPUS_DIR", help="output folder (created or ours)")
    p.add_argument(
        "--num-train", type=int, default=300, help="train segments with text (%(default)s)"
    )
    p.add_argument("--num-dev", type=int, default=50, help="dev segments with text (%(default)s)")
    p.add_argument(
        "--num-test", type=int, default=100, help="test segments with text (%(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="same seed, same corpus (%(default)s)")
    p.add_argument("--nj", type=int, default=2, help="concurrent espeak-ng processes (%(default)s)")
    p.add_argument(
        "--text",
        nargs="+",
        default=None,
        metavar="PATH",
        help="sentence files, or dirs of *.txt files, one sentence a line "
        "(default: the bundled data_prep/mini_pt/sentences)",
    )
    p.add_argument(
        "--variants",
        type=lambda v: [x.strip() for x in v.split(",") if x.strip()],
        default=None,
        help=f"espeak-ng variants, comma-separated (default: {','.join(VARIANTS)})",
    )
    p.add_argument("--espeak", default=None, help="espeak-ng executable (default: from PATH)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    p.add_argument("-q", "--quiet", action="count", default=0, help="less logging")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        prepare_mini_pt(
            args.corpus_dir,
            num_train=args.num_train,
            num_dev=args.num_dev,
            num_test=args.num_test,
            seed=args.seed,
            nj=args.nj,
            text=args.text,
            variants=args.variants,
            espeak=args.espeak,
        )
    except (OSError, ValueError, RuntimeError) as e:
        if args.verbose:
            raise
        log.error("%s", e)
        return 1
    return 0
