"""Audio-dependent ``speechdistill data`` subcommands: ``utt2dur``, ``to-hf``, ``from-hf``,
``pack``."""

from __future__ import annotations

import argparse
import logging

from speechdistill.cli.options import data_dir, non_negative_float, out_dir, positive_float

log = logging.getLogger(__name__)


def register(data_sub: argparse._SubParsersAction) -> None:
    """Add the audio-dependent subcommands (utt2dur, to-hf, from-hf, pack) to
    ``speechdistill data``."""
    p = data_sub.add_parser(
        "utt2dur",
        help="write utt2dur (and reco2dur with segments), as Kaldi's get_utt2dur.sh",
        description="Compute utterance durations: segments end-start, else audio headers "
        "(pipes are run and decoded). Writes DIR/utt2dur, and DIR/reco2dur when DIR has segments.",
    )
    p.add_argument("dir", type=data_dir, metavar="DIR", help="Kaldi data dir")
    p.set_defaults(func=_utt2dur)

    p = data_sub.add_parser(
        "to-hf",
        help="save a data dir as a Hugging Face dataset (save_to_disk)",
        description="Columns: id, audio (16 kHz FLAC bytes, decode=False), text, speaker, "
        "duration, and one string column per extra utterance file, named as the file.",
    )
    p.add_argument("dir", type=data_dir, metavar="DIR", help="Kaldi data dir")
    p.add_argument(
        "out", type=out_dir, metavar="OUT", help="output folder (datasets' save_to_disk format)"
    )
    p.add_argument(
        "--extra-files",
        nargs="*",
        default=None,
        metavar="FILE",
        help="utterance files to add as columns (default: all present; no FILE: none)",
    )
    p.add_argument("--audio-format", choices=("flac", "wav"), default="flac", help="%(default)s")
    p.set_defaults(func=_to_hf)

    p = data_sub.add_parser(
        "from-hf",
        help="write a Hugging Face dataset as a Kaldi data dir with 16 kHz WAV files",
        description="IN is a save_to_disk folder (a Dataset or DatasetDict), or a Hub dataset id "
        "when online. Audio is decoded with soundfile and written under --audio-dir.",
    )
    p.add_argument("input", metavar="IN", help="save_to_disk folder or Hub dataset id")
    p.add_argument("out", type=out_dir, metavar="OUT", help="output data dir")
    p.add_argument("--split", default="train", help="split of a DatasetDict (%(default)s)")
    p.add_argument("--audio-column", default="audio", help="%(default)s")
    p.add_argument("--text-column", default="text", help="%(default)s (skipped if absent)")
    p.add_argument("--id-column", default="id", help="%(default)s (else the audio file name)")
    p.add_argument(
        "--speaker-column", default="speaker", help="%(default)s (else one speaker per utterance)"
    )
    p.add_argument(
        "--extra-columns",
        nargs="*",
        default=None,
        metavar="COL",
        help="columns to write as files (default: those named text.* or utt2*)",
    )
    p.add_argument(
        "--audio-dir", type=out_dir, default=None, help="where the WAV files go (default OUT/wavs)"
    )
    p.add_argument(
        "--skip-errors", action="store_true", help="skip (and list) utterances with bad audio"
    )
    p.set_defaults(func=_from_hf)

    p = data_sub.add_parser(
        "pack",
        help="join consecutive utterances into windows of at most 30 s (one recording or speaker)",
        description="Group IN's utterances by recording (segments, in start order; else "
        "utt2reco, in id order without the speaker prefix) or else by speaker (id order) and "
        "join consecutive ones greedily into windows of at most --max-duration s. With segments "
        "a window is a new segment of the recording (pauses included; a pause over --max-gap "
        "starts a new window); without, its audio is the utterances' joined with --gap s of "
        "silence, written to OUT/wav/ (a rerun rewrites only what changed). OUT gets text "
        "(joined), utt2spk, utt2dur, window2utts (<window> <utt> ...) and pack.json; other "
        "utterance files are not carried. Longer utterances and overlapping segments become "
        "windows of their own (logged, counted in pack.json).",
    )
    p.add_argument("input", type=data_dir, metavar="IN", help="Kaldi data dir")
    p.add_argument("out", type=out_dir, metavar="OUT", help="packed data dir (written)")
    p.add_argument(
        "--max-duration",
        type=positive_float,
        default=30.0,
        help="longest window, seconds, at most 30 (Whisper's window) (%(default)s)",
    )
    p.add_argument(
        "--max-gap",
        type=non_negative_float,
        default=3.0,
        help="with segments: a longer pause between utterances starts a new window (%(default)s)",
    )
    p.add_argument(
        "--gap",
        type=non_negative_float,
        default=0.5,
        help="without segments: seconds of silence between joined utterances (%(default)s)",
    )
    p.set_defaults(func=_pack)


def _utt2dur(args: argparse.Namespace) -> int:
    from speechdistill.audio import compute_utt2dur

    durs = compute_utt2dur(args.dir)
    log.info("%s: %d utterances, %.2f hours", args.dir, len(durs), sum(durs.values()) / 3600)
    return 0


def _to_hf(args: argparse.Namespace) -> int:
    from speechdistill.datadir.hf import save_to_hf

    save_to_hf(args.dir, args.out, extra_files=args.extra_files, audio_format=args.audio_format)
    return 0


def _from_hf(args: argparse.Namespace) -> int:
    from speechdistill.datadir.hf import from_hf

    from_hf(
        args.input,
        args.out,
        split=args.split,
        audio_column=args.audio_column,
        text_column=args.text_column,
        id_column=args.id_column,
        speaker_column=args.speaker_column,
        extra_columns=args.extra_columns,
        audio_dir=args.audio_dir,
        skip_errors=args.skip_errors,
    )
    return 0


def _pack(args: argparse.Namespace) -> int:
    from speechdistill.pack import pack_data_dir

    pack_data_dir(
        args.input, args.out, max_duration=args.max_duration, max_gap=args.max_gap, gap=args.gap
    )
    return 0
