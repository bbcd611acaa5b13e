"""``speechdistill speed``: size and speed of a model (latency, RTFx, speculative decoding)."""

from __future__ import annotations

import argparse

from speechdistill.cli.options import data_dir, model_dir, model_source, out_file, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser(
        "speed",
        help="size and speed of a model: latency, RTFx, speculative decoding",
        description="Greedy decoding of the first MAX_UTTS utterances at batch 1 and at "
        "--batch-size; with --assistant (a student dir) also speculative decoding with the "
        "student's decoder as the model's assistant. Writes OUT (speed.json).",
    )
    sp.add_argument("--model", required=True, type=model_source, help="model dir")
    sp.add_argument("--data", type=data_dir, required=True, help="data dir")
    sp.add_argument("--out", type=out_file, required=True, help="speed.json to write")
    sp.add_argument("--batch-size", type=positive_int, default=16)
    sp.add_argument("--max-utts", type=positive_int, default=32)
    sp.add_argument(
        "--assistant", default=None, type=model_dir, help="student dir: speculative decoding"
    )
    sp.add_argument("--device", default="cpu")
    sp.add_argument(
        "--language", default=None, help="e.g. pt: forced for a multilingual model (else detected)"
    )
    sp.set_defaults(func=run_speed)


def run_speed(args: argparse.Namespace) -> int:
    from speechdistill.speed import measure_speed, save_report

    report = measure_speed(
        args.model,
        args.data,
        batch_size=args.batch_size,
        max_utts=args.max_utts,
        assistant=args.assistant,
        device=args.device,
        language=args.language,
    )
    save_report(report, args.out)
    spec = report.speculative
    print(
        f"{args.model}: {report.params['total'] / 1e6:.2f}M params; latency b1 "
        f"{report.latency_b1:.3f} s/utt; RTFx b{report.batch_size} {report.rtfx:.2f}"
        + (
            f"; speculative {spec['speedup']:.2f}x, identical {spec['identical']}/"
            f"{spec['num_utts']}"
            if spec
            else ""
        )
    )
    return 0
