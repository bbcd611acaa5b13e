"""transformers → CTranslate2: :func:`export_ct2`, with ctranslate2's own converter (an optional
dependency), for deployment."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from speechdistill.utils import PathLike, check_owned, replace_dir
from speechdistill.whisper.ct2.binary import (
    ConversionError,
    MissingDependencyError,
    is_ct2_model_dir,
)

log = logging.getLogger(__name__)

__all__ = ["CT2_ENTRIES", "OWNER", "QUANTIZATIONS", "export_ct2"]

#: The owner recorded in an export (:data:`~speechdistill.utils.OWNER_FILE`).
OWNER = "teacher export-ct2"
#: What an export holds: one of an older release (no marker) is replaced only if it holds
#: ``model.bin`` and nothing else than these.
CT2_ENTRIES = (
    "model.bin",
    "config.json",
    "vocabulary.*",
    "tokenizer.json",
    "preprocessor_config.json",
)

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
    :data:`QUANTIZATIONS` or None (keep the stored type). The export is written beside
    ``out_dir`` and then replaces it; ``force`` replaces only an earlier export (never a folder
    the toolkit did not write).
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
    if local and not any(Path(src).glob("*.safetensors")):  # the converter would read a pickle
        raise ConversionError(
            f"{src}: no safetensors weights (model.safetensors); pickle weights are never loaded"
        )
    if local:
        from speechdistill.prune.io import is_pruned_dir

        if is_pruned_dir(src):
            raise ConversionError(
                f"{src}: its encoder is pruned to layers of different sizes (the config's "
                "`pruning` record), which CTranslate2's Whisper cannot hold; it runs in "
                "transformers (speechdistill decode, the pipeline with this package's model class)"
            )
    copy_files = ["tokenizer.json"] if not local or (Path(src) / "tokenizer.json").is_file() else []
    out = Path(out_dir)
    owned = {
        "legacy_record": ("model.bin",),
        "legacy": CT2_ENTRIES,
        "hint": "choose another output directory or remove it yourself",
    }
    if out.exists() and not out.is_dir():
        raise ConversionError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ConversionError(f"{out}: exists and is not empty (use force=True / --force)")
        check_owned(out, OWNER, **owned)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        converter = TransformersConverter(src, copy_files=copy_files or None)
        converter.convert(str(tmp / "model"), quantization=quantization)

        from transformers import WhisperFeatureExtractor

        try:
            fe = WhisperFeatureExtractor.from_pretrained(src)
        except OSError:
            log.warning(
                "%s: no feature extractor config; preprocessor_config.json not written", src
            )
        else:
            fe.to_json_file(str(tmp / "model" / "preprocessor_config.json"))
        replace_dir(tmp / "model", out, OWNER, **owned)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s → %s (quantization %s)", src, out, quantization or "as stored")
    return out
