"""Audio-dependent ``speechdistill data`` subcommands (placeholder until implemented)."""

from __future__ import annotations

import argparse


def register(data_sub: argparse._SubParsersAction) -> None:
    """Add the audio-dependent subcommands (utt2dur, to-hf, from-hf) to ``speechdistill data``."""
