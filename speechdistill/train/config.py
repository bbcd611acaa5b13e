"""Training configuration: one dataclass, a YAML file, and ``--key value`` overrides."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from speechdistill.utils import PathLike, atomic_write_text

#: Loss weights of the two readings of Distil-Whisper: the paper (CE 1.0, KL 0.8) and its
#: training code (0.8·CE + 1.0·KL). ``loss_preset`` picks one; ``alpha_ce``/``alpha_kd`` win.
LOSS_PRESETS = {"paper": (1.0, 0.8), "code": (0.8, 1.0)}


@dataclass
class TrainConfig:
    """Knowledge-distillation training of a Whisper student (see ``speechdistill train --help``)."""

    # data
    label_file: str = "text.teacher"  # the targets: text.teacher (pseudo-labels) or text
    max_label_tokens: int = 200  # longer labels are skipped (logged)
    timestamp_prob: float = 0.0  # use text.teacher_ts (timestamp tokens) with this probability
    prev_context_prob: float = 0.0  # prompt with the previous utterance of the speaker
    language: str | None = None  # the prompt's language (multilingual models), e.g. pt
    task: str = "transcribe"  # transcribe | translate (multilingual models)
    # teacher
    teacher_mode: str = "shared_encoder"  # online | shared_encoder | cache
    cache_dir: str | None = None  # the pseudo-label caches (teacher_mode=cache)
    # loss
    loss_preset: str = "code"  # paper (CE 1.0, KL 0.8) or code (0.8·CE + 1.0·KL)
    alpha_ce: float | None = None
    alpha_kd: float | None = None
    divergence: str = "forward_kl"  # forward_kl | reverse_kl | skew_kl | skew_rkl | js
    temperature: float = 2.0
    skew: float = 0.1  # λ of the skew divergences
    # optimisation
    max_steps: int = 1000
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-4
    lr_schedule: str = "linear"  # any transformers scheduler: linear, cosine, constant_with_warmup
    warmup_steps: int = 50
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    ema_decay: float = 0.0  # 0: no EMA; e.g. 0.999
    freeze_encoder: bool = True
    freeze_embeddings: bool = False
    specaugment: bool = False  # SpecAugment on the features (when the encoder runs)
    mixed_precision: str = "no"  # no | bf16 | fp16
    gradient_checkpointing: bool = False
    seed: int = 0
    num_workers: int = 0
    # evaluation and checkpoints
    eval_steps: int = 100
    eval_batch_size: int = 16
    eval_max_utts: int = 0  # 0: the whole dev set
    eval_max_new_tokens: int = 128  # caps decoding of a student still in repetition loops
    eval_normalizer: str = "english"
    save_steps: int = 100
    keep_checkpoints: int = 2
    log_steps: int = 10

    def __post_init__(self) -> None:
        if self.loss_preset not in LOSS_PRESETS:
            raise ValueError(f"loss_preset must be one of {sorted(LOSS_PRESETS)}")
        if self.teacher_mode not in ("online", "shared_encoder", "cache"):
            raise ValueError(f"unknown teacher_mode {self.teacher_mode!r}")
        if self.teacher_mode == "cache" and (self.timestamp_prob or self.prev_context_prob):
            raise ValueError(
                "teacher_mode=cache holds the teacher's distributions of the plain pseudo-label: "
                "timestamp_prob and prev_context_prob must be 0"
            )
        if self.teacher_mode != "online" and not self.freeze_encoder:
            raise ValueError("a shared or cached encoder must be frozen (freeze_encoder=true)")

    @property
    def weights(self) -> tuple[float, float]:
        """(alpha_ce, alpha_kd) after the preset and explicit values."""
        ce, kd = LOSS_PRESETS[self.loss_preset]
        return (ce if self.alpha_ce is None else self.alpha_ce,
                kd if self.alpha_kd is None else self.alpha_kd)  # fmt: skip

    def save(self, path: PathLike) -> None:
        atomic_write_text(path, yaml.safe_dump(asdict(self), sort_keys=False))

    @classmethod
    def from_sources(cls, config_file: PathLike | None, overrides: dict[str, Any]) -> TrainConfig:
        """Defaults, then the YAML file, then the overrides (command line)."""
        values: dict[str, Any] = {}
        if config_file is not None:
            loaded = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{config_file}: expected a mapping of options")
            values.update(loaded)
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training options {unknown} (see speechdistill train --help)")
        return cls(**values)


def _parse_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """One ``--name value`` option per field of :class:`TrainConfig` (default: unset)."""
    hints = get_type_hints(TrainConfig)
    group = parser.add_argument_group("training options (override the --config file)")
    for f in fields(TrainConfig):
        kind = hints[f.name]
        parse: Any = str
        if kind is bool:
            parse = _parse_bool
        elif kind in (int, float):
            parse = kind
        elif kind == (float | None):
            parse = float
        default = f.default if f.default is not dataclasses.MISSING else None
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f"cfg_{f.name}",
            type=parse,
            default=None,
            help=f"(default: {json.dumps(default)})",
        )


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
