"""``speechdistill format``: pipes/segments -> 16 kHz mono WAV files, with duration limits."""

from __future__ import annotations

import argparse

from speechdistill.cli.options import data_dir, non_negative_float, out_dir, positive_float


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "format",
        help="write every utterance as a 16 kHz mono WAV (resolves pipes and segments)",
        description="Stage 2 of the recipes. Writes AUDIO_DIR/<utt>.wav and the data dir DST "
        "(wav.scp on those files, exact utt2dur, every other file restricted to what was kept). "
        "Utterance ids must be safe file names (no '/', not '.' or '..', no leading '-', no "
        "whitespace or control characters). A rerun reuses a WAV only when AUDIO_DIR/"
        "format_manifest.json shows it was made from the same wav.scp entry, segment times and "
        "source file; anything else is rewritten. Unreadable audio (missing, corrupt, truncated, "
        "empty, NaN, a segment ending over 0.5 s past its recording) is an error naming the "
        "utterance unless --skip-bad; an utterance of utt2spk without a segment or wav.scp entry "
        "is an error. With segments, DST/utt2reco keeps each utterance's recording.",
    )
    p.add_argument("src", type=data_dir, help="input data dir")
    p.add_argument("dst", type=out_dir, help="output data dir")
    p.add_argument(
        "--audio-dir", type=out_dir, default=None, help="where the WAVs go (default DST/wav)"
    )
    p.add_argument(
        "--min-duration", type=non_negative_float, default=None, help="drop shorter (seconds)"
    )
    p.add_argument(
        "--max-duration", type=positive_float, default=None, help="drop longer (seconds)"
    )
    p.add_argument(
        "--skip-bad", action="store_true", help="skip unreadable audio (counted in DST/format.json)"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from speechdistill.format import format_data_dir

    format_data_dir(
        args.src,
        args.dst,
        audio_dir=args.audio_dir,
        min_duration=args.min_duration,
        max_duration=args.max_duration,
        skip_bad=args.skip_bad,
    )
    return 0
