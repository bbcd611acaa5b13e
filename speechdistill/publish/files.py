"""What publishing reads: the trained student's files, weights and training settings, the scores.

Weights are published as safetensors only: pickle files (``*.bin``, ``*.pt``, …) are refused,
never copied. Parameter counts come from the safetensors headers, without loading the model.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechdistill.scoring import infer_names, load_results
from speechdistill.utils import PathLike

log = logging.getLogger(__name__)

__all__ = [
    "CT2_SUBDIR",
    "INDEX_FILE",
    "PICKLE_PATTERNS",
    "TRAIN_CONFIG",
    "TRAIN_SUMMARY",
    "Scored",
    "load_scored",
    "param_counts",
    "read_json",
    "read_train_config",
    "weight_files",
]

TRAIN_CONFIG = "train_config.yaml"
TRAIN_SUMMARY = "train.json"
INDEX_FILE = "model.safetensors.index.json"
#: Weight files that are pickles (or may be): never published.
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")
#: The hub folder's subfolder for the CTranslate2 export.
CT2_SUBDIR = "ct2"


@dataclass
class Scored:
    """One ``results.json``: the set it scores, where it is, what it holds."""

    name: str
    path: Path
    data: dict[str, Any]

    @property
    def wer_pct(self) -> float | None:
        """The WER in percent, rounded to 2 decimals; None when missing or not finite."""
        wer = self.data.get("wer")
        if wer is None or not math.isfinite(float(wer)):
            return None
        return round(100.0 * float(wer), 2)


def load_scored(paths: Sequence[PathLike], what: str) -> list[Scored]:
    """Read results.json files (or score dirs); a set given twice is an error naming ``what``."""
    out: list[Scored] = []
    seen: dict[str, Path] = {}
    for p in paths:
        path = Path(p)
        if path.is_dir():
            path = path / "results.json"
        data = load_results(path)  # errors name the file
        name = data.get("dataset") or infer_names(path)[1] or path.parent.name
        if name in seen:
            raise ValueError(f"{path}: {what} for {name!r} given twice (also {seen[name]})")
        seen[name] = path
        out.append(Scored(str(name), path, data))
    return out


def weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files to publish; pickles are refused (the error names the file)."""
    pickles = sorted(p for pat in PICKLE_PATTERNS for p in model_dir.glob(pat) if p.is_file())
    index = model_dir / INDEX_FILE
    if index.is_file():
        try:
            shards = sorted(
                set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
            )
        except (json.JSONDecodeError, KeyError, AttributeError) as e:
            raise ValueError(f"{index}: not a safetensors index ({e})") from None
        files = [model_dir / s for s in shards]
        for f in files:
            if not f.is_file():
                raise ValueError(f"{f}: listed in {index.name} but not found")
        files.append(index)
    elif (model_dir / "model.safetensors").is_file():
        files = [model_dir / "model.safetensors"]
    elif pickles:
        raise ValueError(
            f"{pickles[0]}: pickle weights are not published (safetensors only); load the model "
            "and save it with save_pretrained(), which writes model.safetensors"
        )
    else:
        raise ValueError(f"{model_dir / 'model.safetensors'}: not found (no weights to publish)")
    if pickles:
        log.warning(
            "not published (pickle weights; the safetensors are): %s",
            ", ".join(p.name for p in pickles),
        )
    return files


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when the file is missing, invalid or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def param_counts(model_dir: Path) -> dict[str, int] | None:
    """Total/encoder/decoder parameters from the safetensors headers (tied weights once)."""
    from safetensors import safe_open

    try:
        files = [f for f in weight_files(model_dir) if f.suffix == ".safetensors"]
    except ValueError:
        return None
    total = enc = 0
    for f in files:
        with safe_open(str(f), "np") as st:
            for key in st.keys():  # noqa: SIM118 (safe_open is not a mapping)
                n = math.prod(st.get_slice(key).get_shape())
                total += n
                if key.startswith("model.encoder."):
                    enc += n
    return {"total": total, "encoder": enc, "decoder": total - enc}


def read_train_config(model_dir: Path) -> dict[str, Any] | None:
    """The training settings: ``train_config.yaml``, else the ``config`` of ``train.json``."""
    path = model_dir / TRAIN_CONFIG
    if path.is_file():
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None
    summary = read_json(model_dir / TRAIN_SUMMARY) or {}
    config = summary.get("config")
    return config if isinstance(config, dict) else None
