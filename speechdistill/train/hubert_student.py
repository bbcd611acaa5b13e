"""DistilHuBERT students (Chang et al. 2022): a shallow copy of a speech encoder plus one
prediction head per distilled teacher layer (:mod:`speechdistill.teachers.hubert` has the teachers).

**From a HuBERT / wav2vec2 / WavLM teacher** the student copies the CNN feature extractor, the
feature projection, the positional convolution, the encoder's layer norm and the first ``k``
transformer layers (default 2). HuBERT and wav2vec2 share one module layout, so both students are
plain :class:`~transformers.HubertModel`\\ s (a wav2vec2 feature projection always has its layer
norm: ``feat_proj_layer_norm=True``). WavLM layers carry a gated relative position bias that HuBERT
lacks, so a WavLM teacher gives a :class:`~transformers.WavLMModel` student.

**From a Whisper encoder** (no HuBERT weights needed; what the mini recipe uses) nothing can be
copied: the student is a HubertModel built from a config (HuBERT's CNN, whose strides multiply to
320 samples = 20 ms, so 50 frames/s like Whisper's encoder; a per-frame layer-norm CNN so that
batch padding does not change real frames), with the teacher's width by default.

**Heads.** One small MLP per target layer on the last student layer's output:
``Linear(H, H_head) → GELU → Linear(H_head, D_teacher)``. They are saved apart from the encoder
(``heads.safetensors`` + ``heads.json``) so that the student directory loads as a plain
transformers model anywhere (``HubertModel.from_pretrained``, ``HubertForCTC.from_pretrained``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speechdistill.teachers.hubert import (
    FRAME_ALIGNMENT,
    HUBERT_CONV_KERNEL,
    HUBERT_CONV_STRIDE,
    Teacher,
    default_feature_extractor,
    hubert_num_frames,
    parse_layers,
    read_config,
)
from speechdistill.utils import PathLike

log = logging.getLogger(__name__)

__all__ = [
    "HEADS_FILE",
    "HEADS_JSON",
    "DistilHubert",
    "StudentArch",
    "init_hubert_student",
    "load_hubert_student",
]

HEADS_FILE = "heads.safetensors"
HEADS_JSON = "heads.json"


class DistilHubert(nn.Module):
    """The student encoder (``HubertModel`` or ``WavLMModel``) and its prediction heads."""

    def __init__(
        self,
        encoder: nn.Module,
        target_layers: Sequence[int],
        teacher_hidden_size: int,
        head_hidden_size: int = 0,
    ):
        super().__init__()
        self.encoder = encoder
        self.target_layers = list(target_layers)
        self.teacher_hidden_size = teacher_hidden_size
        h = encoder.config.hidden_size
        self.head_hidden_size = head_hidden_size or h
        self.heads = nn.ModuleList(
            nn.Sequential(
                nn.Linear(h, self.head_hidden_size),
                nn.GELU(),
                nn.Linear(self.head_hidden_size, teacher_hidden_size),
            )
            for _ in self.target_layers
        )

    @property
    def config(self):
        return self.encoder.config

    def num_frames(self, num_samples: int | torch.Tensor) -> int | torch.Tensor:
        """Output frames for ``num_samples`` input samples."""
        c = self.encoder.config
        return hubert_num_frames(num_samples, c.conv_kernel, c.conv_stride)

    def forward(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(last hidden state (B, T, H), one (B, T, D_teacher) prediction per head)``."""
        h = self.encoder(input_values, attention_mask=attention_mask).last_hidden_state
        return h, [head(h) for head in self.heads]

    def heads_info(self) -> dict[str, Any]:
        return {
            "target_layers": self.target_layers,
            "teacher_hidden_size": self.teacher_hidden_size,
            "head_hidden_size": self.head_hidden_size,
            "student_hidden_size": self.encoder.config.hidden_size,
            "architecture": "Linear(H, H_head) -> GELU -> Linear(H_head, D_teacher), per layer",
        }

    def save(
        self,
        out_dir: PathLike,
        feature_extractor,
        extra: dict[str, Any] | None = None,
        owner: str = "train",
    ):
        """The encoder as a plain transformers model, its feature extractor, and the heads
        (``heads.safetensors`` + ``heads.json``) beside it; written through a staging dir."""
        from safetensors.torch import save_file

        from speechdistill.utils import staging_dir

        with staging_dir(out_dir, owner) as tmp:
            self.encoder.save_pretrained(tmp, safe_serialization=True)
            feature_extractor.save_pretrained(tmp)
            heads = {k: v.detach().contiguous().cpu() for k, v in self.heads.state_dict().items()}
            save_file(heads, str(tmp / HEADS_FILE))
            info = {**self.heads_info(), **(extra or {})}
            (tmp / HEADS_JSON).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _encoder_class(model_type: str):
    import transformers

    names = {"hubert": "HubertModel", "wavlm": "WavLMModel", "wav2vec2": "Wav2Vec2Model"}
    if model_type not in names:
        raise ValueError(f"unsupported student type {model_type!r}")
    return getattr(transformers, names[model_type])


def load_hubert_student(student_dir: PathLike) -> tuple[DistilHubert, Any, dict[str, Any]]:
    """A saved student with its heads: ``(DistilHubert, feature extractor, heads.json)``."""
    from safetensors.torch import load_file
    from transformers import Wav2Vec2FeatureExtractor

    path = Path(student_dir)
    info_path = path / HEADS_JSON
    if not info_path.is_file():
        raise ValueError(f"{path}: no {HEADS_JSON} (not a DistilHuBERT student directory)")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    config = read_config(str(path))
    encoder = _encoder_class(config.model_type).from_pretrained(
        path, use_safetensors=True, trust_remote_code=False
    )
    student = DistilHubert(
        encoder, info["target_layers"], info["teacher_hidden_size"], info["head_hidden_size"]
    )
    student.heads.load_state_dict(load_file(str(path / HEADS_FILE)))
    return student, Wav2Vec2FeatureExtractor.from_pretrained(path), info


# --------------------------------------------------------------------------------------------
# initialisation


@dataclass
class StudentArch:
    """Architecture of a student built from scratch (Whisper teachers). 0: the teacher's value
    (width, heads) or 4 × width (feed-forward)."""

    num_layers: int = 2
    hidden_size: int = 0
    num_heads: int = 0
    ffn_size: int = 0
    conv_dim: Sequence[int] = (512,) * 7
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    head_hidden_size: int = 0


def _copy_config(teacher_config, num_layers: int):
    """The student config: the teacher's, ``num_layers`` deep, no layerdrop or masking."""
    from transformers import HubertConfig, WavLMConfig

    values = teacher_config.to_dict()
    if teacher_config.model_type == "wavlm":
        cls = WavLMConfig
    else:
        cls = HubertConfig
        if teacher_config.model_type == "wav2vec2":
            values["feat_proj_layer_norm"] = True  # wav2vec2 always normalises before projecting
    known = set(cls().to_dict())
    drop = {"model_type", "architectures", "transformers_version", "_name_or_path", "dtype"}
    kwargs = {k: v for k, v in values.items() if k in known and k not in drop}
    kwargs.update(
        num_hidden_layers=num_layers, layerdrop=0.0, mask_time_prob=0.0, mask_feature_prob=0.0
    )
    config = cls(**kwargs)
    config.architectures = [cls.__name__.replace("Config", "Model")]
    return config


def _whisper_student_config(teacher: Teacher, arch: StudentArch):
    from transformers import HubertConfig

    hidden = arch.hidden_size or teacher.hidden_size
    heads = arch.num_heads or teacher.config.encoder_attention_heads
    if hidden % heads:
        raise ValueError(f"student width {hidden} is not a multiple of its {heads} heads")
    conv_dim = tuple(int(c) for c in arch.conv_dim)
    if len(conv_dim) != len(HUBERT_CONV_STRIDE):
        raise ValueError(f"conv_dim needs {len(HUBERT_CONV_STRIDE)} layers (HuBERT's CNN)")
    config = HubertConfig(
        vocab_size=32,
        hidden_size=hidden,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=heads,
        intermediate_size=arch.ffn_size or 4 * hidden,
        conv_dim=conv_dim,
        conv_kernel=HUBERT_CONV_KERNEL,
        conv_stride=HUBERT_CONV_STRIDE,
        feat_extract_norm="layer",
        feat_proj_layer_norm=True,
        do_stable_layer_norm=False,
        num_conv_pos_embeddings=arch.pos_conv_kernel,
        num_conv_pos_embedding_groups=arch.pos_conv_groups,
        layerdrop=0.0,
        mask_time_prob=0.0,
        mask_feature_prob=0.0,
    )
    config.architectures = ["HubertModel"]
    return config


def copy_teacher_weights(student_encoder: nn.Module, teacher_model: nn.Module) -> list[str]:
    """Copy every student tensor from the teacher tensor of the same name (the CNN, feature
    projection, positional convolution, encoder layer norm and the first k layers); returns the
    copied names. Every student tensor must have a teacher counterpart of the same shape."""
    src = teacher_model.state_dict()
    dst = student_encoder.state_dict()
    missing = [k for k in dst if k not in src]
    if missing:
        raise ValueError(f"student tensors without a teacher counterpart: {missing[:5]}")
    bad = [k for k in dst if dst[k].shape != src[k].shape]
    if bad:
        raise ValueError(f"shape mismatch between student and teacher for {bad[:5]}")
    student_encoder.load_state_dict({k: src[k].clone() for k in dst}, strict=True)
    return list(dst)


def init_hubert_student(
    teacher: Teacher,
    *,
    arch: StudentArch | None = None,
    target_layers: str | Sequence[int] | None = None,
    seed: int = 0,
) -> tuple[DistilHubert, Any, dict[str, Any]]:
    """A new student for ``teacher``: ``(DistilHubert, feature extractor, init info)``.

    SSL teachers: their first ``arch.num_layers`` layers and front end are copied (the other
    ``arch`` sizes do not apply). Whisper: a HubertModel from ``arch``, randomly initialised
    (seeded). The heads are always random.
    """
    import transformers

    arch = arch or StudentArch()
    layers = parse_layers(target_layers, teacher.num_layers)
    if arch.num_layers < 1:
        raise ValueError("the student needs at least one transformer layer")
    torch.manual_seed(seed)
    info: dict[str, Any] = {
        "teacher_kind": teacher.kind,
        "teacher_source": teacher.source,
        "teacher_layers": teacher.num_layers,
    }
    if teacher.kind == "whisper":
        config = _whisper_student_config(teacher, arch)
        encoder = transformers.HubertModel(config)
        fe = default_feature_extractor(config)
        info.update(copied=[], frame_alignment=FRAME_ALIGNMENT)
    else:
        if arch.num_layers > teacher.num_layers:
            raise ValueError(f"{arch.num_layers} student layers from {teacher.num_layers}")
        config = _copy_config(teacher.config, arch.num_layers)
        encoder = _encoder_class(config.model_type)(config)
        copied = copy_teacher_weights(encoder, teacher.model)
        fe = teacher.feature_extractor
        info.update(copied=copied, frame_alignment="identical CNN: same frames")
        log.info(
            "student: copied %d tensors from the %s teacher (layers 1-%d)",
            len(copied),
            teacher.kind,
            arch.num_layers,
        )
    student = DistilHubert(encoder, layers, teacher.hidden_size, arch.head_hidden_size)
    info["params"] = {
        "student_encoder": sum(p.numel() for p in encoder.parameters()),
        "heads": sum(p.numel() for p in student.heads.parameters()),
        "teacher": teacher.num_params,
    }
    log.info(
        "student %s, %d layers, width %d; teacher layers %s predicted; %s parameters "
        "(+ %s in heads) vs teacher %s",
        type(encoder).__name__,
        arch.num_layers,
        config.hidden_size,
        layers,
        f"{info['params']['student_encoder']:,}",
        f"{info['params']['heads']:,}",
        f"{teacher.num_params:,}",
    )
    return student, fe, info
