"""Inference: 16 kHz waveforms to text, with a Whisper (transformers or CTranslate2) or CTC model.

Every transcriber has ``transcribe(audios) -> list[str]`` (one text per waveform, whitespace
collapsed). :func:`load_transcriber` recognises a model directory by its files
(:func:`detect_model_kind`):

- ``model.bin`` → CTranslate2 Whisper, greedy (:mod:`.ct2`; needs the optional ``ctranslate2``);
- ``config.json`` with ``model_type == "whisper"`` → transformers Whisper (:mod:`.whisper`);
- an architecture ending in ``ForCTC`` → a CTC encoder, greedy best path (:mod:`.ctc`).

Weights are loaded from safetensors only and remote code is never trusted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from speechdistill.utils import PathLike

__all__ = ["Transcriber", "detect_model_kind", "load_transcriber"]

log = logging.getLogger(__name__)


class Transcriber(Protocol):
    """What every transcriber offers."""

    def transcribe(self, audios: Sequence[np.ndarray]) -> list[str]:
        """One text per 16 kHz mono float32 waveform."""
        ...


def detect_model_kind(model_dir: PathLike) -> str:
    """``"ct2"``, ``"whisper"`` or ``"ctc"`` for a model directory; a clear error otherwise."""
    path = Path(model_dir)
    if not path.is_dir():
        raise ValueError(f"{path}: model directory not found")
    if (path / "model.bin").is_file():
        return "ct2"
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise ValueError(f"{path}: no config.json or model.bin (not a model directory)")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if any(str(a).endswith("ForCTC") for a in cfg.get("architectures") or []):
        return "ctc"  # a Whisper encoder with a CTC layer too
    if cfg.get("model_type") == "whisper":
        return "whisper"
    raise ValueError(
        f"{path}: not a Whisper, CTC or CTranslate2 model (model_type={cfg.get('model_type')!r}, "
        f"architectures={cfg.get('architectures')})"
    )


def load_transcriber(
    model_dir: PathLike,
    *,
    device: str = "cpu",
    dtype: str | None = None,
    language: str | None = None,
    max_new_tokens: int | None = None,
) -> Transcriber:
    """The transcriber of any supported model directory: Whisper ones decode greedily in
    ``language`` (multilingual models) with at most ``max_new_tokens``; ``dtype`` is the
    transformers Whisper model's (CTC models run in float32)."""
    kind = detect_model_kind(model_dir)
    log.info("loading %s model %s", kind, model_dir)
    if kind == "ct2":
        from speechdistill.inference.ct2 import CT2Transcriber

        return CT2Transcriber(model_dir, device, language, max_new_tokens)
    if kind == "ctc":
        from speechdistill.inference.ctc import CTCTranscriber

        return CTCTranscriber.from_pretrained(model_dir, device=device)
    from speechdistill.inference.whisper import DecodeConfig, WhisperTranscriber

    config = DecodeConfig(
        language=language, max_new_tokens=max_new_tokens, device=device, dtype=dtype
    )
    return WhisperTranscriber.from_pretrained(model_dir, config)
