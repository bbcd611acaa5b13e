"""The voices of mini_pt: espeak-ng Brazilian Portuguese (``pt-br``, some ``pt``) with variants.

A speaker of a recording is an espeak-ng voice (``pt-br+m3``) with its own speed (words per
minute), pitch, amplitude and word gap; each segment jitters speed and pitch a little around them.
The variants are split, by the seed, into those of training and those held out for dev and test
(unseen voices there, as far as the pool allows). The defaults are the settings on which Whisper
base did best (bench/mini_pt_voices.py; the table is in this package's README).
"""

from __future__ import annotations

import logging
import random
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from data_prep.mini_en import seeds

log = logging.getLogger(__name__)

#: Accents: Brazilian Portuguese, and European Portuguese for :data:`PT_SHARE` of the speakers.
ACCENT = "pt-br"
OTHER_ACCENT = "pt"
PT_SHARE = 0.1
#: espeak-ng variants (files under ``espeak-ng-data/voices/!v``) and the sex they sound. The Klatt
#: voices are left out: Whisper base's WER on ``pt-br+klatt`` was 87.7 % (bench/mini_pt_voices.py).
VARIANTS: dict[str, str] = {
    "m1": "M", "m2": "M", "m3": "M", "m4": "M", "m6": "M", "m7": "M",
    "antonio": "M", "pedro": "M", "Henrique": "M", "Diogo": "M", "miguel": "M",
    "marcelo": "M", "sandro": "M",
    "f2": "F", "f3": "F", "f4": "F", "f5": "F", "Annie": "F", "steph": "F", "Andrea": "F",
}  # fmt: skip
#: Variants held out of training (per sex), for dev and test.
HELD_OUT = {"M": 4, "F": 2}
#: Ranges of a speaker's settings and of the per-segment jitter.
#: words per minute (espeak-ng -s): pt-br at 130 wpm with a 30 ms word gap scored 46.7 %, at 150
#: wpm 55-59 % (bench/mini_pt_voices.py).
SPEED_RANGE = (120, 145)
SPEED_JITTER = 5
PITCH_RANGE = (35, 65)  # 0..99 (espeak-ng -p)
PITCH_JITTER = 4
AMPLITUDE_RANGE = (60, 95)  # espeak-ng -a
#: espeak-ng -g, in units of 10 ms: a gap of 20-40 ms between words lowers Whisper base's WER on
#: pt-br from 76 % to 55-59 % (bench/mini_pt_voices.py; the table is in this package's README).
WORD_GAPS = (2, 3, 4)

_ID_RE = re.compile(r"[^0-9A-Za-z_]+")


@dataclass(frozen=True)
class Voice:
    """One speaker's espeak-ng voice and settings."""

    accent: str
    variant: str
    sex: str  # "M" or "F"
    speed: int
    pitch: int
    amplitude: int
    word_gap: int

    @property
    def voice(self) -> str:
        return f"{self.accent}+{self.variant}"

    @property
    def name(self) -> str:
        """``<accent>_<variant>`` with only ``[0-9a-z_]``."""
        return _ID_RE.sub("", f"{self.accent}_{self.variant}".replace("-", "_")).lower()


def split_variants(seed: int, variants: Sequence[str]) -> tuple[list[str], list[str]]:
    """(train variants, held-out variants): :data:`HELD_OUT` of each sex held out, chosen by the
    seed, when that leaves training at least two of that sex."""
    rng = seeds.rng(seed, "held-out")
    train: list[str] = []
    held: list[str] = []
    for sex in ("M", "F"):
        of_sex = sorted(v for v in variants if VARIANTS.get(v, "M") == sex)
        rng.shuffle(of_sex)
        k = HELD_OUT[sex] if len(of_sex) - HELD_OUT[sex] >= 2 else 0
        held += sorted(of_sex[:k])
        train += sorted(of_sex[k:])
    return train, held


def draw_voice(rng: random.Random, variants: Sequence[str], *, avoid: str = "") -> Voice:
    """A speaker: a variant of ``variants`` (not ``avoid`` when there is a choice) and settings."""
    pool = [v for v in variants if v != avoid] or list(variants)
    variant = rng.choice(pool)
    accent = OTHER_ACCENT if rng.random() < PT_SHARE else ACCENT
    return Voice(
        accent=accent,
        variant=variant,
        sex=VARIANTS.get(variant, "M"),
        speed=rng.randint(*SPEED_RANGE),
        pitch=rng.randint(*PITCH_RANGE),
        amplitude=rng.randint(*AMPLITUDE_RANGE),
        word_gap=rng.choice(WORD_GAPS),
    )


def installed_variants(espeak: str, variants: Sequence[str]) -> list[str]:
    """The ``variants`` this espeak-ng has (an unknown one would silently fall back to the plain
    voice); missing ones are logged. An espeak-ng without ``pt-br`` is an error."""
    r = subprocess.run(
        [espeak, "-v", ACCENT, "-q", "x"], capture_output=True, text=True, check=False, timeout=60
    )
    if r.returncode != 0 or "does not exist" in r.stderr:
        raise RuntimeError(f"espeak-ng has no {ACCENT} voice: {r.stderr.strip()}")
    out = subprocess.run(
        [espeak, "--voices=variant"], capture_output=True, text=True, check=False
    ).stdout
    have = set(re.findall(r"!v/(\S+)", out))
    ok = [v for v in variants if v in have]
    missing = sorted(set(variants) - set(ok))
    if missing:
        log.warning("espeak-ng lacks these variants, skipping them: %s", missing)
    if not ok:
        raise RuntimeError(f"none of the variants {list(variants)} is installed in espeak-ng")
    return ok
