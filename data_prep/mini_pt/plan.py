"""The plan of mini_pt: every recording and segment (speaker, voice, text, reference, pauses),
before any audio.

Recordings are of NURC-SP's three kinds, named as the corpus names them (``SP_<kind>_<nnn>``):
``EF`` (elocução formal, one speaker; ``speech_genre`` "lecture and talks"), ``DID`` (an
interviewer and an informant; "interview") and ``D2`` (two informants; "dialogue"). In a
two-speaker recording the turn passes to the other speaker after most segments; ``speaker_id`` is
0 or 1 within the recording, each with its own espeak-ng voice. A recording is cut into
consecutive segments (one sentence each) with pauses of :data:`PAUSE_RANGE` between them; some
recordings (the first of each split, then :data:`EMPTY_SHARE` of them) also hold a segment with
no transcription (faint noise, empty ``text``: in ``original/`` only, as in the corpus).

Dev and test sentences are drawn first and never occur in train; dev and test recordings use the
held-out variants (:func:`~data_prep.mini_pt.voices.split_variants`). The splits are planned
test, dev, train, each from its own seeded streams, so dev and test do not depend on the train size.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from data_prep.mini_en import seeds
from data_prep.mini_en.text import split_sentences
from data_prep.mini_pt.conventions import annotate
from data_prep.mini_pt.voices import (
    PITCH_JITTER,
    SPEED_JITTER,
    Voice,
    draw_voice,
    split_variants,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
#: Recording kinds: NURC-SP's inquérito type, ``speech_genre``, speakers, drawing weight.
KINDS = {"EF": ("lecture and talks", 1, 1), "DID": ("interview", 2, 2), "D2": ("dialogue", 2, 2)}
#: Segments with text per recording (min, max) by split.
RECORDING_SEGMENTS = {"train": (4, 10), "dev": (4, 10), "test": (8, 16)}
#: Silence before the first segment and between two segments (seconds; whole milliseconds).
LEAD_RANGE = (0.3, 1.0)
PAUSE_RANGE = (0.2, 1.5)
#: Share of recordings with one segment without transcription, and its length (seconds).
EMPTY_SHARE = 0.3
EMPTY_RANGE = (0.4, 1.2)
#: In a two-speaker recording, the chance that the next segment is the other speaker's.
TURN_CHANGE = 0.7
AGE_RANGES = ("I", "II", "III")


@dataclass(frozen=True)
class Segment:
    """One row of the metadata: a sentence (or, with ``text == ""``, faint noise)."""

    index: int  # in its recording, from 0
    speaker: int  # speaker_id in the recording
    text: str  # what espeak-ng says ("" for a segment without transcription)
    reference: str  # the CSV's text: ``text`` with NURC marks
    marks: tuple[str, ...]
    speed: int
    pitch: int
    empty_ms: int = 0  # the length of a segment without transcription

    @property
    def quality(self) -> str:
        return "low" if not self.text or "unintelligible" in self.marks else "high"


@dataclass(frozen=True)
class Recording:
    """A recording (``audio_name``): its speakers and segments, ``pauses_ms[0]`` of silence
    before the first segment and ``pauses_ms[i]`` between segments ``i - 1`` and ``i``."""

    audio_name: str
    split: str
    kind: str
    voices: tuple[Voice, ...]
    segments: tuple[Segment, ...]
    pauses_ms: tuple[int, ...]  # as many as segments
    age_range: str

    @property
    def genre(self) -> str:
        return KINDS[self.kind][0]

    @property
    def sex(self) -> str:
        """``F``/``M``, or ``F e M``, ``M e M``, ``F e F`` as the corpus writes two speakers."""
        return " e ".join(sorted(v.sex for v in self.voices))

    def file_path(self, seg: Segment) -> str:
        return f"{self.split}/{self.audio_name}_{seg.index}.wav"


def _names(seed: int) -> dict[str, Iterator[int]]:
    """Per kind, distinct recording numbers: 1-999 in a seeded order, then 1000 on."""
    rng = seeds.rng(seed, "names")
    return {
        kind: itertools.chain(rng.sample(range(1, 1000), 999), itertools.count(1000))
        for kind in KINDS
    }


def _ms(rng: random.Random, bounds: tuple[float, float]) -> int:
    return rng.randint(round(bounds[0] * 1000), round(bounds[1] * 1000))


def _segment(
    index: int, speaker: int, voice: Voice, text: str, rng: random.Random, marks: random.Random
) -> Segment:
    reference, kinds = annotate(text, marks)
    return Segment(
        index=index,
        speaker=speaker,
        text=text,
        reference=reference,
        marks=tuple(kinds),
        speed=voice.speed + rng.randint(-SPEED_JITTER, SPEED_JITTER),
        pitch=min(99, max(0, voice.pitch + rng.randint(-PITCH_JITTER, PITCH_JITTER))),
    )


def plan_split(
    split: str,
    sentences: Sequence[str],
    num: int,
    variants: Sequence[str],
    seed: int,
    names: dict[str, Iterator[int]],
) -> list[Recording]:
    """Recordings holding ``num`` segments with text, the sentences in order (cycled when
    ``num`` exceeds them), said by voices of ``variants``."""
    if num <= 0:
        return []
    if not sentences:
        raise ValueError(f"{split}: no sentences")
    rng = seeds.rng(seed, f"plan-{split}")
    marks = seeds.rng(seed, f"marks-{split}")
    text = itertools.cycle(sentences)
    recordings: list[Recording] = []
    left = num
    while left > 0:
        size = min(left, rng.randint(*RECORDING_SEGMENTS[split]))
        left -= size
        kind = rng.choices(list(KINDS), weights=[k[2] for k in KINDS.values()])[0]
        voices = [draw_voice(rng, variants)]
        if KINDS[kind][1] == 2:
            voices.append(draw_voice(rng, variants, avoid=voices[0].variant))
        empty_at = rng.randint(1, size) if rng.random() < EMPTY_SHARE else -1
        if not recordings and empty_at < 0:
            empty_at = rng.randint(1, size)  # every split has some, as the corpus
        segments: list[Segment] = []
        speaker = 0
        for i in range(size + (empty_at >= 0)):
            if i and len(voices) == 2 and rng.random() < TURN_CHANGE:
                speaker = 1 - speaker
            voice = voices[speaker]
            if i == empty_at:
                segments.append(
                    Segment(i, speaker, "", "", (), voice.speed, voice.pitch, _ms(rng, EMPTY_RANGE))
                )
            else:
                segments.append(_segment(i, speaker, voice, next(text), rng, marks))
        pauses = [_ms(rng, LEAD_RANGE)] + [_ms(rng, PAUSE_RANGE) for _ in segments[1:]]
        recordings.append(
            Recording(
                audio_name=f"SP_{kind}_{next(names[kind]):03d}",
                split=split,
                kind=kind,
                voices=tuple(voices),
                segments=tuple(segments),
                pauses_ms=tuple(pauses),
                age_range=rng.choice(AGE_RANGES),
            )
        )
    return recordings


def plan_corpus(
    sentences: Sequence[str],
    *,
    num_train: int,
    num_dev: int,
    num_test: int,
    seed: int,
    variants: Sequence[str],
) -> tuple[dict[str, list[Recording]], list[str], list[str]]:
    """The recordings of each split, the training variants and the held-out ones."""
    for name, num in (("train", num_train), ("dev", num_dev), ("test", num_test)):
        if num < 1:
            raise ValueError(f"--num-{name} must be at least 1, got {num}")
    pools = split_sentences(sentences, num_dev, num_test, seed)
    train_var, held = split_variants(seed, variants)
    names = _names(seed)
    plan: dict[str, list[Recording]] = {}
    sizes = {"train": num_train, "dev": num_dev, "test": num_test}
    for split in ("test", "dev", "train"):
        plan[split] = plan_split(
            split, pools[split], sizes[split], held if split != "train" else train_var, seed, names
        )
    if num_train > len(pools["train"]):
        log.warning(
            "train: %d segments from %d sentences: sentences repeat", num_train, len(pools["train"])
        )
    return plan, train_var, held
