"""Saving and loading pruned models: ``model.safetensors`` + ``config.json``, nothing else
(no pickles, no ``trust_remote_code``).

A pruned model's ``config.json`` is its transformers config (``model_type`` ``whisper`` or
``hubert``) with, where layers differ, the ``pruning`` record (per-layer ``num_heads`` and
``ffn_dim``, ``head_dim``, Whisper's ``conv_channels``): :class:`PrunedWhisperEncoder` and
:class:`PrunedHubertModel` build the base model from the config and resize it to the record
before transformers loads the weights. A Whisper student built on a pruned encoder
(``init-student --encoder``) keeps the record in its config and loads with
:class:`PrunedWhisperForConditionalGeneration`. Without the record (every layer keeps all heads
and the same FFN size) the directory is a plain ``WhisperEncoder`` / ``HubertModel`` one.
:func:`load_pruned` picks the class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn
from transformers import HubertForCTC, HubertModel, WhisperForConditionalGeneration
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from speechdistill.prune.remove import PRUNING_KEY, apply_structure
from speechdistill.utils import PathLike, atomic_write_text, staging_dir

__all__ = [
    "PRUNE_JSON",
    "PrunedHubertForCTC",
    "PrunedHubertModel",
    "PrunedWhisperEncoder",
    "PrunedWhisperForConditionalGeneration",
    "is_pruned",
    "is_pruned_dir",
    "load_pruned",
    "save_pruned",
]

PRUNE_JSON = "prune.json"


class PrunedWhisperEncoder(WhisperEncoder):
    """A ``WhisperEncoder`` resized to its config's ``pruning`` record."""

    def __init__(self, config):
        super().__init__(config)
        apply_structure(self, getattr(config, PRUNING_KEY))


class PrunedWhisperForConditionalGeneration(WhisperForConditionalGeneration):
    """A Whisper model whose encoder is resized to its config's ``pruning`` record: a pruned
    encoder under a Whisper decoder. It generates, decodes long-form and gives word timestamps
    as ``WhisperForConditionalGeneration`` does; CTranslate2 cannot hold its layers of
    different sizes."""

    def __init__(self, config):
        super().__init__(config)
        apply_structure(self.model.encoder, getattr(config, PRUNING_KEY))


class PrunedHubertModel(HubertModel):
    """A ``HubertModel`` resized to its config's ``pruning`` record."""

    def __init__(self, config):
        super().__init__(config)
        apply_structure(self, getattr(config, PRUNING_KEY))


class PrunedHubertForCTC(HubertForCTC):
    """A ``HubertForCTC`` (CTC fine-tuning of a pruned HuBERT) whose encoder is resized to its
    config's ``pruning`` record; the fine-tuned model keeps the record, so it loads with this
    class too."""

    def __init__(self, config):
        super().__init__(config)
        apply_structure(self.hubert, getattr(config, PRUNING_KEY))


def is_pruned(config: Any) -> bool:
    """Whether a transformers config carries a ``pruning`` record (layers of different sizes:
    a plain transformers class cannot hold the weights)."""
    return getattr(config, PRUNING_KEY, None) is not None


def is_pruned_dir(model_dir: PathLike) -> bool:
    """Whether a model directory's ``config.json`` carries a ``pruning`` record (read without
    building the model): such a model loads only with this package's classes."""
    config = Path(model_dir) / "config.json"
    return config.is_file() and (
        json.loads(config.read_text(encoding="utf-8")).get(PRUNING_KEY) is not None
    )


_CLASSES = {
    "whisper": (WhisperEncoder, PrunedWhisperEncoder),
    "hubert": (HubertModel, PrunedHubertModel),
}


def save_pruned(
    model: nn.Module,
    out_dir: PathLike,
    info: dict[str, Any] | None = None,
    *,
    owner: str = "prune",
) -> Path:
    """Write a model changed by :func:`~speechdistill.prune.remove.prune_model` (safetensors +
    config.json, through a staging dir) and ``info`` (sizes, sparsity, settings) as
    ``prune.json``."""
    out = Path(out_dir)
    with staging_dir(out, owner) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        params = sum(p.numel() for p in model.parameters())
        record = {"num_params": params, **(info or {})}
        atomic_write_text(tmp / PRUNE_JSON, json.dumps(record, indent=2) + "\n")
    return out


def load_pruned(model_dir: PathLike) -> nn.Module:
    """A saved pruned (or plain) Whisper encoder / HuBERT model, in eval mode."""
    path = Path(model_dir)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{path}: no config.json (not a model directory)")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    model_type = config.get("model_type")
    if model_type not in _CLASSES:
        raise ValueError(
            f"{config_path}: model_type {model_type!r} is not a pruned Whisper encoder or HuBERT model"
        )
    plain, pruned = _CLASSES[model_type]
    cls = pruned if PRUNING_KEY in config else plain
    return cls.from_pretrained(path, use_safetensors=True).eval()
