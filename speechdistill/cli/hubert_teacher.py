"""``speechdistill hubert-teacher``: prepare the teacher of a DistilHuBERT recipe."""

from __future__ import annotations

import argparse

from speechdistill.cli.options import model_source, out_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "hubert-teacher",
        help="prepare a DistilHuBERT teacher: HuBERT/wav2vec2/WavLM or a Whisper encoder",
        description="Stage teacher of recipes/distil_hubert.sh: make OUT a local copy of NAME "
        "(safetensors only). HuBERT, wav2vec2 and WavLM models (a Hub id such as "
        "facebook/hubert-base-ls960, or a directory) are saved with their feature extractor; "
        "Whisper teachers (tiny.en, a CTranslate2 dir, a transformers Whisper) go through "
        "`speechdistill teacher prepare`. teacher.json records the source; a rerun is a no-op.",
    )
    p.add_argument("name", type=model_source, help="Hub id, directory, or tiny.en")
    p.add_argument("out", type=out_dir, help="output directory, e.g. exp/hubert/teacher")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from speechdistill.teachers.hubert import prepare_ssl_teacher

    print(prepare_ssl_teacher(args.name, args.out))
    return 0
