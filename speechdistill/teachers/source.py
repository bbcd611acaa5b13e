"""Where a teacher comes from: an embedded package (:mod:`~speechdistill.teachers.embedded`), a
CTranslate2 or transformers directory, or the Hub, described with content hashes where they are
cheap to get."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from speechdistill.teachers.embedded import (
    EMBEDDED_EXTRA,
    EMBEDDED_TEACHERS,
    SPLIT_MODEL_BINS,
    embedded_teacher_dir,
    embedded_versions,
)
from speechdistill.teachers.identity import sha256_file
from speechdistill.utils import MODEL_FILE_PATTERNS
from speechdistill.whisper.ct2.binary import is_ct2_model_dir

__all__ = [
    "EMBEDDED_EXTRA",
    "EMBEDDED_TEACHERS",
    "check_model_source",
    "describe_source",
    "embedded_teacher_dir",
]


def describe_source(name: str) -> dict[str, Any]:
    """What ``name`` refers to, with a content hash where one is cheap to get (not the Hub)."""
    if name in EMBEDDED_TEACHERS and not Path(name).exists():
        source = {
            "kind": "embedded-ct2",
            "name": name,
            "hub_id": EMBEDDED_TEACHERS[name].hub_id,
            "packages": embedded_versions(name),
        }
        if name in SPLIT_MODEL_BINS:  # checked against this pin when the parts are joined
            source["model_bin_sha256"] = SPLIT_MODEL_BINS[name].sha256
        else:
            src = embedded_teacher_dir(name)
            source["path"] = str(src)
            source["model_bin_sha256"] = sha256_file(src / "model.bin")
        return source
    path = Path(name)
    if path.is_dir():
        if is_ct2_model_dir(path) and not any(path.glob("*.safetensors")):
            return {
                "kind": "ct2-dir",
                "path": str(path.resolve()),
                "model_bin_sha256": sha256_file(path / "model.bin"),
            }
        if not any(path.glob("*.safetensors")):
            raise ValueError(f"{path}: no *.safetensors weights (only safetensors are loaded)")
        files = sorted({p for pat in MODEL_FILE_PATTERNS for p in path.glob(pat) if p.is_file()})
        return {
            "kind": "local",
            "path": str(path.resolve()),
            "files_sha256": {p.name: sha256_file(p) for p in files},
        }
    check_model_source(name)
    return {"kind": "hub", "repo_id": name}


def _looks_like_path(name: str) -> bool:
    """A name that can only mean a local path: absolute, relative (``.``/``~``), more than one
    ``/``, a backslash, a first component that exists here, or not a valid Hub repo id."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name.startswith((".", "~", os.sep)) or "\\" in name or name.count("/") > 1:
        return True
    if "/" in name and Path(name.split("/", 1)[0]).exists():
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def _hub_offline() -> bool:
    return any(
        os.environ.get(var, "").upper() in ("1", "ON", "YES", "TRUE")
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def check_model_source(name: str, *, hub: bool = True) -> None:
    """Refuse, with a one-line ``ValueError`` naming ``name``, a model source that cannot load: a
    local path that does not exist or is not a directory (reported as such, not as a bad Hub repo
    id) and, offline, a Hub id that is not in the local Hub cache. ``hub=False``: only an existing
    local directory (or an embedded teacher's name) is accepted."""
    path = Path(name).expanduser()
    if path.is_dir() or (name in EMBEDDED_TEACHERS and not path.exists()):
        return
    if path.exists():
        raise ValueError(f"{name}: not a directory (a model is a directory)")
    if not hub:
        raise ValueError(f"{name}: no such model directory")
    repo, _, revision = name.partition("@")  # a Hub id may name a revision: REPO@REVISION
    if _looks_like_path(repo):
        raise ValueError(f"{name}: no such directory (and not a Hub repo id)")
    if _hub_offline():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo, "config.json", revision=revision or None)
        if not isinstance(cached, str):
            raise ValueError(
                f"{name}: no such directory, and not in the local Hub cache (offline: "
                "HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set)"
            )
