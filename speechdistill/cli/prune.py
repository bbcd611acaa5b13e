"""``speechdistill prune``: structured pruning of a copy of the teacher while distilling it
(DPHuBERT); ``speechdistill final-distill`` (:mod:`.final_distill`) continues with the pruned
model."""

from __future__ import annotations

import argparse
import json

from speechdistill.cli.options import add_force_arg, data_dir, model_dir, out_dir
from speechdistill.train.config import add_config_args, overrides_from_args


def add_data_args(p: argparse.ArgumentParser) -> None:
    """The options ``prune`` and ``final-distill`` share: teacher, data, output, config."""
    from speechdistill.train.config import PruneTrainConfig

    p.add_argument(
        "--teacher", required=True, type=model_dir, help="teacher dir (hubert-teacher stage)"
    )
    p.add_argument("--train", type=data_dir, required=True, help="training data dir (audio only)")
    p.add_argument("--dev", type=data_dir, required=True, help="dev data dir (dev loss)")
    p.add_argument(
        "--out", type=out_dir, required=True, help="output dir (model, logs, checkpoints)"
    )
    p.add_argument("--config", default=None, help="YAML file of options")
    add_force_arg(p)
    add_config_args(p, PruneTrainConfig, title="options (override the --config file)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune",
        help="structured pruning with distillation (DPHuBERT) of a copy of the teacher",
        description="Starts the student as a copy of TEACHER's encoder (a HuBERT/wav2vec2 model, "
        "or a Whisper model's encoder), learns Hard-Concrete gates on its CNN channels, attention "
        "heads and FFN neurons (--prune-units) while distilling the teacher's layers "
        "(--distill-layers, L1 + cosine) under the sparsity constraint "
        "λ1(ŝ−t) + λ2(ŝ−t)² (target t warmed up to --target-sparsity, λs by gradient ascent), "
        "then removes the masked units: OUT holds the pruned model (model.safetensors, "
        "config.json, prune.json). Resumes from OUT/checkpoints after a kill. Follow with "
        "`speechdistill final-distill`.",
    )
    add_data_args(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from speechdistill.train.config import PruneTrainConfig
    from speechdistill.train.prune_kd import prune_distill

    config = PruneTrainConfig.from_sources(args.config, overrides_from_args(args))
    summary = prune_distill(args.teacher, args.train, args.dev, args.out, config, force=args.force)
    if summary:
        keys = ("steps", "target_sparsity", "expected_sparsity", "sparsity", "num_params",
                "original_params", "best_dev_loss", "sec_per_step")  # fmt: skip
        print(json.dumps({k: summary.get(k) for k in keys}))
    return 0
