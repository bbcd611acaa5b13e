"""``speechdistill ctc-finetune``: CTC fine-tuning of a speech encoder (a DistilHuBERT student)."""

from __future__ import annotations

import argparse
import json

from speechdistill.cli.options import add_force_arg, data_dir, model_dir, out_dir
from speechdistill.train.config import add_config_args, overrides_from_args


def register(sub: argparse._SubParsersAction) -> None:
    from speechdistill.train.config import CTCTrainConfig

    p = sub.add_parser(
        "ctc-finetune",
        help="CTC fine-tuning of a speech encoder for character ASR (best checkpoint on dev)",
        description="Stage ctc_finetune of recipes/distil_hubert.sh. Fine-tunes MODEL (a "
        "DistilHuBERT student from `train --student hubert`, or any HuBERT/wav2vec2/WavLM "
        "model dir) with a CTC head over the characters of TRAIN's transcripts, decodes DEV "
        "every eval-steps, keeps the best checkpoint on dev and resumes from OUT/checkpoints "
        "after a kill. --from-scratch true trains the same architecture from random weights.",
    )
    p.add_argument(
        "--model", required=True, type=model_dir, help="encoder dir (e.g. exp/hubert/student)"
    )
    p.add_argument("--train", type=data_dir, required=True, help="training data dir (with text)")
    p.add_argument(
        "--dev", type=data_dir, required=True, help="dev data dir (model selection only)"
    )
    p.add_argument("--out", type=out_dir, required=True, help="output dir (model, processor, logs)")
    p.add_argument("--config", default=None, help="YAML file of options")
    add_force_arg(p)
    add_config_args(p, CTCTrainConfig, title="fine-tuning options (override the --config file)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from speechdistill.train.config import CTCTrainConfig
    from speechdistill.train.ctc_finetune import ctc_finetune

    config = CTCTrainConfig.from_sources(args.config, overrides_from_args(args))
    summary = ctc_finetune(args.model, args.train, args.dev, args.out, config, force=args.force)
    if summary:
        m = f"best_dev_{config.select_metric}"
        print(json.dumps({k: summary[k] for k in ("steps", "best_step", m, "sec_per_step")}))
    return 0
