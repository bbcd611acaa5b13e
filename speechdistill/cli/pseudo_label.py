"""``speechdistill pseudo-label``: the teacher's transcripts and statistics for a data dir."""

from __future__ import annotations

import argparse

from speechdistill.cli.options import (
    data_dir,
    model_dir,
    non_negative_int,
    out_dir,
    positive_float,
    positive_int,
)

CT2_ONLY_DTYPES = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pseudo-label",
        help="label a data dir with the teacher (text.teacher + per-utterance statistics)",
        description="Stage 4 of the recipes. Writes OUT as a data dir with text.teacher, "
        "utt2<stat> files, bad_utts and pseudo_label.json; resumes after a kill. Utterances "
        "longer than --max-duration are skipped (counted), not truncated. A second run on the "
        "same OUT (and job) is refused while the first runs. Run several "
        "jobs with --num-jobs/--job (then --finalize), or processes with `accelerate launch`.",
    )
    p.add_argument(
        "--teacher", required=True, type=model_dir, help="teacher model directory (stage 3)"
    )
    p.add_argument("--data", type=data_dir, required=True, help="Kaldi data dir (text not needed)")
    p.add_argument("--out", type=out_dir, required=True, help="output data dir")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--num-beams", type=positive_int, default=1, help="1 = greedy")
    p.add_argument("--language", default=None, help="e.g. pt (multilingual teachers; else detect)")
    p.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    p.add_argument("--timestamps", action="store_true", help="also write text.teacher_ts")
    p.add_argument("--max-new-tokens", type=positive_int, default=None)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 (accelerate sets it)")
    p.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "float16", "bfloat16", *CT2_ONLY_DTYPES],
        help="weights/compute type; the int8/int16 types need --backend ct2",
    )
    p.add_argument("--backend", default="hf", choices=["hf", "ct2"])
    p.add_argument(
        "--encoder-window",
        type=positive_float,
        default=30.0,
        help="encoder input in seconds (30 = Whisper's; shorter is faster, changes labels)",
    )
    p.add_argument("--cache-encoder", action="store_true", help="cache encoder states (fp16)")
    p.add_argument(
        "--rskd-k", type=non_negative_int, default=0, help="cache K sampled teacher tokens/position"
    )
    p.add_argument("--rskd-temperature", type=positive_float, default=1.0)
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the RS-KD draws")
    p.add_argument(
        "--max-duration",
        type=positive_float,
        default=30.0,
        help="skip longer utterances, seconds (at most 30, Whisper's window; they are counted "
        "in pseudo_label.json and listed in bad_utts, never truncated)",
    )
    p.add_argument("--num-jobs", type=positive_int, default=1, help="jobs sharing this output dir")
    p.add_argument("--job", type=positive_int, default=1, help="this job's number, 1..num-jobs")
    p.add_argument(
        "--finalize", action="store_true", help="only merge the finished jobs' results into OUT"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from speechdistill.pseudo_label import PseudoLabelConfig, finalize, pseudo_label

    if args.finalize:
        finalize(args.data, args.out)
        return 0
    if args.dtype in CT2_ONLY_DTYPES and args.backend != "ct2":
        raise ValueError(f"--dtype {args.dtype} needs --backend ct2")
    config = PseudoLabelConfig(
        batch_size=args.batch_size,
        num_beams=args.num_beams,
        language=args.language,
        task=args.task,
        return_timestamps=args.timestamps,
        max_new_tokens=args.max_new_tokens,
        dtype=args.dtype,
        backend=args.backend,
        encoder_window=args.encoder_window,
        cache_encoder=args.cache_encoder,
        rskd_k=args.rskd_k,
        rskd_temperature=args.rskd_temperature,
        seed=args.seed,
        max_duration=args.max_duration,
        device=args.device,
    )
    pseudo_label(args.teacher, args.data, args.out, config, num_jobs=args.num_jobs, job=args.job)
    return 0
