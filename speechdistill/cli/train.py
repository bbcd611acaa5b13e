"""``speechdistill train``: KD training of a student (config file + ``--option value`` overrides).

``--student DIR`` (from init-student) trains a Distil-Whisper student; ``--student hubert``
distils a DistilHuBERT student from a HuBERT / wav2vec2 / WavLM or Whisper-encoder teacher
(``--student DIR`` with a ``heads.json`` continues one).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from speechdistill.cli.options import add_force_arg, data_dir, model_dir, out_dir
from speechdistill.train.config import TrainConfig, add_config_args, overrides_from_args


def register(sub: argparse._SubParsersAction) -> None:
    from speechdistill.train.config import HUBERT_ONLY_OPTIONS, HubertTrainConfig

    p = sub.add_parser(
        "train",
        help="knowledge-distillation training of a student (best checkpoint on dev)",
        description="Stage 7 of the recipes. Trains STUDENT (from init-student) on the "
        "(pseudo-)labelled TRAIN dir with the TEACHER, evaluates on DEV every eval-steps, keeps "
        "the best checkpoint on dev, resumes from OUT/checkpoints after a kill. Runs under "
        "`accelerate launch` for several GPUs. With --student hubert: DistilHuBERT layer-wise "
        "distillation (TRAIN needs no labels; model selection on the dev loss).",
    )
    p.add_argument(
        "--student",
        required=True,
        type=_student,
        help="initial student dir (init-student), or `hubert` for a new DistilHuBERT student",
    )
    p.add_argument("--teacher", required=True, type=model_dir, help="teacher dir (stage 3)")
    p.add_argument(
        "--train", type=data_dir, required=True, help="training data dir (text.teacher or text)"
    )
    p.add_argument(
        "--dev", type=data_dir, required=True, help="dev data dir (model selection only)"
    )
    p.add_argument(
        "--out", type=out_dir, required=True, help="output dir (model, logs, checkpoints)"
    )
    p.add_argument("--config", default=None, help="YAML file of training options")
    add_force_arg(p)
    add_config_args(p)
    shared = [f for f in fields(HubertTrainConfig) if f.name not in HUBERT_ONLY_OPTIONS]
    whisper_defaults = {f.name: f.default for f in fields(TrainConfig)}
    own = ", ".join(
        f"{f.name.replace('_', '-')} {f.default}"
        for f in shared
        if f.default != whisper_defaults[f.name]
    )
    add_config_args(
        p,
        HubertTrainConfig,
        title="DistilHuBERT options (--student hubert)",
        description="With --student hubert the options above that DistilHuBERT shares apply too "
        f"(with these defaults of its own: {own}); the Whisper-only ones are refused.",
        skip=[f.name for f in shared],
    )
    p.set_defaults(func=_run)


def _student(text: str) -> str:
    """``hubert`` (a new DistilHuBERT student) or an existing model directory."""
    return text if text == "hubert" else model_dir(text)


def _is_hubert(student: str) -> bool:
    from speechdistill.train.hubert_kd import NEW_STUDENT
    from speechdistill.train.hubert_student import HEADS_JSON

    return student == NEW_STUDENT or (Path(student) / HEADS_JSON).is_file()


def _run(args: argparse.Namespace) -> int:
    if _is_hubert(args.student):
        return _run_hubert(args)
    from speechdistill.train.whisper_kd import train_whisper

    config = TrainConfig.from_sources(args.config, overrides_from_args(args))
    summary = train_whisper(
        args.student, args.teacher, args.train, args.dev, args.out, config, force=args.force
    )
    if summary:
        best = {k: summary[k] for k in ("steps", "best_step", "best_dev_wer", "sec_per_step")}
        print(json.dumps(best))
    return 0


def _run_hubert(args: argparse.Namespace) -> int:
    from speechdistill.train.config import HubertTrainConfig
    from speechdistill.train.hubert_kd import train_hubert

    config = HubertTrainConfig.from_sources(args.config, overrides_from_args(args))
    summary = train_hubert(
        args.teacher, args.train, args.dev, args.out, config, args.student, force=args.force
    )
    if summary:
        best = {k: summary[k] for k in ("steps", "best_step", "best_dev_loss", "sec_per_step")}
        print(json.dumps(best))
    return 0
