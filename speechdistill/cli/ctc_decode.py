"""``speechdistill ctc-decode``: greedy CTC transcription of a data dir."""

from __future__ import annotations

import argparse

from speechdistill.cli.options import data_dir, model_dir, out_dir, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ctc-decode",
        help="transcribe a data dir with a CTC model (greedy)",
        description="Greedy (argmax) CTC decoding of every utterance of a Kaldi data dir with a "
        "model from ctc-finetune; writes OUT/text, OUT/utt2decode_time and OUT/decode.json "
        "(speed), like `speechdistill decode` (whose --merge joins ctc-decode jobs too).",
    )
    p.add_argument(
        "--model", required=True, type=model_dir, help="CTC model dir (ctc-finetune's output)"
    )
    p.add_argument("--data", type=data_dir, required=True, help="Kaldi data dir (text not needed)")
    p.add_argument("--out", type=out_dir, required=True, help="output directory")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, …")
    p.add_argument(
        "--skip-bad", action="store_true", help="skip unreadable audio (counted) instead of failing"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from speechdistill.decode import CTCDecodeConfig, decode_ctc_data_dir

    config = CTCDecodeConfig(batch_size=args.batch_size, device=args.device, skip_bad=args.skip_bad)
    decode_ctc_data_dir(args.model, args.data, args.out, config)
    return 0
