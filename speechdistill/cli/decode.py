"""``speechdistill decode``: transcribe a data dir with a Whisper model."""

from __future__ import annotations

import argparse

from speechdistill.cli.options import data_dir, model_source, out_dir, positive_int


def add_generation_args(p: argparse.ArgumentParser) -> None:
    """Options shared by the stages that run Whisper's ``generate``."""
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--num-beams", type=positive_int, default=1, help="1 = greedy")
    p.add_argument("--language", default=None, help="e.g. en, pt (multilingual models)")
    p.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    p.add_argument("--max-new-tokens", type=positive_int, default=None)
    p.add_argument("--timestamps", action="store_true", help="predict timestamp tokens")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, …")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "decode",
        help="transcribe a data dir (batched greedy or beam search)",
        description="Decode every utterance of a Kaldi data dir; writes OUT/text, "
        "OUT/utt2decode_time and OUT/decode.json (speed).",
    )
    p.add_argument("--model", type=model_source, help="model directory or Hub id")
    p.add_argument("--data", type=data_dir, help="Kaldi data dir (text not needed)")
    p.add_argument("--out", type=out_dir, required=True, help="output directory")
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="PART",
        help="instead of decoding, merge the output dirs of decode jobs into --out",
    )
    add_generation_args(p)
    p.add_argument(
        "--temperature-fallback",
        action="store_true",
        help="Whisper's fallback: decode again at temperature 0.2 … 1.0 (seeded sampling) "
        "when the output loops (token compression ratio > 1.35) or its mean log-prob < -1",
    )
    p.add_argument(
        "--skip-bad", action="store_true", help="skip unreadable audio (counted) instead of failing"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from speechdistill.decode import decode_data_dir, merge_decode_dirs
    from speechdistill.inference.whisper import DecodeConfig

    if args.merge:
        merge_decode_dirs(args.out, args.merge)
        return 0
    if not args.model or not args.data:
        raise ValueError("decode: --model and --data are required (unless --merge)")
    config = DecodeConfig(
        batch_size=args.batch_size,
        num_beams=args.num_beams,
        language=args.language,
        task=args.task,
        max_new_tokens=args.max_new_tokens,
        return_timestamps=args.timestamps,
        device=args.device,
        dtype=args.dtype,
        skip_bad=args.skip_bad,
        temperature_fallback=args.temperature_fallback,
    )
    decode_data_dir(args.model, args.data, args.out, config)
    return 0
