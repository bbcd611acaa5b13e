"""SSL teachers for DistilHuBERT students (stage ``teacher`` of distil_hubert.sh).

A HuBERT / wav2vec2 / WavLM model (any transformers checkpoint, safetensors only) or a Whisper
encoder, loaded as a :class:`Teacher` that gives the hidden states of chosen layers; and the frame
arithmetic that pairs a student's frames with the teacher's.

**Frame alignment with a Whisper teacher.** Whisper pads every clip to 30 s (3000 log-mel
frames, hop 160) and its stride-2 convolution gives 1500 frames at 50 Hz; frame ``t`` is centred
on sample ``320·t``. HuBERT's CNN gives ``floor((n − 400) / 320) + 1`` frames for ``n`` samples,
frame ``t`` spanning samples ``[320·t, 320·t + 400)`` (centre ``320·t + 200``: 12.5 ms later, less
than a frame). Frames are paired by index: the teacher's states are truncated to the student's
(padded) frame count, and the loss mask keeps only each utterance's own student frames, which
never exceed the teacher frames that contain its audio (``ceil(n / 320)``, see
:func:`whisper_num_frames`). Clips longer than 30 s cannot be distilled from Whisper. Whisper's
hidden states are mostly an offset shared by all frames: with raw targets a short distillation
learns little else, so Whisper teachers want ``target_norm=utterance``
(:mod:`speechdistill.train.hubert_kd`).

**Target layers.** The paper predicts HuBERT-base layers 4, 8 and 12: a third, two thirds and all
of the depth. :func:`default_target_layers` applies that rule to any depth
(``round(N·j/3)``, j = 1, 2, 3): 4/8/12 of 12 layers, 8/16/24 of 24, and 1/3/4 of Whisper
tiny.en's 4 encoder layers. Teacher layer ``l`` means transformers' ``hidden_states[l]``, the
output of layer ``l`` (for Whisper the last one includes the encoder's final layer norm, i.e. what
its decoder reads).
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

from speechdistill.teachers.identity import TEACHER_JSON, is_prepared, weights_sha256
from speechdistill.teachers.source import EMBEDDED_TEACHERS, describe_source
from speechdistill.teachers.whisper import load_teacher, prepare_teacher
from speechdistill.utils import PathLike, atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "SSL_MODEL_TYPES",
    "Teacher",
    "default_feature_extractor",
    "default_target_layers",
    "hubert_num_frames",
    "load_ssl_teacher",
    "parse_layers",
    "prepare_ssl_teacher",
    "read_config",
    "split_revision",
    "whisper_num_frames",
]

#: Self-supervised encoders whose parts the student copies (transformers ``model_type``).
SSL_MODEL_TYPES = ("hubert", "wav2vec2", "wavlm")
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


def read_config(name_or_dir: str):
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


def default_feature_extractor(config):
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
    config = read_config(src)
    kind = config.model_type
    if kind == "whisper":
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
        fe = default_feature_extractor(model.config)
        log.info("%s has no feature extractor config: using %s", src, fe.to_dict())
    return Teacher(kind, model, model.config, fe, src)


def prepare_ssl_teacher(name: str, out_dir: PathLike) -> Path:
    """``out_dir`` as a local copy of the teacher ``name`` (stage ``teacher`` of distil_hubert.sh).

    Whisper teachers (``tiny.en``, CTranslate2 or transformers Whisper) go through
    :func:`speechdistill.teachers.whisper.prepare_teacher`. HuBERT / wav2vec2 / WavLM models (Hub id or
    directory) are loaded with safetensors and saved with their feature extractor, and
    ``teacher.json`` records the source, the weight hashes and the config; a rerun with the
    same source is a no-op.
    """
    out = Path(out_dir)
    if name in EMBEDDED_TEACHERS and not Path(name).exists():
        return prepare_teacher(name, out)
    path = Path(name)
    if path.is_dir() and not (path / "config.json").is_file():  # a CTranslate2 Whisper
        return prepare_teacher(name, out)
    config = read_config(name)
    if config.model_type == "whisper":
        return prepare_teacher(name, out)
    source = describe_source(name)
    if is_prepared(out, source):
        log.info("teacher %s already prepared in %s", name, out)
        return out
    from speechdistill.utils import staging_dir

    teacher = load_ssl_teacher(name)
    with staging_dir(out, "hubert-teacher", legacy_record=(TEACHER_JSON,)) as tmp:
        (out / TEACHER_JSON).unlink(missing_ok=True)
        teacher.model.save_pretrained(tmp, safe_serialization=True)
        teacher.feature_extractor.save_pretrained(tmp)
    c = teacher.config
    info = {
        "name": name,
        "source": source,
        "weights_sha256": weights_sha256(out),
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
