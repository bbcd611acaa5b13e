"""Seeded random streams: every random choice of the mini_en corpus comes from one of these.

Each purpose (``"sentences"``, ``"seen"``, ``"train"`` …) has its own stream, seeded with
``"<seed>:<purpose>"``, so that a choice does not shift when another one draws more or fewer
numbers (the first n seen speakers are the same whatever the number of speakers, the dev and test
utterances the same whatever the train size).
"""

from __future__ import annotations

import random


def rng(seed: int, purpose: str) -> random.Random:
    """The stream of ``purpose`` for ``seed``."""
    return random.Random(f"{seed}:{purpose}")
