"""transformers → CTranslate2: :func:`export_ct2`, with ctranslate2's own converter (an optional
dependency), for deployment."""

from __future__ import annotations

import logging
from pathlib import Path

from speechdistill.utils import PathLike
from speechdistill.whisper.ct2.binary import (
    ConversionError,
    MissingDependencyError,
    is_ct2_model_dir,
)

log = logging.getLogger(__name__)

__all__ = ["QUANTIZATIONS", "export_ct2"]

#: Weight quantizations of ``ctranslate2.converters`` (None keeps the stored type).
QUANTIZATIONS = (
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)


def export_ct2(
    model_dir: PathLike,
    out_dir: PathLike,
    *,
    quantization: str | None = None,
    force: bool = False,
) -> Path:
    """Convert a transformers Whisper model (directory or Hub id) to CTranslate2 for deployment.

    Wraps ``ctranslate2.converters.TransformersConverter``; ``tokenizer.json`` is copied and a
    ``preprocessor_config.json`` written (faster-whisper reads both). ``quantization``: one of
    :data:`QUANTIZATIONS` or None (keep the stored type).
    """
    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError as e:
        raise MissingDependencyError(
            "export to CTranslate2 needs the `ctranslate2` package: "
            "pip install 'speechdistill[ct2]'"
        ) from e
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ConversionError(
            f"unknown quantization {quantization!r}: choose one of {', '.join(QUANTIZATIONS)}"
        )
    src = str(model_dir)
    local = Path(src).is_dir()
    if local and is_ct2_model_dir(src) and not any(Path(src).glob("*.safetensors")):
        raise ConversionError(f"{src}: already a CTranslate2 model")
    copy_files = ["tokenizer.json"] if not local or (Path(src) / "tokenizer.json").is_file() else []
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not force:
        raise ConversionError(f"{out}: exists and is not empty (use force=True / --force)")
    converter = TransformersConverter(src, copy_files=copy_files or None)
    converter.convert(str(out), quantization=quantization, force=True)

    from transformers import WhisperFeatureExtractor

    try:
        fe = WhisperFeatureExtractor.from_pretrained(src)
    except OSError:
        log.warning("%s: no feature extractor config; preprocessor_config.json not written", src)
    else:
        fe.to_json_file(str(out / "preprocessor_config.json"))
    log.info("exported %s → %s (quantization %s)", src, out, quantization or "as stored")
    return out
