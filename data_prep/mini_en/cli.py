"""Command line of mini_en: ``python -m data_prep.mini_en OUT_DIR [options]`` (see ``--help``)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from data_prep.mini_en.prepare import prepare_mini_en
from data_prep.mini_en.text import BUNDLED
from data_prep.mini_en.voices import ACCENTS, HARD_ACCENTS, VARIANTS
from speechdistill.utils import setup_logging

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m data_prep.mini_en",
        description="Synthesise the mini_en corpus (espeak-ng) into Kaldi data dirs "
        "OUT_DIR/{train,dev,test} (recordings of one voice, cut into utterances by segments) and "
        "OUT_DIR/test_long (the test recordings whole), 16 kHz WAVs in OUT_DIR/wav and notes in "
        "OUT_DIR/local.",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="output directory")
    p.add_argument("--num-train", type=int, default=300, help="training clips (%(default)s)")
    p.add_argument(
        "--num-dev", type=int, default=50, help="dev clips, one a sentence (%(default)s)"
    )
    p.add_argument(
        "--num-test", type=int, default=100, help="test clips, one a sentence (%(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="same seed, same corpus (%(default)s)")
    p.add_argument("--nj", type=int, default=2, help="concurrent espeak-ng processes (%(default)s)")
    p.add_argument(
        "--num-speakers", type=int, default=40, help="training (seen) speakers (%(default)s)"
    )
    p.add_argument(
        "--num-unseen-speakers", type=int, default=12, help="test-only speakers (%(default)s)"
    )
    p.add_argument(
        "--text",
        nargs="+",
        default=None,
        metavar="PATH",
        help="sentence files, or dirs of *.txt files, one sentence a line "
        "(default: the bundled data_prep/mini_en/sentences)",
    )
    p.add_argument(
        "--train-text",
        nargs="+",
        default=None,
        metavar="PATH",
        help="train-only sentence files or dirs, used after train's own sentences; "
        f"'{BUNDLED}' is the bundled data_prep/mini_en/sentences_train (default: none)",
    )
    p.add_argument(
        "--accents",
        type=_comma_list,
        default=None,
        help=f"espeak-ng accents, comma-separated (default: {','.join(ACCENTS)}; "
        f"also available: {','.join(HARD_ACCENTS)})",
    )
    p.add_argument(
        "--variants",
        type=_comma_list,
        default=None,
        help="espeak-ng voice variants, comma-separated (default: a curated list of "
        f"{len(VARIANTS)})",
    )
    p.add_argument("--espeak", default=None, help="espeak-ng executable (default: from PATH)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    p.add_argument("-q", "--quiet", action="count", default=0, help="less logging")
    return p


def _comma_list(value: str) -> list[str]:
    return [v for v in (x.strip() for x in value.split(",")) if v]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        prepare_mini_en(
            args.out_dir,
            num_train=args.num_train,
            num_dev=args.num_dev,
            num_test=args.num_test,
            seed=args.seed,
            nj=args.nj,
            text=args.text,
            train_text=args.train_text,
            num_speakers=args.num_speakers,
            num_unseen_speakers=args.num_unseen_speakers,
            accents=args.accents,
            variants=args.variants,
            espeak=args.espeak,
            progress=not args.no_progress,
        )
    except (OSError, ValueError, RuntimeError) as e:
        if args.verbose:
            raise
        log.error("%s", e)
        return 1
    return 0
