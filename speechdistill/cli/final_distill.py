"""``speechdistill final-distill``: layer-wise distillation of a pruned model (``prune``'s output)
from its teacher, without the sparsity regulariser (DPHuBERT's final distillation)."""

from __future__ import annotations

import argparse
import json

from speechdistill.cli.options import model_dir
from speechdistill.cli.prune import add_data_args
from speechdistill.train.config import overrides_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "final-distill",
        help="distil a pruned model from its teacher, without the regulariser",
        description="Loads STUDENT (the output of `speechdistill prune`) and distils the same "
        "teacher layers into it again, from the layer maps pruning saved, with no gate or "
        "sparsity loss; keeps the best checkpoint on the dev loss, resumes after a kill. OUT "
        "holds the model in the same format (model.safetensors, config.json, prune.json), "
        "ready for ctc-finetune. Options as for prune (the pruning ones are ignored).",
    )
    p.add_argument("--student", required=True, type=model_dir, help="pruned model dir (prune)")
    add_data_args(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from speechdistill.train.config import PruneTrainConfig
    from speechdistill.train.prune_kd import final_distill

    config = PruneTrainConfig.from_sources(args.config, overrides_from_args(args))
    summary = final_distill(
        args.teacher, args.student, args.train, args.dev, args.out, config, force=args.force
    )
    if summary:
        keys = ("steps", "best_step", "best_dev_loss", "num_params", "sec_per_step")
        print(json.dumps({k: summary.get(k) for k in keys}))
    return 0
