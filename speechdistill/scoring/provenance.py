"""Provenance of a result: library versions and the git commit of the speechdistill checkout."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from speechdistill import __version__

__all__ = ["PACKAGES", "VERSION", "git_commit_date", "git_revision", "versions"]

#: The version of speechdistill that makes the results.
VERSION = __version__
#: Libraries whose versions shape the numbers (recorded in results.json and RESULTS.md).
PACKAGES = ("jiwer", "transformers", "torch", "numpy", "num2words", "whisper-normalizer")


def versions() -> dict[str, str | None]:
    """Versions of Python, speechdistill and the libraries that shape the numbers."""
    out: dict[str, str | None] = {"python": platform.python_version(), "speechdistill": VERSION}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def git_revision() -> str | None:
    """The commit of the speechdistill checkout (``+dirty`` if modified), or None outside git."""
    rev = _git("rev-parse", "HEAD")
    if rev is None:
        return None
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return rev + ("+dirty" if dirty else "")


def git_commit_date() -> str | None:
    """The commit date of the speechdistill checkout's HEAD, or None outside git."""
    return _git("log", "-1", "--format=%cd")
