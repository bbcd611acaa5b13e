"""What every label-quality score reads: the data dir, its labels and references
(:class:`ScoreContext`), and the options of the model- and text-based scores (:class:`ScoreOptions`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechdistill.datadir import DataDir, read_floats
from speechdistill.text import get_normalizer

__all__ = ["DEFAULT_PERTURBATIONS", "ScoreContext", "ScoreOptions"]

log = logging.getLogger(__name__)

#: Perturbations used by ``self_wer`` when none are given (the best of those tried on mini_en).
DEFAULT_PERTURBATIONS = ("speed:0.9",)


@dataclass
class ScoreOptions:
    """What the model- and text-based scores need (the CLI's options)."""

    normalizer: str = "english"
    normalizer_options: Mapping[str, Any] = field(default_factory=dict)
    cps_range: tuple[float, float] = (5.0, 25.0)
    proxy: str | None = None
    proxy_language: str | None = None
    teacher: str | None = None
    perturbations: Sequence[str] = DEFAULT_PERTURBATIONS
    lm: str | None = None
    batch_size: int = 16
    max_new_tokens: int | None = None
    device: str = "cpu"
    dtype: str | None = None
    language: str | None = None
    seed: int = 0


@dataclass
class ScoreContext:
    """The input of every score: the data dir, its labels, references and options."""

    data: DataDir
    utts: list[str]
    labels: dict[str, str]
    refs: dict[str, str] = field(default_factory=dict)
    options: ScoreOptions = field(default_factory=ScoreOptions)
    cache_dir: Path | None = None
    memo: dict[str, Any] = field(default_factory=dict)

    def stat(self, name: str) -> dict[str, float] | None:
        """``utt2<name>`` of the data dir as floats, or None when the file is missing."""
        if not self.data.exists(f"utt2{name}"):
            return None
        key = f"stat:{name}"
        if key not in self.memo:
            self.memo[key] = read_floats(self.data.file(f"utt2{name}"))
        return self.memo[key]

    def durations(self) -> dict[str, float]:
        """Utterance durations: ``utt2dur``, else read from the audio (memoised)."""
        if "durations" not in self.memo:
            if self.data.exists("utt2dur"):
                self.memo["durations"] = self.data.utt2dur()
            else:
                from speechdistill.audio import compute_utt2dur

                log.info("%s has no utt2dur: reading durations from the audio", self.data.path)
                self.memo["durations"] = compute_utt2dur(self.data, write=False)
        return self.memo["durations"]

    def normalize(self, text: str) -> str:
        """``text`` after the options' normaliser."""
        return get_normalizer(self.options.normalizer, **dict(self.options.normalizer_options))(
            text
        )
