"""``speechdistill data …``: Kaldi data-dir tools (validate, fix, subset, combine, copy, split, merge).

Options follow Kaldi's ``utils/*.sh`` scripts; audio-dependent subcommands come from
:mod:`speechdistill.cli.data_audio`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from speechdistill.cli import data_audio
from speechdistill.cli.options import data_dir, non_negative_int, out_dir, out_file, positive_int
from speechdistill.datadir.core import DataDir
from speechdistill.datadir.fix import fix
from speechdistill.datadir.ops import copy, merge_split, read_keys, split, subset
from speechdistill.datadir.validate import DataDirValidationError, validate

log = logging.getLogger("speechdistill")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``data`` and its subcommands."""
    p = sub.add_parser(
        "data",
        help="Kaldi data dirs: validate, fix, subset, combine, copy, split, merge, reco-text",
        description="Tools for Kaldi data directories (ports of Kaldi's utils/*_data_dir.sh).",
    )
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    for add in (
        _add_validate,
        _add_fix,
        _add_subset,
        _add_combine,
        _add_copy,
        _add_split,
        _add_merge,
        _add_reco_text,
    ):
        add(data_sub)
    data_audio.register(data_sub)


def _words(values: Sequence[str] | None) -> list[str]:
    """``--x "a b" --x c`` -> ``[a, b, c]`` (Kaldi passes lists as one quoted string)."""
    return [w for v in values or () for w in v.split()]


# validate -------------------------------------------------------------------------------------


def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check a data dir like Kaldi's validate_data_dir.sh",
        description="Kaldi's validate_data_dir.sh checks, plus: every id is a safe file name "
        "(no '/', not '.' or '..', no leading '-', no whitespace or control characters). A "
        "segment end of -1 means to the end of the recording. Warnings (with counts): segments "
        "that overlap within a recording (legal: cross-talk), segments longer than 30 s. "
        "utt2reco (each utterance's recording, when there are no segments) must list every "
        "utterance with a safe recording id.",
    )
    p.add_argument(
        "--no-text", action="store_true", help="text is not required (checked if present)"
    )
    p.add_argument(
        "--no-wav", action="store_true", help="wav.scp is not required (checked if present)"
    )
    p.add_argument(
        "--no-spk-sort",
        action="store_true",
        help="utt2spk need not be sorted by speaker (utterance ids need not start with the speaker)",
    )
    p.add_argument(
        "--non-print", action="store_true", help="allow non-printable characters in transcripts"
    )
    p.add_argument("dir", help="data dir")
    p.set_defaults(func=_validate)


def _validate(args: argparse.Namespace) -> int:

    try:
        warnings = validate(
            args.dir,
            no_text=args.no_text,
            no_wav=args.no_wav,
            no_spk_sort=args.no_spk_sort,
            non_print=args.non_print,
        )
    except DataDirValidationError as e:
        for message in e.errors:
            log.error("%s", message)
        log.error("%s: %d errors: not a valid data dir", args.dir, len(e.errors))
        return 1
    suffix = f" ({len(warnings)} warnings)" if warnings else ""
    print(f"validate: {args.dir} is a valid data dir{suffix}")
    return 0


# fix ------------------------------------------------------------------------------------------


def _add_fix(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fix", help="sort files and keep the utterances present everywhere (fix_data_dir.sh)"
    )
    p.add_argument(
        "--utt-extra-files",
        action="append",
        metavar="FILES",
        help='utterance-keyed files that also decide which utterances stay, e.g. "text.teacher utt2x"',
    )
    p.add_argument(
        "--spk-extra-files", action="append", metavar="FILES", help="extra speaker-keyed files"
    )
    p.add_argument("--no-backup", action="store_true", help="do not copy old files to DIR/.backup")
    p.add_argument("dir", type=data_dir, help="data dir, fixed in place")
    p.set_defaults(func=_fix)


def _fix(args: argparse.Namespace) -> int:

    report = fix(
        args.dir,
        utt_extra_files=_words(args.utt_extra_files),
        spk_extra_files=_words(args.spk_extra_files),
        backup=not args.no_backup,
    )
    print(report.summary())
    return 0


# subset, copy, combine -------------------------------------------------------------------------


def _add_subset(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("subset", help="copy some utterances of a data dir (subset_data_dir.sh)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--utt-list", metavar="FILE", help="utterance ids (first field of each line)"
    )
    which.add_argument("--spk-list", metavar="FILE", help="speaker ids (first field of each line)")
    which.add_argument(
        "--first", type=positive_int, metavar="N", help="the first N utterances (C order)"
    )
    which.add_argument(
        "--last", type=positive_int, metavar="N", help="the last N utterances (C order)"
    )
    which.add_argument(
        "--random", type=positive_int, metavar="N", help="N utterances drawn at random"
    )
    p.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed for --random (default: %(default)s)"
    )
    p.add_argument("src", type=data_dir, help="source data dir")
    p.add_argument("dst", type=out_dir, help="destination data dir")
    p.set_defaults(func=_subset)


def _subset(args: argparse.Namespace) -> int:
    dst = subset(
        args.src,
        args.dst,
        utt_list=args.utt_list,
        spk_list=args.spk_list,
        first=args.first,
        last=args.last,
        random=args.random,
        seed=args.seed,
    )
    print(f"subset: {len(DataDir(dst))} of {len(DataDir(args.src))} utterances in {dst}")
    return 0


def _add_copy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("copy", help="copy a data dir, renaming ids (copy_data_dir.sh)")
    for what in ("utt", "spk"):
        for end in ("prefix", "suffix"):
            p.add_argument(f"--{what}-{end}", default="", help=f"{end} added to each {what} id")
    p.add_argument("src", type=data_dir, help="source data dir")
    p.add_argument("dst", type=out_dir, help="destination data dir")
    p.set_defaults(func=_copy)


def _copy(args: argparse.Namespace) -> int:
    dst = copy(
        args.src,
        args.dst,
        utt_prefix=args.utt_prefix,
        utt_suffix=args.utt_suffix,
        spk_prefix=args.spk_prefix,
        spk_suffix=args.spk_suffix,
    )
    print(f"copy: {len(DataDir(dst))} utterances in {dst}")
    return 0


def _add_combine(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "combine", help="union of data dirs (combine_data.sh), teacher caches included"
    )
    p.add_argument("dst", type=out_dir, help="destination data dir")
    p.add_argument("srcs", type=data_dir, nargs="+", metavar="src", help="source data dirs")
    p.set_defaults(func=_combine)


def _combine(args: argparse.Namespace) -> int:
    from speechdistill.cache import CACHE_DIR, combine_labelled

    index = combine_labelled(args.dst, args.srcs)
    print(f"combine: {len(DataDir(args.dst))} utterances from {len(args.srcs)} dirs in {args.dst}")
    if index is not None:
        n = len(index.utterances)
        print(f"combine: teacher caches of {n} utterances in {Path(args.dst) / CACHE_DIR}")
    return 0


# split, merge ---------------------------------------------------------------------------------


def _add_split(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "split", help="split a data dir into N parts DIR/splitN/{1..N} (split_data.sh)"
    )
    p.add_argument(
        "--by-speaker", action="store_true", help="keep speakers whole (parts in DIR/splitNspk)"
    )
    p.add_argument("dir", type=data_dir, help="data dir")
    p.add_argument("n", type=positive_int, help="number of parts")
    p.set_defaults(func=_split)


def _split(args: argparse.Namespace) -> int:

    for part in split(args.dir, args.n, by_speaker=args.by_speaker):
        print(part)
    return 0


def _add_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge", help="merge per-job key-value outputs into one C-sorted file, checking keys"
    )
    p.add_argument(
        "--expected",
        metavar="FILE",
        help="file whose keys (first field) must be exactly the merged keys, e.g. DIR/utt2spk",
    )
    p.add_argument("dst", type=out_file, help="merged file")
    p.add_argument("inputs", nargs="+", metavar="input", help="per-job files")
    p.set_defaults(func=_merge)


def _merge(args: argparse.Namespace) -> int:

    expected = read_keys(args.expected) if args.expected else None
    n = merge_split(args.inputs, args.dst, expected=expected)
    print(f"merge: {n} keys from {len(args.inputs)} files in {args.dst}")
    return 0


# reco-text ------------------------------------------------------------------------------------


def _add_reco_text(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reco-text",
        help="recording-level reference text (utterances joined in segment order)",
        description="Write OUT: one line per recording of DIR/wav.scp, its utterances' texts "
        "joined in the order of their segments' start times (the reference of long-form "
        "decoding: speechdistill score --ref OUT --hyp DECODE_DIR/text). Without segments each "
        "utterance is a recording. Overlapping segments and an utterance without a segment "
        "are errors naming them; a recording without utterances gets an empty reference.",
    )
    p.add_argument("dir", type=data_dir, help="data dir with text (and segments)")
    p.add_argument("out", type=out_file, help="output file, e.g. DIR/reco_text")
    p.add_argument("--text", default="text", help="utterance text file in DIR (default: text)")
    p.set_defaults(func=_reco_text)


def _reco_text(args: argparse.Namespace) -> int:
    from speechdistill.datadir.reco import write_reco_text

    n = write_reco_text(args.dir, args.out, args.text)
    print(f"reco-text: {n} recordings in {args.out}")
    return 0
