"""Package data: a wheel holds every file the installed package reads (the mini_en and mini_pt sentences).

The wheel is built offline from a copy of the sources (pip, no build isolation: the
environment's setuptools), so the work tree gets no ``build/`` or ``*.egg-info``; it takes a few
seconds. Without pip or a recent setuptools only the package-data globs are checked.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from data_prep import mini_en, mini_pt

REPO = Path(__file__).resolve().parents[2]
#: Files of the installed package that are not Python modules, relative to the repository.
DATA_DIRS = [mini_en.TEXT_DIR, mini_en.TRAIN_TEXT_DIR, mini_pt.TEXT_DIR]


def _data_files() -> set[str]:
    files = {p for d in DATA_DIRS for p in d.rglob("*") if p.is_file()}
    return {p.relative_to(REPO).as_posix() for p in files if "__pycache__" not in p.parts}


@pytest.mark.parametrize("package", [mini_en, mini_pt], ids=["mini_en", "mini_pt"])
def test_sentence_folders_are_package_data(package):
    pkg = Path(package.__file__).resolve().parent
    dirs = [d for d in DATA_DIRS if d.parent == pkg]
    assert dirs
    data = {f for f in _data_files() if f.startswith(f"data_prep/{pkg.name}/")}
    assert {f"data_prep/{pkg.name}/{d.name}/README.md" for d in dirs} <= data
    assert sum(f.endswith(".txt") for f in data) >= 10
    # what setuptools takes: the package-data globs of pyproject.toml, relative to the package
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    matched = {
        p.relative_to(REPO).as_posix()
        for g in globs["package-data"][f"data_prep.{pkg.name}"]
        for p in pkg.glob(g)
        if p.is_file()
    }
    assert matched == data


def _can_build_wheel() -> str | None:
    """Why a wheel cannot be built offline here, or None."""
    if importlib.util.find_spec("pip") is None:
        return "pip is not installed"
    try:  # not imported: setuptools' distutils hack must not touch this process
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return "setuptools is not installed"
    if int(version.split(".")[0]) < 77:  # PEP 639 `license = "..."`
        return f"setuptools {version} is too old to build this project"
    return None


@pytest.mark.skipif(_can_build_wheel() is not None, reason=str(_can_build_wheel()))
def test_wheel_holds_the_sentence_folders(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("speechdistill", "data_prep"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
           "--no-index", "-q", "-w", str(tmp_path / "dist"), str(src)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert _data_files() <= names
    assert {"data_prep/mini_en/__main__.py", "speechdistill/py.typed"} <= names
