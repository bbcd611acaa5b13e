"""``speechdistill init-student``: a Distil-Whisper student from the teacher (stage 6).

speechdistill init-student --teacher DIR --out DIR [--decoder-layers 2 | --decoder-layers 0,3]
                           [--encoder-layers N | LIST | --encoder PRUNED] [--dtype …]
                           [--overwrite]
"""

from __future__ import annotations

import argparse

from speechdistill.cli.options import model_dir, out_dir

LAYERS_HELP = (
    "a count (maximally spaced teacher layers, first and last kept) or comma-separated teacher "
    "layer indices, e.g. 0,3 (one index: 3,)"
)


def parse_layers(text: str) -> int | list[int]:
    """``"2"`` → 2 (a count); ``"0,3"`` → [0, 3]; ``"3,"`` → [3] (explicit teacher layers)."""
    text = text.strip()
    try:
        if "," not in text:
            return int(text)
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a layer count (2) or comma-separated layer indices (0,3)"
        ) from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init-student",
        help="initialise a Distil-Whisper student from the teacher",
        description="Copy the teacher's encoder (or a subset of its layers), a maximally spaced "
        "subset of its decoder layers, embeddings, layer norms, processor and generation config "
        "into OUT; OUT/student.json records the layer maps and parameter counts.",
    )
    p.add_argument(
        "--teacher",
        required=True,
        type=model_dir,
        help="teacher model directory (e.g. exp/teacher)",
    )
    p.add_argument(
        "--out", type=out_dir, required=True, help="output directory (e.g. exp/student_init)"
    )
    p.add_argument(
        "--decoder-layers", type=parse_layers, default=2, metavar="N|LIST", help=LAYERS_HELP
    )
    p.add_argument(
        "--encoder-layers",
        type=parse_layers,
        default=None,
        metavar="N|LIST",
        help=LAYERS_HELP + "; default: the whole encoder",
    )
    p.add_argument(
        "--encoder",
        type=model_dir,
        default=None,
        metavar="DIR",
        help="the student's encoder: a pruned Whisper encoder of this teacher (the output of "
        "`speechdistill prune` or `final-distill`) instead of the teacher's",
    )
    p.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "float16", "bfloat16"],
        help="weights dtype (default: the teacher's)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the model in OUT, an earlier init-student output (a folder it did not "
        "write is refused)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from speechdistill.init_student import init_student

    if args.encoder is not None and args.encoder_layers is not None:
        raise SystemExit("init-student: give --encoder or --encoder-layers, not both")
    info = init_student(
        args.teacher,
        args.out,
        decoder_layers=args.decoder_layers,
        encoder_layers=args.encoder_layers,
        encoder=args.encoder,
        dtype=args.dtype,
        overwrite=args.overwrite,
    )
    print(info.summary())
    return 0
