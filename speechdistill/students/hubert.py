"""DistilHuBERT students (Chang et al. 2022): a shallow copy of a speech encoder plus one
prediction head per distilled teacher layer.

**From a HuBERT / wav2vec2 / WavLM teacher** (any transformers checkpoint, safetensors only) the
student copies the CNN feature extractor, the feature projection, the positional convolution, the
encoder's layer norm and the first ``k`` transformer layers (default 2). HuBERT and wav2vec2 share
one module layout, so both students are plain :class:`~transformers.HubertModel`\\ s (a wav2vec2
feature projection always has its layer norm: ``feat_proj_layer_norm=True``). WavLM layers carry a
gated relative position bias that HuBERT lacks, so a WavLM teacher gives a
:class:`~transformers.WavLMModel` student.

**From a Whisper encoder** (no HuBERT weights needed; what the mini recipe uses) nothing can be
copied: the student is a HubertModel built from a config (HuBERT's CNN, whose strides multiply to
320 samples = 20 ms, so 50 frames/s like Whisper's encoder; a per-frame layer-norm CNN so that
batch padding does not change real frames), with the teacher's width by default.

**Frame alignment with a Whisper teacher.** Whisper pads every clip to 30 s (3000 log-mel
frames, hop 160) and its stride-2 convolution gives 1500 frames at 50 Hz; frame ``t`` is centred
on sample ``320·t``. HuBERT's CNN gives ``floor((n − 400) / 320) + 1`` frames for ``n`` samples,
frame ``t`` spanning samples ``[320·t, 320·t + 400)`` (centre ``320·t + 200``: 12.5 ms later, less
than a frame). Frames are paired by index: the teacher's states are truncated to the student's
(padded) frame count, and the loss mask keeps only each utterance's own student frames, which
never exceed the teacher frames that contain its audio (``ceil(n / 320)``, see
:func:`whisper_num_frames`). Clips longer than 30 s cannot be distilled from Whisper. Whisper's hidden states are mostly an
offset shared by all frames (on mini_en the mean vector alone has cosine 0.86 / 0.82 / 0.45 with
tiny.en's layers 1 / 3 / 4): with raw targets a short distillation learns little else, so
Whisper teachers want ``target_norm=utterance`` (:mod:`speechdistill.train.hubert_kd`).

**Target layers.** The paper predicts HuBERT-base layers 4, 8 and 12: a third, two thirds and all
of the depth. :func:`default_target_layers` applies that rule to any depth
(``round(N·j/3)``, j = 1, 2, 3): 4/8/12 of 12 layers, 8/16/24 of 24, and 1/3/4 of Whisper
tiny.en's 4 encoder layers. Teacher layer ``l`` means transformers' ``hidden_states[l]``, the
output of layer ``l`` (for Whisper the last one includes the encoder's final layer norm, i.e. what
its decoder reads).

**Heads.** One small MLP per target layer on the last student layer's output:
``Linear(H, H_head) → GELU → Linear(H_head, D_teacher)``. They are saved apart from the encoder
(``heads.safetensors`` + ``heads.json``) so that the student directory loads as a plain
transformers model anywhere (``HubertModel.from_pretrained``, ``HubertForCTC.from_pretrained``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speechdistill.utils import PathLike, atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "HEADS_FILE",
    "HEADS_JSON",
    "SSL_MODEL_TYPES",
    "DistilHubert",
    "StudentArch",
    "Teacher",
    "default_target_layers",
    "hubert_num_frames",
    "init_hubert_student",
    "load_hubert_student",
    "load_ssl_teacher",
    "parse_layers",
    "prepare_ssl_teacher",
    "split_revision",
    "whisper_num_frames",
]

#: Self-supervised encoders whose parts the student copies (transformers ``model_type``).
SSL_MODEL_TYPES = ("hubert", "wav2vec2", "wavlm")
HEADS_FILE = "heads.safetensors"
HEADS_JSON = "heads.json"
SAMPLE_RATE = 16000
#: Whisper: samples per log-mel frame, and encoder frames in its 30 s window.
WHISPER_HOP = 160
WHISPER_FRAMES = 1500
#: HuBERT's CNN front end: 20 ms frames (strides multiply to 320) over a 25 ms receptive field.
HUBERT_CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
HUBERT_CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)
FRAME_ALIGNMENT = (
    "by index at 50 Hz: whisper encoder frames (30 s padded window, 1500 frames) truncated to the "
    "student's frame count; loss masked beyond floor((n-400)/320)+1 student frames per utterance"
)


# --------------------------------------------------------------------------------------------
# layers and frames


def default_target_layers(num_layers: int) -> list[int]:
    """The paper's 4/8/12-of-12 rule at any depth: ``round(N·j/3)`` for j = 1, 2, 3 (unique)."""
    if num_layers < 1:
        raise ValueError(f"the teacher has {num_layers} layers")
    return sorted({max(1, round(num_layers * j / 3)) for j in (1, 2, 3)})


def parse_layers(value: str | Sequence[int] | None, num_layers: int) -> list[int]:
    """Teacher layers from ``"4,8,12"``, a list, or None/"" (:func:`default_target_layers`)."""
    if value is None or value == "" or value == []:
        return default_target_layers(num_layers)
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    try:
        layers = [int(x) for x in items]
    except ValueError:
        raise ValueError(f"target layers must be integers, got {value!r}") from None
    if layers != sorted(set(layers)) or not all(1 <= x <= num_layers for x in layers):
        raise ValueError(
            f"target layers {layers}: need sorted, unique layers in 1..{num_layers} (the teacher's)"
        )
    return layers


def hubert_num_frames(
    num_samples: int | torch.Tensor,
    conv_kernel: Sequence[int] = HUBERT_CONV_KERNEL,
    conv_stride: Sequence[int] = HUBERT_CONV_STRIDE,
) -> int | torch.Tensor:
    """Frames of a HuBERT-style CNN for ``num_samples`` (``floor((n − k) / s) + 1`` per layer)."""
    n = num_samples
    for k, s in zip(conv_kernel, conv_stride, strict=True):
        n = (n - k) // s + 1
    return n


def whisper_num_frames(num_samples: int) -> int:
    """Whisper encoder frames that hold audio of an ``num_samples`` clip: ``ceil(n / 320)``
    (``ceil(n / 160)`` log-mel frames, then stride 2), at most 1500."""
    return min(WHISPER_FRAMES, math.ceil(num_samples / (2 * WHISPER_HOP)))


# --------------------------------------------------------------------------------------------
# teachers


def split_revision(name: str) -> tuple[str, str | None]:
    """``"repo@revision"`` → ``("repo", "revision")`` for Hub ids (not for existing paths), e.g.
    ``facebook/hubert-base-ls960@refs/pr/2``, the branch that holds its safetensors weights."""
    if "@" in name and not Path(name).exists():
        repo, revision = name.split("@", 1)
        return repo, revision or None
    return name, None


def _read_config(name_or_dir: str):
    from transformers import AutoConfig

    path = Path(name_or_dir)
    if path.is_dir() and not (path / "config.json").is_file():
        raise ValueError(f"{path}: no config.json (not a transformers model directory)")
    src, revision = split_revision(name_or_dir)
    return AutoConfig.from_pretrained(src, revision=revision, trust_remote_code=False)


def _ssl_class(model_type: str):
    import transformers

    names = {"hubert": "HubertModel", "wav2vec2": "Wav2Vec2Model", "wavlm": "WavLMModel"}
    if model_type not in names:
        raise ValueError(
            f"unsupported teacher type {model_type!r}: HuBERT, wav2vec2, WavLM or a Whisper encoder"
        )
    return getattr(transformers, names[model_type])


def _default_feature_extractor(config):
    """HF's convention: normalised input and attention masks only for layer-norm CNNs."""
    from transformers import Wav2Vec2FeatureExtractor

    layer_norm = getattr(config, "feat_extract_norm", "layer") == "layer"
    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=layer_norm,
        return_attention_mask=layer_norm,
    )


@dataclass
class Teacher:
    """A frozen fp32 teacher encoder and what feeds it.

    ``kind``: ``hubert``, ``wav2vec2``, ``wavlm`` (raw waveform, same input as the student) or
    ``whisper`` (the encoder of a Whisper model, on 30 s log-mel windows).
    """

    kind: str
    model: nn.Module
    config: Any
    feature_extractor: Any
    source: str

    @property
    def num_layers(self) -> int:
        c = self.config
        return c.encoder_layers if self.kind == "whisper" else c.num_hidden_layers

    @property
    def hidden_size(self) -> int:
        return self.config.d_model if self.kind == "whisper" else self.config.hidden_size

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @torch.no_grad()
    def layer_states(
        self,
        layers: Sequence[int],
        num_frames: int,
        *,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """``hidden_states[l]`` for each ``l`` in ``layers`` as ``(B, num_frames, D)`` fp32.

        SSL teachers read ``input_values`` (+ ``attention_mask`` when their feature extractor
        returns one); Whisper reads ``input_features`` (``(B, n_mels, 3000)``) and its 1500
        frames are truncated to ``num_frames`` (see the module docstring).
        """
        p = next(self.model.parameters())
        if self.kind == "whisper":
            if input_features is None:
                raise ValueError("a Whisper teacher needs input_features (log-mel)")
            if num_frames > WHISPER_FRAMES:
                raise ValueError(f"{num_frames} student frames: Whisper covers at most 30 s")
            out = self.model(input_features.to(p.device, p.dtype), output_hidden_states=True)
        else:
            if input_values is None:
                raise ValueError("an SSL teacher needs input_values (waveforms)")
            mask = attention_mask if self.feature_extractor.return_attention_mask else None
            out = self.model(
                input_values.to(p.device, p.dtype),
                attention_mask=None if mask is None else mask.to(p.device),
                output_hidden_states=True,
            )
        states = out.hidden_states
        result = []
        for layer in layers:
            h = states[layer][:, :num_frames].float()
            if h.shape[1] != num_frames:
                raise ValueError(f"teacher gave {h.shape[1]} frames, the student {num_frames}")
            result.append(h)
        return result


def load_ssl_teacher(name_or_dir: PathLike, *, device: str | torch.device = "cpu") -> Teacher:
    """Load a HuBERT / wav2vec2 / WavLM model or a Whisper model's encoder as a frozen fp32
    teacher (eval mode, layerdrop 0; safetensors only, never remote code)."""
    src = str(name_or_dir)
    config = _read_config(src)
    kind = config.model_type
    if kind == "whisper":
        from speechdistill.teacher import load_teacher

        model, processor = load_teacher(src, device=str(device), dtype=torch.float32)
        encoder = model.model.encoder
        del model
        encoder.requires_grad_(False).eval()
        return Teacher("whisper", encoder, config, processor.feature_extractor, src)
    cls = _ssl_class(kind)
    repo, revision = split_revision(src)
    try:
        model = cls.from_pretrained(
            repo,
            revision=revision,
            dtype=torch.float32,
            use_safetensors=True,
            trust_remote_code=False,
            layerdrop=0.0,
        )
    except OSError as e:
        raise OSError(
            f"{src}: could not load safetensors weights ({e}). Only safetensors are loaded; a Hub "
            "model whose main branch has only pytorch_model.bin may have them on a PR branch, "
            "e.g. facebook/hubert-base-ls960@refs/pr/2"
        ) from e
    model.config.layerdrop = 0.0
    model.requires_grad_(False).eval().to(device)
    try:
        from transformers import Wav2Vec2FeatureExtractor

        fe = Wav2Vec2FeatureExtractor.from_pretrained(repo, revision=revision)
    except OSError:
        fe = _default_feature_extractor(model.config)
        log.info("%s has no feature extractor config: using %s", src, fe.to_dict())
    return Teacher(kind, model, model.config, fe, src)


def prepare_ssl_teacher(name: str, out_dir: PathLike) -> Path:
    """``out_dir`` as a local copy of the teacher ``name`` (stage ``teacher`` of distil_hubert.sh).

    Whisper teachers (``tiny.en``, CTranslate2 or transformers Whisper) go through
    :func:`speechdistill.teacher.prepare_teacher`. HuBERT / wav2vec2 / WavLM models (Hub id or
    directory) are loaded with safetensors and saved with their feature extractor, and
    ``teacher.json`` records the source, the weight hashes and the config; a rerun with the
    same source is a no-op.
    """
    from speechdistill.teacher import (
        EMBEDDED_TEACHERS,
        TEACHER_JSON,
        _describe_source,
        _identity,
        _weights_sha256,
        prepare_teacher,
        read_teacher_info,
    )

    out = Path(out_dir)
    if name in EMBEDDED_TEACHERS and not Path(name).exists():
        return prepare_teacher(name, out)
    path = Path(name)
    if path.is_dir() and not (path / "config.json").is_file():  # a CTranslate2 Whisper
        return prepare_teacher(name, out)
    config = _read_config(name)
    if config.model_type == "whisper":
        return prepare_teacher(name, out)
    source = _describe_source(name)
    info = read_teacher_info(out)
    if (
        info
        and _identity(info.get("source") or {}) == _identity(source)
        and info.get("weights_sha256") == _weights_sha256(out)
    ):
        log.info("teacher %s already prepared in %s", name, out)
        return out
    from speechdistill.convert import staging_dir

    (out / TEACHER_JSON).unlink(missing_ok=True)
    teacher = load_ssl_teacher(name)
    with staging_dir(out) as tmp:
        teacher.model.save_pretrained(tmp, safe_serialization=True)
        teacher.feature_extractor.save_pretrained(tmp)
    c = teacher.config
    info = {
        "name": name,
        "source": source,
        "weights_sha256": _weights_sha256(out),
        "config": {
            "model_type": c.model_type,
            "num_hidden_layers": c.num_hidden_layers,
            "hidden_size": c.hidden_size,
            "num_params": teacher.num_params,
        },
    }
    atomic_write_text(out / TEACHER_JSON, json.dumps(info, indent=2, sort_keys=True) + "\n")
    log.info("teacher %s prepared in %s", name, out)
    return out


# --------------------------------------------------------------------------------------------
# the student


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

    def save(self, out_dir: PathLike, feature_extractor, extra: dict[str, Any] | None = None):
        """The encoder as a plain transformers model, its feature extractor, and the heads
        (``heads.safetensors`` + ``heads.json``) beside it; written through a staging dir."""
        from safetensors.torch import save_file

        from speechdistill.convert import staging_dir

        with staging_dir(out_dir) as tmp:
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
    config = _read_config(str(path))
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
        fe = _default_feature_extractor(config)
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
