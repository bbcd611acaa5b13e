"""Running recipes and commands in tests: a copy of an egs/<corpus>/ dir, its scripts with this
venv, and a command killed with SIGKILL part-way (kill-and-resume tests)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
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


def kill_when(
    cmd: Sequence[str], env: dict[str, str], ready: Callable[[], bool], *, timeout: float = 600
) -> None:
    """Run ``cmd`` and ``SIGKILL`` it as soon as ``ready()`` holds (polled); assert that it was
    still running then, so the kill really interrupted it, and that ``ready()`` was reached."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not ready():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (
        f"the run ended before it could be killed: {err[-2000:]}"
    )
    assert ready(), "killed at the deadline, before the point it was to be killed at"
