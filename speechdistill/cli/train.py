"""``speechdistill train``: KD training of a student (config file + ``--option value`` overrides)."""

from __future__ import annotations

import argparse
import json

from speechdistill.train.config import TrainConfig, add_config_args, overrides_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="knowledge-distillation training of a student (best checkpoint on dev)",
        description="Stage 7 of the recipes. Trains STUDENT (from init-student) on the "
        "(pseudo-)labelled TRAIN dir with the TEACHER, evaluates on DEV every eval-steps, keeps "
        "the best checkpoint on dev, resumes from OUT/checkpoints after a kill. Runs under "
        "`accelerate launch` for several GPUs.",
    )
    p.add_argument("--student", required=True, help="initial student dir (init-student)")
    p.add_argument("--teacher", required=True, help="teacher dir (stage 3)")
    p.add_argument("--train", required=True, help="training data dir (text.teacher or text)")
    p.add_argument("--dev", required=True, help="dev data dir (model selection only)")
    p.add_argument("--out", required=True, help="output dir (model, logs, checkpoints)")
    p.add_argument("--config", default=None, help="YAML file of training options")
    add_config_args(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from speechdistill.train.whisper_kd import train_whisper

    config = TrainConfig.from_sources(args.config, overrides_from_args(args))
    summary = train_whisper(args.student, args.teacher, args.train, args.dev, args.out, config)
    if summary:
        best = {k: summary[k] for k in ("steps", "best_step", "best_dev_wer", "sec_per_step")}
        print(json.dumps(best))
    return 0
