"""Running recipes in tests: a copy of an egs/<corpus>/ dir, and its scripts with this venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def recipe_env(**extra: str) -> dict[str, str]:
    """The environment recipes run in: offline, this interpreter's bin/ first on PATH."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", **extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def copy_egs(corpus: str, root: Path) -> Path:
    """Copy egs/<corpus> under ``root`` (beside a link to recipes/, so ../../recipes resolves),
    leaving out the outputs of earlier runs; return the copy."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "recipes").symlink_to(REPO / "recipes")
    shutil.copytree(
        REPO / "egs" / corpus,
        root / "egs" / corpus,
        symlinks=True,
        ignore=shutil.ignore_patterns("data", "dump", "exp", "downloads"),
    )
    return root / "egs" / corpus


def run_recipe(
    recipe: Path, *args: str, script: str = "./run.sh", timeout: float = 300
) -> subprocess.CompletedProcess:
    """``recipe/<script> args…``, output captured."""
    return subprocess.run(
        [script, *args], cwd=recipe, env=recipe_env(), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
