"""The voices of mini_en: espeak-ng accents and variants, speakers, and which are installed.

A speaker is an espeak-ng English accent (``en-us``, ``en-gb-x-rp`` …) × a voice variant
(``m3``, ``f2``, ``klatt`` …) with its own base speed (words per minute), pitch, amplitude and word
gap. Speaker ids are ``<accent code>_<variant>`` (``rp_m3``). One accent and a few variants
(chosen by the seed) are held out of training: the "unseen" test speakers use them.
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

#: espeak-ng English accents (voice names) and the short codes used in speaker ids. Those in
#: ``ACCENTS`` are the default pool; Whisper tiny.en's WER on them (greedy, 39 clips each, two
#: measurements) was en-us 0.24-0.27, en 0.24-0.27, rp 0.24-0.30, nyc 0.36, gbclan 0.38-0.42.
ACCENTS: dict[str, str] = {
    "en-us": "us",
    "en-us-nyc": "nyc",
    "en": "gb",  # British (gmw/en); `-v en-gb+VARIANT` ignores the variant in espeak-ng 1.51
    "en-gb-x-rp": "rp",
    "en-gb-x-gbclan": "lan",
}
#: Accents left out by default because the teacher mostly fails on them (WER 0.41-0.69 for
#: scotland, 0.50-0.54 for en-029, 0.50-0.72 for gbcwmd): ask for them with ``--accents``.
HARD_ACCENTS: dict[str, str] = {
    "en-gb-scotland": "sco",
    "en-gb-x-gbcwmd": "wmd",
    "en-029": "car",
}
ACCENT_CODES: dict[str, str] = {**ACCENTS, **HARD_ACCENTS}

#: espeak-ng voice variants (file names under ``espeak-ng-data/voices/!v``) that sound like a
#: plain human-ish voice (no whisper, echo-robot, croak or novelty effects) and that the teacher
#: transcribes about as well as the plain voices. Left out after measuring (teacher WER about
#: 0.5-0.7 on every accent): linda, david, travis, aunty, Andy, belinda, f1.
VARIANTS: tuple[str, ...] = (
    # the classic male/female variants
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "f2", "f3", "f4", "f5",
    # Klatt-synthesiser voices (a different glottal source)
    "klatt", "klatt2", "klatt3", "benjamin", "edward",
    # named community variants
    "Alex", "Annie", "Gene", "Mike", "antonio", "gustave", "max", "michel", "paul", "pedro",
    "quincy", "rob", "robert", "steph", "victor",
)  # fmt: skip

#: Ranges of the speaker's base settings and of the per-utterance jitter around them.
SPEED_RANGE = (145, 185)  # words per minute (espeak-ng -s)
SPEED_JITTER = 5
PITCH_RANGE = (35, 65)  # 0..99 (espeak-ng -p)
PITCH_JITTER = 5
AMPLITUDE_RANGE = (55, 95)  # espeak-ng -a (default 100; louder voices clip above ~90)
WORD_GAPS = (0, 0, 0, 1, 1, 2)  # espeak-ng -g, in units of 10 ms

_ID_RE = re.compile(r"[^0-9A-Za-z_]+")


@dataclass(frozen=True)
class Speaker:
    """An espeak-ng voice (accent + variant) with its base settings."""

    spk: str
    accent: str
    variant: str
    speed: int
    pitch: int
    amplitude: int
    word_gap: int
    voiceset: str  # "seen" (a training speaker) or "unseen"

    @property
    def voice(self) -> str:
        return f"{self.accent}+{self.variant}"


def speaker_id(accent: str, variant: str) -> str:
    """``<accent code>_<variant>`` with only ``[0-9a-z_]`` (safe in Kaldi ids and file names)."""
    code = ACCENT_CODES.get(accent, accent)
    return _ID_RE.sub("", f"{code}_{variant}".replace("-", "_")).lower()


def _make_speaker(rng: random.Random, accent: str, variant: str, voiceset: str) -> Speaker:
    return Speaker(
        spk=speaker_id(accent, variant),
        accent=accent,
        variant=variant,
        speed=rng.randint(*SPEED_RANGE),
        pitch=rng.randint(*PITCH_RANGE),
        amplitude=rng.randint(*AMPLITUDE_RANGE),
        word_gap=rng.choice(WORD_GAPS),
        voiceset=voiceset,
    )


def _pair_up(
    rng: random.Random, accents: Sequence[str], variants: Sequence[str], n: int, taken: set[str]
) -> list[tuple[str, str]]:
    """``n`` new distinct (accent, variant) pairs, covering the accents and variants evenly
    (both are drawn from their own reshuffled cycles); ``taken`` speaker ids are skipped and
    the new ones added to it."""
    free = {speaker_id(a, v) for a in accents for v in variants} - taken
    if n > len(free):
        raise ValueError(
            f"cannot form {n} new speakers from {len(accents)} accents x {len(variants)} variants"
        )
    pairs: list[tuple[str, str]] = []
    acc_cycle: list[str] = []
    var_cycle: list[str] = []
    while len(pairs) < n:
        if not acc_cycle:
            acc_cycle = rng.sample(list(accents), len(accents))
        if not var_cycle:
            var_cycle = rng.sample(list(variants), len(variants))
        a = acc_cycle.pop()
        v = _first_free(a, var_cycle, taken)
        if v is None:  # none left in this cycle: start a new one (an exhausted accent is skipped)
            var_cycle = rng.sample(list(variants), len(variants))
            v = _first_free(a, var_cycle, taken)
        if v is not None:
            taken.add(speaker_id(a, v))
            pairs.append((a, v))
    return pairs


def _first_free(accent: str, var_cycle: list[str], taken: set[str]) -> str | None:
    """Pop and return the next variant (from the end) that is free with ``accent``."""
    for j in range(len(var_cycle) - 1, -1, -1):
        if speaker_id(accent, var_cycle[j]) not in taken:
            return var_cycle.pop(j)
    return None


def choose_speakers(
    seed: int,
    *,
    num_seen: int = 40,
    num_unseen: int = 12,
    held_out_accents: int = 1,
    held_out_variants: int = 4,
    accents: Sequence[str] = tuple(ACCENTS),
    variants: Sequence[str] = VARIANTS,
) -> tuple[list[Speaker], list[Speaker], list[str], list[str]]:
    """Training ("seen") speakers and test-only ("unseen") speakers.

    ``held_out_accents`` accents and ``held_out_variants`` variants never occur in training;
    each unseen speaker has a held-out accent, a held-out variant, or both (in turn).
    Returns (seen, unseen, held-out accents, held-out variants).
    """
    # separate streams, so that the first n seen speakers are the same whatever num_seen is
    rng = seeds.rng(seed, "held-out")
    acc = rng.sample(list(accents), len(accents))
    var = rng.sample(list(variants), len(variants))
    if num_unseen > 0 and not (held_out_accents or held_out_variants):
        raise ValueError("unseen speakers need a held-out accent or variant")
    if held_out_accents >= len(acc) or held_out_variants >= len(var):
        raise ValueError("hold out fewer accents/variants than there are")
    new_acc, old_acc = sorted(acc[:held_out_accents]), acc[held_out_accents:]
    new_var, old_var = sorted(var[:held_out_variants]), var[held_out_variants:]
    pairs = _pair_up(seeds.rng(seed, "seen"), old_acc, old_var, num_seen, set())
    params = seeds.rng(seed, "seen-params")
    seen = [_make_speaker(params, a, v, "seen") for a, v in pairs]
    # unseen kinds in turn: new accent + old variant, old accent + new variant, both new
    # (a held-out accent or variant makes every unseen speaker differ from every seen one)
    kinds = [(new_acc, old_var), (old_acc, new_var), (new_acc, new_var)]
    kinds = [(a, v) for a, v in kinds if a and v]
    counts = [num_unseen // len(kinds) + (i < num_unseen % len(kinds)) for i in range(len(kinds))]
    rng, params, taken = seeds.rng(seed, "unseen"), seeds.rng(seed, "unseen-params"), set()
    unseen: list[Speaker] = []
    for (a, v), k in zip(kinds, counts, strict=True):
        k = min(k, len(a) * len(v))
        unseen += [
            _make_speaker(params, pa, pv, "unseen") for pa, pv in _pair_up(rng, a, v, k, taken)
        ]
    return seen, unseen, new_acc, new_var


def installed_voices(
    espeak: str, accents: Sequence[str] = tuple(ACCENTS), variants: Sequence[str] = VARIANTS
) -> tuple[list[str], list[str]]:
    """The ``accents`` and ``variants`` this espeak-ng has (an unknown variant would silently
    fall back to the plain voice, an unknown accent fails); missing ones are logged."""
    out = subprocess.run(
        [espeak, "--voices=variant"], capture_output=True, text=True, check=False
    ).stdout
    have = set(re.findall(r"!v/(\S+)", out))
    ok_var = [v for v in variants if v in have]
    ok_acc = []
    for a in accents:
        r = subprocess.run(
            [espeak, "-v", a, "-q", "x"], capture_output=True, text=True, check=False, timeout=60
        )
        if r.returncode == 0 and "does not exist" not in r.stderr:
            ok_acc.append(a)
    missing = sorted(set(accents) - set(ok_acc)) + sorted(set(variants) - set(ok_var))
    if missing:
        log.warning("espeak-ng lacks these voices/variants, skipping them: %s", missing)
    return ok_acc, ok_var
