"""``speechdistill decode``: transcribe a data dir with a Whisper model."""

from __future__ import annotations

import argparse

from speechdistill.cli.options import data_dir, model_source, out_dir, positive_int, str2bool


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
        "OUT/utt2decode_time and OUT/decode.json (speed). With --long-form, decode every "
        "recording of wav.scp whole instead (any length; segments then only define the "
        "reference: `speechdistill data reco-text`), with transformers' sequential long-form "
        "generation: timestamps, conditioning on the previous window's text, temperature "
        "fallback; writes OUT/text and OUT/reco2decode_time keyed by recording, "
        "OUT/segments_hyp (<reco>-<n> <reco> <start> <end> <text>), OUT/ctm (word timestamps "
        "from the alignment heads: <reco> 1 <start> <dur> <word>) and OUT/decode.json.",
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
    lf = p.add_argument_group("long-form (recordings of any length)")
    lf.add_argument("--long-form", action="store_true", help="decode recordings, not utterances")
    lf.add_argument(
        "--fallback-temperatures",
        type=_temperatures,
        default=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
        help="temperatures tried in turn for a window (default: 0.0,0.2,…,1.0; '0' turns the "
        "fallback off)",
    )
    lf.add_argument(
        "--compression-ratio-threshold",
        type=_optional_float,
        default=1.35,
        help="redo a window whose gzip compression ratio is above this (default 1.35; 'none')",
    )
    lf.add_argument(
        "--logprob-threshold",
        type=_optional_float,
        default=-1.0,
        help="redo a window whose mean token log-prob is below this (default -1.0; 'none')",
    )
    lf.add_argument(
        "--no-speech-threshold",
        type=_optional_float,
        default=0.6,
        help="skip a window with P(no speech) above this and a low log-prob (default 0.6; 'none')",
    )
    lf.add_argument(
        "--condition-on-prev-tokens",
        type=str2bool,
        default=True,
        help="prompt each window with the previous text (default: true)",
    )
    lf.add_argument(
        "--word-timestamps",
        type=str2bool,
        default=True,
        help="write OUT/ctm from the alignment heads (default: true)",
    )
    p.set_defaults(func=_run)


def _optional_float(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def _temperatures(text: str) -> tuple[float, ...]:
    try:
        temps = tuple(float(t) for t in text.split(","))
    except ValueError:
        temps = ()
    if not temps or any(t < 0 for t in temps) or list(temps) != sorted(temps):
        raise argparse.ArgumentTypeError(
            f"expected increasing numbers >= 0 separated by commas, got {text!r}"
        )
    return temps


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
    if args.long_form:
        from speechdistill.decode import decode_long_form
        from speechdistill.inference.long_form import LongFormConfig

        long_form = LongFormConfig(
            temperatures=args.fallback_temperatures,
            compression_ratio_threshold=args.compression_ratio_threshold,
            logprob_threshold=args.logprob_threshold,
            no_speech_threshold=args.no_speech_threshold,
            condition_on_prev_tokens=args.condition_on_prev_tokens,
            word_timestamps=args.word_timestamps,
        )
        decode_long_form(args.model, args.data, args.out, config, long_form)
        return 0
    decode_data_dir(args.model, args.data, args.out, config)
    return 0
