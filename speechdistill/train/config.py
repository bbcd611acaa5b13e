"""Training configuration: one dataclass, a YAML file, and ``--key value`` overrides."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, get_type_hints

import yaml

from speechdistill.utils import PathLike, atomic_write_text

if TYPE_CHECKING:
    from speechdistill.train.hubert_student import StudentArch

#: Loss weights of the two readings of Distil-Whisper: the paper (CE 1.0, KL 0.8) and its
#: training code (0.8·CE + 1.0·KL). ``loss_preset`` picks one; ``alpha_ce``/``alpha_kd`` win.
LOSS_PRESETS = {"paper": (1.0, 0.8), "code": (0.8, 1.0)}
#: ``sample_weights``: use ``utt2weight`` when it exists, require it, or ignore it.
SAMPLE_WEIGHTS = ("auto", "true", "false")


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


#: The range of every numeric option of the training configs (those not named are unbounded):
#: ``>=1`` counts and sizes, ``>=0`` (0: none or off), ``>0``, ``[0,1]`` probabilities,
#: ``[0,1)``. Checked on the command line and in ``__post_init__`` (so YAML files too).
BOUNDS = {
    ">=1": ("max_steps", "batch_size", "grad_accum", "eval_steps", "eval_batch_size",
            "save_steps", "keep_checkpoints", "log_steps", "max_label_tokens",
            "eval_max_new_tokens", "student_layers", "student_pos_conv_kernel",
            "student_pos_conv_groups", "mask_time_length"),
    ">=0": ("warmup_steps", "weight_decay", "max_grad_norm", "seed", "num_workers",
            "eval_max_utts", "on_policy_weight", "on_policy_temperature", "student_hidden_size",
            "student_heads", "student_ffn_size", "head_hidden_size", "lambda_cos",
            "freeze_encoder_steps", "alpha_ce", "alpha_kd", "target_warmup_steps"),
    ">0": ("lr", "temperature", "max_duration", "reg_lr"),
    "[0,1]": ("timestamp_prob", "prev_context_prob", "skew", "mask_time_prob", "layerdrop",
              "final_dropout"),
    "[0,1)": ("ema_decay",),
    "(0,1)": ("target_sparsity",),
}  # fmt: skip
_BOUND_OF = {name: bound for bound, names in BOUNDS.items() for name in names}
_IN_WORDS = {">=1": ">= 1", ">=0": ">= 0", ">0": "> 0", "[0,1]": "in [0, 1]", "[0,1)": "in [0, 1)",
             "(0,1)": "in (0, 1)"}  # fmt: skip
_IN_BOUND = {
    ">=1": lambda v: v >= 1,
    ">=0": lambda v: v >= 0,
    ">0": lambda v: v > 0,
    "[0,1]": lambda v: 0 <= v <= 1,
    "[0,1)": lambda v: 0 <= v < 1,
    "(0,1)": lambda v: 0 < v < 1,
}


def bound_error(name: str, value: Any) -> str | None:
    """Why ``value`` is out of the range of option ``name`` (see :data:`BOUNDS`), or None."""
    bound = _BOUND_OF.get(name)
    if bound is None or value is None or isinstance(value, bool):
        return None
    if not isinstance(value, (int, float)) or value != value or not _IN_BOUND[bound](value):
        return f"expected a number {_IN_WORDS[bound]}, got {value!r}"
    return None


@dataclass
class BaseTrainConfig:
    """Optimisation, evaluation and checkpoint options every trainer shares; a trainer's config
    subclasses it, adding its own fields and redefining a field to change its default."""

    # optimisation
    max_steps: int = _opt(1000, "optimiser steps")
    batch_size: int = _opt(8, "utterances per step and process")
    grad_accum: int = _opt(1, "batches accumulated per optimiser step")
    lr: float = _opt(1e-4, "peak learning rate")
    lr_schedule: str = _opt(
        "linear", "any transformers scheduler: linear, cosine, constant_with_warmup"
    )
    warmup_steps: int = _opt(100, "linear warm-up steps")
    weight_decay: float = _opt(0.0, "AdamW weight decay")
    max_grad_norm: float = _opt(1.0, "gradient clipping (0: none)")
    mixed_precision: str = _opt("no", "no | bf16 | fp16")
    seed: int = _opt(0, "random seed")
    num_workers: int = _opt(0, "data loader workers")
    # evaluation and checkpoints
    eval_steps: int = _opt(100, "evaluate on dev every N steps")
    eval_batch_size: int = _opt(8, "dev batch size")
    eval_max_utts: int = _opt(0, "0: the whole dev set")
    save_steps: int = _opt(100, "checkpoint every N steps")
    keep_checkpoints: int = _opt(2, "checkpoints kept on disk")
    log_steps: int = _opt(10, "log the losses every N steps")

    def __post_init__(self) -> None:
        for f in fields(self):
            problem = bound_error(f.name, getattr(self, f.name))
            if problem:
                raise ValueError(f"training option {f.name}: {problem}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(
                f"mixed_precision must be no, bf16 or fp16, not {self.mixed_precision!r}"
            )

    def save(self, path: PathLike) -> None:
        atomic_write_text(path, yaml.safe_dump(asdict(self), sort_keys=False))

    @classmethod
    def from_sources(cls, config_file: PathLike | None, overrides: dict[str, Any]) -> Self:
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


@dataclass
class TrainConfig(BaseTrainConfig):
    """Knowledge-distillation training of a Whisper student (see ``speechdistill train --help``)."""

    # data
    label_file: str = field(
        default="text.teacher",
        metadata={"help": "the targets: text.teacher (pseudo-labels) or text"},
    )
    max_label_tokens: int = field(
        default=200, metadata={"help": "longer labels are skipped (logged)"}
    )
    sample_weights: str = field(
        default="auto",
        metadata={"help": "per-utterance loss weights from the train dir's utt2weight (filter "
                  "--mode weight): auto (when the file exists) | true (required) | false "
                  "(ignored)"},
    )  # fmt: skip
    timestamp_prob: float = field(
        default=0.0,
        metadata={
            "help": "train on the timestamped pseudo-label (utt2teacher_tokens_ts) with this "
            "probability; every teacher mode (cache: pseudo-label with --timestamps --cache-encoder "
            "--rskd-k K)"
        },
    )
    prev_context_prob: float = field(
        default=0.0,
        metadata={
            "help": "prompt with the previous utterance of the speaker with this probability, no "
            "loss on it (cache: KD targets drawn without the context)"
        },
    )
    language: str | None = field(
        default=None, metadata={"help": "the prompt's language (multilingual models), e.g. pt"}
    )
    task: str = field(
        default="transcribe", metadata={"help": "transcribe | translate (multilingual models)"}
    )
    # teacher
    teacher_mode: str = field(
        default="shared_encoder",
        metadata={"help": "online | shared_encoder | cache (no teacher: the pseudo-label caches)"},
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "the pseudo-label caches (teacher_mode=cache)"}
    )
    # loss
    loss_preset: str = field(
        default="code", metadata={"help": "paper (CE 1.0, KL 0.8) or code (0.8·CE + 1.0·KL)"}
    )
    alpha_ce: float | None = field(
        default=None, metadata={"help": "CE weight (overrides the preset)"}
    )
    alpha_kd: float | None = field(
        default=None, metadata={"help": "KD weight (overrides the preset)"}
    )
    divergence: str = field(
        default="forward_kl", metadata={"help": "forward_kl | reverse_kl | skew_kl | skew_rkl | js"}
    )
    temperature: float = field(
        default=2.0, metadata={"help": "KD temperature T (the loss is scaled by T²)"}
    )
    skew: float = field(default=0.1, metadata={"help": "λ of the skew divergences"})
    # optimisation (see BaseTrainConfig for the rest)
    warmup_steps: int = field(default=50, metadata={"help": "linear warm-up steps"})
    ema_decay: float = field(default=0.0, metadata={"help": "0: no EMA; e.g. 0.999"})
    freeze_encoder: bool = field(default=True, metadata={"help": "keep the encoder frozen"})
    freeze_embeddings: bool = field(
        default=False, metadata={"help": "keep the token and position embeddings frozen"}
    )
    specaugment: bool = field(
        default=False, metadata={"help": "SpecAugment on the features (when the encoder runs)"}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute activations in the backward pass"}
    )
    on_policy_weight: float = field(
        default=0.0,
        metadata={"help": "weight of on-policy KD (GKD, Agarwal et al. 2024): the student decodes "
                  "each batch itself and learns the teacher's distributions at every position "
                  "of its own decode, so that it learns to leave its own errors (repetition "
                  "loops); 0: off. Runs the teacher's decoder in every teacher_mode"},
    )  # fmt: skip
    on_policy_temperature: float = field(
        default=0.0,
        metadata={"help": "sampling temperature of the student's decode (0: greedy)"},
    )
    # evaluation
    eval_batch_size: int = field(default=16, metadata={"help": "dev decoding batch size"})
    eval_max_new_tokens: int = field(
        default=128, metadata={"help": "caps decoding of a student still in repetition loops"}
    )
    eval_temperature_fallback: bool = field(
        default=False,
        metadata={"help": "decode dev with Whisper's temperature fallback (as decode "
                  "--temperature-fallback), so that a repetition loop does not choose the "
                  "checkpoint when test is decoded with it"},
    )  # fmt: skip
    eval_normalizer: str = field(
        default="english", metadata={"help": "text normaliser of the dev WER"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss_preset not in LOSS_PRESETS:
            raise ValueError(f"loss_preset must be one of {sorted(LOSS_PRESETS)}")
        if isinstance(self.sample_weights, bool):  # YAML's true/false
            self.sample_weights = str(self.sample_weights).lower()
        if self.sample_weights not in SAMPLE_WEIGHTS:
            raise ValueError(
                f"sample_weights must be one of {', '.join(SAMPLE_WEIGHTS)}, "
                f"got {self.sample_weights!r}"
            )
        if self.teacher_mode not in ("online", "shared_encoder", "cache"):
            raise ValueError(f"unknown teacher_mode {self.teacher_mode!r}")
        if self.on_policy_weight < 0 or self.on_policy_temperature < 0:
            raise ValueError("on_policy_weight and on_policy_temperature must be >= 0")
        if self.teacher_mode == "shared_encoder" and not self.freeze_encoder:
            raise ValueError("a shared encoder must be frozen (freeze_encoder=true)")

    @property
    def weights(self) -> tuple[float, float]:
        """(alpha_ce, alpha_kd) after the preset and explicit values."""
        ce, kd = LOSS_PRESETS[self.loss_preset]
        return (ce if self.alpha_ce is None else self.alpha_ce,
                kd if self.alpha_kd is None else self.alpha_kd)  # fmt: skip


def _parse_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_config_args(
    parser: argparse.ArgumentParser,
    config_cls: type = TrainConfig,
    *,
    title: str = "training options (override the --config file)",
    description: str | None = None,
    skip: Collection[str] = (),
) -> None:
    """One ``--name value`` option per field of ``config_cls`` (a dataclass such as
    :class:`TrainConfig`; default: unset), except the fields named in ``skip``."""
    hints = get_type_hints(config_cls)
    group = parser.add_argument_group(title, description)
    for f in fields(config_cls):
        if f.name in skip:
            continue
        kind = hints[f.name]
        parse: Any = str
        if kind is bool:
            parse = _parse_bool
        elif kind in (int, float):
            parse = kind
        elif kind == (float | None):
            parse = float
        metavar = {_parse_bool: "BOOL", int: "INT", float: "FLOAT"}.get(parse, "STR")
        if f.name in _BOUND_OF:
            parse = _bounded(parse, f.name)
        default = f.default if f.default is not dataclasses.MISSING else None
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f"cfg_{f.name}",
            type=parse,
            default=None,
            metavar=metavar,
            help=f"{f.metadata.get('help', '')} (default: {json.dumps(default)})",
        )


def _bounded(parse: Any, name: str) -> Any:
    """``parse`` then the range check of option ``name`` (argparse's one-line usage error)."""

    def check(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        problem = bound_error(name, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return check


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}


# DistilHuBERT

#: How teacher targets are normalised before the loss.
TARGET_NORMS = ("none", "utterance")


@dataclass
class HubertTrainConfig(BaseTrainConfig):
    """DistilHuBERT training (see ``speechdistill train --help``, with ``--student hubert``)."""

    # teacher and targets
    target_layers: str | None = field(
        default=None,
        metadata={
            "help": "teacher layers to predict, e.g. 4,8,12 (default: 1/3, 2/3 and all "
            "of the teacher's depth: 4,8,12 of 12 layers, 1,3,4 of 4)"
        },
    )
    teacher_cache: bool = field(
        default=False,
        metadata={
            "help": "run the frozen teacher once per training utterance instead of on every "
            "batch (targets in memory, and on disk until training ends, for resuming)"
        },
    )
    max_duration: float = field(
        default=30.0,
        metadata={"help": "skip longer train/dev utterances, seconds (Whisper teachers: ≤ 30)"},
    )
    # student
    student_layers: int = field(default=2, metadata={"help": "transformer layers of the student"})
    student_hidden_size: int = field(
        default=0, metadata={"help": "Whisper teachers: student width (0: the teacher's)"}
    )
    student_heads: int = field(
        default=0, metadata={"help": "Whisper teachers: attention heads (0: the teacher's)"}
    )
    student_ffn_size: int = field(
        default=0, metadata={"help": "Whisper teachers: feed-forward width (0: 4 × width)"}
    )
    student_conv_dim: str = field(
        default="512,512,512,512,512,512,512",
        metadata={"help": "Whisper teachers: channels of the 7 CNN layers (HuBERT's strides)"},
    )
    student_pos_conv_kernel: int = field(
        default=128, metadata={"help": "Whisper teachers: positional convolution kernel"}
    )
    student_pos_conv_groups: int = field(
        default=16, metadata={"help": "Whisper teachers: positional convolution groups"}
    )
    head_hidden_size: int = field(
        default=0, metadata={"help": "hidden width of each prediction head (0: student width)"}
    )
    freeze_feature_encoder: bool = field(
        default=False, metadata={"help": "keep the student's CNN feature extractor frozen"}
    )
    # loss
    lambda_cos: float = field(
        default=1.0, metadata={"help": "λ: weight of −log σ(cos) beside the L1 term"}
    )
    target_norm: str = field(
        default="none",
        metadata={
            "help": "none (the paper) | utterance: standardise each target dimension over "
            "the utterance's frames (for teachers whose states are mostly a shared "
            "offset, e.g. Whisper)"
        },
    )
    # optimisation (see BaseTrainConfig for the rest)
    lr: float = field(default=2e-4, metadata={"help": "peak learning rate (the paper's 2e-4)"})
    max_grad_norm: float = field(default=10.0, metadata={"help": "gradient clipping (0: none)"})
    mixed_precision: str = field(default="no", metadata={"help": "no | bf16 | fp16 (student only)"})
    # evaluation and checkpoints
    eval_steps: int = field(default=100, metadata={"help": "dev loss every N steps"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.target_layers, (list, tuple)):
            self.target_layers = ",".join(str(x) for x in self.target_layers)
        if isinstance(self.student_conv_dim, (list, tuple)):
            self.student_conv_dim = ",".join(str(x) for x in self.student_conv_dim)
        if self.lambda_cos < 0:
            raise ValueError("lambda_cos must be ≥ 0")
        if self.target_norm not in TARGET_NORMS:
            raise ValueError(f"target_norm must be one of {TARGET_NORMS}, not {self.target_norm!r}")

    def arch(self) -> StudentArch:
        """The student architecture these options describe."""
        from speechdistill.train.hubert_student import StudentArch

        conv = tuple(int(c) for c in self.student_conv_dim.replace(",", " ").split())
        return StudentArch(
            num_layers=self.student_layers,
            hidden_size=self.student_hidden_size,
            num_heads=self.student_heads,
            ffn_size=self.student_ffn_size,
            conv_dim=conv,
            pos_conv_kernel=self.student_pos_conv_kernel,
            pos_conv_groups=self.student_pos_conv_groups,
            head_hidden_size=self.head_hidden_size,
        )


#: Options of :class:`HubertTrainConfig` that the Whisper :class:`TrainConfig` lacks.
HUBERT_ONLY_OPTIONS = tuple(
    f.name for f in fields(HubertTrainConfig) if f.name not in {g.name for g in fields(TrainConfig)}
)


# CTC fine-tuning


@dataclass
class CTCTrainConfig(BaseTrainConfig):
    """CTC fine-tuning (see ``speechdistill ctc-finetune --help``)."""

    # data
    label_file: str = field(default="text", metadata={"help": "transcripts: text or text.teacher"})
    normalizer: str = field(
        default="english",
        metadata={"help": "normaliser of the targets (and the vocabulary): english, basic, …"},
    )
    max_duration: float = field(default=30.0, metadata={"help": "skip longer utterances (s)"})
    # model
    from_scratch: bool = field(
        default=False,
        metadata={"help": "random initialisation of the same architecture (the baseline)"},
    )
    freeze_feature_encoder: bool = field(
        default=True, metadata={"help": "keep the CNN feature extractor frozen"}
    )
    freeze_encoder_steps: int = field(
        default=0,
        metadata={
            "help": "train only the CTC output layer for the first N steps, then the "
            "encoder too (fairseq's freeze_finetune_updates)"
        },
    )
    mask_time_prob: float = field(
        default=0.05, metadata={"help": "SpecAugment: probability of masking time steps"}
    )
    mask_time_length: int = field(default=10, metadata={"help": "SpecAugment: span length"})
    layerdrop: float = field(default=0.0, metadata={"help": "LayerDrop probability"})
    final_dropout: float = field(default=0.0, metadata={"help": "dropout before the CTC head"})
    # evaluation and checkpoints
    eval_steps: int = field(default=100, metadata={"help": "decode the dev set every N steps"})
    eval_normalizer: str = field(
        default="english", metadata={"help": "text normaliser of the dev WER/CER"}
    )
    select_metric: str = field(
        default="cer", metadata={"help": "dev figure that picks the best checkpoint: cer | wer"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        from speechdistill.text import NORMALIZERS

        for name in (self.normalizer, self.eval_normalizer):
            if name not in NORMALIZERS:
                raise ValueError(f"unknown normaliser {name!r} (known: {sorted(NORMALIZERS)})")
        if self.select_metric not in ("cer", "wer"):
            raise ValueError(f"select_metric must be cer or wer, not {self.select_metric!r}")


# Structured pruning (DPHuBERT)


@dataclass
class PruneTrainConfig(BaseTrainConfig):
    """Joint distillation and structured pruning, and the final distillation of the pruned model
    (see ``speechdistill prune --help``)."""

    # teacher and loss
    distill_layers: str | None = field(
        default=None,
        metadata={
            "help": "teacher layers the student's same layers are distilled to, 0 = the input of "
            "the first transformer layer (the CNN output); default: 1/3, 2/3 and all of the "
            "depth, and 0 for HuBERT-like teachers (DPHuBERT's 0,4,8,12 of HuBERT Base)"
        },
    )
    lambda_cos: float = field(
        default=1.0, metadata={"help": "weight of −log σ(cos) beside the L1 term"}
    )
    max_duration: float = field(
        default=30.0,
        metadata={"help": "skip longer train/dev utterances, seconds (Whisper teachers: ≤ 30)"},
    )
    student_input: str = field(
        default="window",
        metadata={
            "help": "a Whisper student reads the 30 s window (window: what a Whisper decoder "
            "reads) or its clips' frames only (clip: ~10x less compute on short clips, for CTC)"
        },
    )
    teacher_cache: bool = field(
        default=False,
        metadata={"help": "run the teacher once per training utterance, not at every step"},
    )
    # pruning
    prune_units: str | None = field(
        default=None,
        metadata={
            "help": "units to prune: conv, head, interm, and whole blocks attlayer, ffnlayer "
            "(default: conv,head,interm, DPHuBERT's; head,interm for Whisper encoders and CNNs "
            "that cannot be pruned)"
        },
    )
    target_sparsity: float = field(
        default=0.5, metadata={"help": "fraction of the encoder's parameters to remove"}
    )
    target_warmup_steps: int = field(
        default=0,
        metadata={
            "help": "steps over which the target rises linearly from 0 (0: half of max_steps)"
        },
    )
    reg_lr: float = field(
        default=0.02,
        metadata={"help": "learning rate of the gates and of the λs (ascent), DPHuBERT's 0.02"},
    )
    exact_sparsity: bool = field(
        default=True,
        metadata={
            "help": "at the end, shift every gate's count of zeros by one common offset of "
            "log_alpha so that the pruned model's sparsity is the target's (the λs only reach "
            "it in the long run); false: DPHuBERT's deterministic masks as they are"
        },
    )
    # optimisation (see BaseTrainConfig for the rest)
    lr: float = field(default=2e-4, metadata={"help": "learning rate of the model (DPHuBERT's)"})
    max_grad_norm: float = field(default=10.0, metadata={"help": "gradient clipping (0: none)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("distill_layers", "prune_units"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                setattr(self, name, ",".join(str(x) for x in value))
        if self.student_input not in ("window", "clip"):
            raise ValueError(f"student_input must be window or clip, not {self.student_input!r}")
