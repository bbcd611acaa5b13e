"""What a training run is: its settings and inputs, recorded when it starts (``train_run.json``).

A rerun into the same output directory resumes only the run it recorded: other settings that
change the result (learning rate, seed, batch size, steps, loss weights…) or other inputs (the
student's or teacher's weights, the content of the train and dev data dirs) are refused with
one line naming the differences, or with ``force`` the run's own files are removed and it
starts over. Options that do not change what training computes (:data:`UNCHECKED_OPTIONS`)
may differ. ``max_steps`` may change only under a constant learning-rate schedule (every other
schedule is laid out over ``max_steps``, so the steps already taken would belong to another run).
A setting added to the toolkit after a run was recorded counts as the same when it is at its
default.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any

from speechdistill.utils import PathLike, atomic_write_text, run_lock

log = logging.getLogger(__name__)

__all__ = [
    "CONSTANT_SCHEDULES",
    "OWN_FILES",
    "RUN_FILE",
    "UNCHECKED_OPTIONS",
    "check_run",
    "data_dir_sha256",
    "data_input",
    "model_input",
    "run_identity",
    "teacher_input",
    "training_lock",
]

#: The record of the run an output directory holds.
RUN_FILE = "train_run.json"
#: Options that do not change what training computes: not compared on resume.
UNCHECKED_OPTIONS = ("num_workers", "log_steps", "save_steps", "keep_checkpoints")
#: Schedules whose learning rate does not depend on ``max_steps`` (a run may be extended).
CONSTANT_SCHEDULES = ("constant", "constant_with_warmup")
#: What every trainer writes in its output directory (``force`` removes these, and the model
#: files copied from ``best/``; a trainer adds its own names).
OWN_FILES = (
    "checkpoints",
    "best",
    ".best.tmp",
    "train_log.csv",
    "tensorboard",
    "train.json",
    "train_config.yaml",
    "curves.png",
    RUN_FILE,
)
#: Files of a data dir that are not its content (reports, plots, logs).
_NOT_CONTENT = (".json", ".md", ".png", ".log", ".csv")


def data_dir_sha256(path: PathLike) -> str:
    """SHA-256 of a Kaldi data dir's tables (every visible top-level file but reports)."""
    h = hashlib.sha256()
    for p in sorted(Path(path).iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix in _NOT_CONTENT:
            continue
        h.update(f"{p.name}\0{p.stat().st_size}\0".encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def data_input(path: PathLike) -> dict[str, Any]:
    """A data dir as an input of a run: its path and content hash."""
    return {"path": str(path), "sha256": data_dir_sha256(path)}


def model_input(path: PathLike) -> dict[str, Any]:
    """A model dir as an input of a run: its path and weight hashes."""
    from speechdistill.teachers.identity import weights_sha256

    return {"path": str(path), "weights_sha256": weights_sha256(path)}


def teacher_input(path: PathLike) -> dict[str, Any]:
    """A teacher as an input of a run: its path and identity (as the caches record it)."""
    from speechdistill.teachers.identity import teacher_identity

    return {"path": str(path), **teacher_identity(path)}


def run_identity(config: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """The record of a run: its settings (but :data:`UNCHECKED_OPTIONS`) and ``inputs``
    (``name → {"path": …, …identity}``; the path is shown, not compared)."""
    settings = {k: v for k, v in asdict(config).items() if k not in UNCHECKED_OPTIONS}
    defaults = {f.name: f.default for f in fields(config) if f.default is not MISSING}
    return {"config": settings, "inputs": inputs, "defaults": defaults}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(``name=value`` as recorded, as now) of every setting and input that differs."""
    was, now = [], []
    old_cfg, new_cfg = old.get("config", {}), new["config"]
    defaults = new.get("defaults", {})
    constant = new_cfg.get("lr_schedule") in CONSTANT_SCHEDULES
    for k in sorted(set(old_cfg) | set(new_cfg)):
        if k == "max_steps" and constant and old_cfg.get("lr_schedule") == new_cfg["lr_schedule"]:
            continue  # checked against the step reached (resume)
        if k not in old_cfg and k in defaults and new_cfg.get(k) == defaults[k]:
            continue  # a setting added since the run was recorded, left at its default
        if old_cfg.get(k) != new_cfg.get(k):
            was.append(f"{k}={json.dumps(old_cfg.get(k))}")
            now.append(f"{k}={json.dumps(new_cfg.get(k))}")
    for k in sorted(set(old.get("inputs", {})) | set(new["inputs"])):
        a = {x: y for x, y in old.get("inputs", {}).get(k, {}).items() if x != "path"}
        b = {x: y for x, y in new["inputs"].get(k, {}).items() if x != "path"}
        if a != b:
            was.append(f"{k} {old.get('inputs', {}).get(k, {}).get('path')}")
            now.append(f"another {k} ({new['inputs'].get(k, {}).get('path')})")
    return was, now


def _remove_own_files(out: Path, extra: Sequence[str]) -> None:
    best = out / "best"
    names = [*OWN_FILES, *extra]
    if best.is_dir():  # the trained model, copied from best/ into ``out``
        names += [p.name for p in best.iterdir() if p.is_file()]
    for name in names:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    log.info("--force: removed the previous training run's files from %s", out)


def check_run(
    out: PathLike,
    identity: dict[str, Any],
    *,
    force: bool = False,
    main_process: bool = True,
    extra_files: Sequence[str] = (),
) -> None:
    """Refuse to resume into ``out`` a run of other settings or inputs (see the module
    docstring); with ``force`` remove its files and start over. The main process then records
    ``identity``; every process runs the comparison, so all fail alike."""
    out = Path(out)
    path = out / RUN_FILE
    checkpoints = out / "checkpoints"
    started = (out / "train.json").is_file() or (
        checkpoints.is_dir() and any(checkpoints.glob("step_*"))
    )
    old = None
    if not started:  # nothing to resume: a record left by a failed start binds nothing
        pass
    elif path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
    elif (out / "train.json").is_file():  # a run recorded before train_run.json existed
        config = json.loads((out / "train.json").read_text(encoding="utf-8")).get("config", {})
        old = {"config": {k: v for k, v in config.items() if k not in UNCHECKED_OPTIONS},
               "inputs": identity["inputs"]}  # fmt: skip
    if force:
        if main_process:
            _remove_own_files(out, extra_files)
    elif old is not None:
        was, now = _differences(old, identity)
        if was:
            raise ValueError(
                f"{out}: was trained with {', '.join(was)}; now {', '.join(now)}: use --force "
                "to start over, or another --out"
            )
    elif started:
        log.warning("%s: no record of the checkpoints' settings (%s): resuming unchecked",
                    out, RUN_FILE)  # fmt: skip
        return
    identity = {k: v for k, v in identity.items() if k != "defaults"}
    if main_process:
        if old is not None and not force:  # max_steps of a constant schedule may have changed
            identity = {**old, "config": {**old["config"], "max_steps": identity["config"]
                                          ["max_steps"]}}  # fmt: skip
        atomic_write_text(path, json.dumps(identity, indent=1, sort_keys=True) + "\n")


@contextlib.contextmanager
def training_lock(out: PathLike) -> Iterator[None]:
    """The run lock of ``out``, held by the main process of a launch (``RANK`` 0) only."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    with run_lock(out):
        yield
