"""The corpus plan of mini_en: every utterance (id, speaker, text, espeak-ng settings), no audio.

Utterance ids are ``<spk>-<split><n>`` (``rp_m3-train00012``); each utterance jitters speed and
pitch a little around its speaker's base. Dev and test sentences are drawn first and never occur
in train; half of test is said by unseen speakers (a held-out accent and/or variant), the other
half and all of dev by the training speakers. Dev and test do not depend on the train size (once
it reaches the number of speakers), and the train set for N utterances is a prefix of the one for
M > N.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from data_prep.mini_en import seeds
from data_prep.mini_en.text import sentence_key, split_sentences
from data_prep.mini_en.voices import (
    ACCENTS,
    PITCH_JITTER,
    PITCH_RANGE,
    SPEED_JITTER,
    SPEED_RANGE,
    VARIANTS,
    Speaker,
    choose_speakers,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Utterance:
    """One clip to synthesise."""

    utt: str
    split: str
    spk: str
    voice: str
    text: str
    speed: int
    pitch: int
    amplitude: int
    word_gap: int
    voiceset: str

    def espeak_args(self) -> list[str]:
        """Options for ``espeak-ng`` (the text goes to its standard input)."""
        return [
            "-v", self.voice, "-s", str(self.speed), "-p", str(self.pitch),
            "-a", str(self.amplitude), "-g", str(self.word_gap), "-b", "1",
        ]  # fmt: skip


@dataclass
class CorpusPlan:
    """Everything that decides the corpus: speakers and the utterances of each split."""

    seed: int
    speakers: dict[str, Speaker]
    held_out_accents: list[str]
    held_out_variants: list[str]
    utterances: dict[str, list[Utterance]]


def _cycle_shuffled(rng: random.Random, items: Sequence[Speaker]) -> Iterator[Speaker]:
    """Endless stream: each pass a new shuffle of ``items``."""
    while True:
        yield from rng.sample(list(items), len(items))


def _utterance(split: str, i: int, spk: Speaker, text: str, rng: random.Random) -> Utterance:
    lo_s, hi_s = SPEED_RANGE[0] - SPEED_JITTER, SPEED_RANGE[1] + SPEED_JITTER
    lo_p, hi_p = PITCH_RANGE[0] - PITCH_JITTER, PITCH_RANGE[1] + PITCH_JITTER
    return Utterance(
        utt=f"{spk.spk}-{split}{i:05d}",
        split=split,
        spk=spk.spk,
        voice=spk.voice,
        text=text,
        speed=min(hi_s, max(lo_s, spk.speed + rng.randint(-SPEED_JITTER, SPEED_JITTER))),
        pitch=min(hi_p, max(lo_p, spk.pitch + rng.randint(-PITCH_JITTER, PITCH_JITTER))),
        amplitude=spk.amplitude,
        word_gap=spk.word_gap,
        voiceset=spk.voiceset,
    )


def _assign(
    split: str,
    texts: Iterable[str],
    speakers: Sequence[Speaker],
    rng: random.Random,
    n: int,
) -> list[Utterance]:
    """``n`` utterances: texts in order, speakers round-robin over fresh shuffles; a speaker
    never says the same sentence twice when another speaker is free to."""
    spk_stream = _cycle_shuffled(rng, speakers)
    pending: list[Speaker] = []
    said: set[tuple[str, str]] = set()
    out: list[Utterance] = []
    for i, text in enumerate(itertools.islice(texts, n)):
        key = sentence_key(text)
        # take the first pending/next speaker that has not said this sentence
        choice = None
        for j, s in enumerate(pending):
            if (s.spk, key) not in said:
                choice = pending.pop(j)
                break
        while choice is None:
            s = next(spk_stream)
            if (s.spk, key) not in said or len(pending) >= len(speakers):
                choice = s
            else:
                pending.append(s)
        said.add((choice.spk, key))
        out.append(_utterance(split, i, choice, text, rng))
    return out


def plan_corpus(
    sentences: Sequence[str],
    *,
    train_sentences: Sequence[str] = (),
    num_train: int = 300,
    num_dev: int = 50,
    num_test: int = 100,
    seed: int = 0,
    num_speakers: int = 40,
    num_unseen_speakers: int = 12,
    held_out_accents: int = 1,
    held_out_variants: int = 4,
    unseen_fraction: float = 0.5,
    accents: Sequence[str] = tuple(ACCENTS),
    variants: Sequence[str] = VARIANTS,
) -> CorpusPlan:
    """Decide every utterance of the corpus (no audio yet).

    Dev and test sentences are disjoint from each other and from train. Train uses each of its
    sentences once, then each of ``train_sentences`` (train-only text, in a seeded order; those
    whose key is among ``sentences`` are dropped), then (when ``num_train`` exceeds them all)
    all of them again with other speakers. Dev and the "seen" part of test use the training
    speakers (``num_speakers``, or ``num_train`` of them if fewer, so that each one occurs in
    train); ``unseen_fraction`` of test uses the unseen ones.
    Dev and test do not depend on ``num_train`` once it reaches ``num_speakers``.
    """
    if min(num_train, num_dev, num_test) < 0:
        raise ValueError("split sizes must be >= 0")
    # every training speaker must occur in train, or "seen" would be a lie in dev and test
    num_seen = min(num_speakers, num_train) if num_train > 0 else num_speakers
    if num_seen < num_speakers:
        log.warning("only %d training clips: using %d training speakers", num_train, num_seen)
    seen, unseen, new_acc, new_var = choose_speakers(
        seed,
        num_seen=num_seen,
        num_unseen=num_unseen_speakers,
        held_out_accents=held_out_accents,
        held_out_variants=held_out_variants,
        accents=accents,
        variants=variants,
    )
    pools = split_sentences(sentences, num_dev, num_test, seed)
    n_unseen = round(num_test * unseen_fraction) if unseen else 0
    if unseen and 0 < unseen_fraction < 1 and num_test >= 2:
        n_unseen = min(max(n_unseen, 1), num_test - 1)
    n_seen = num_test - n_unseen
    test = _assign("test", pools["test"][:n_seen], seen, seeds.rng(seed, "test"), n_seen)
    test_unseen = _assign(
        "test", pools["test"][n_seen:], unseen, seeds.rng(seed, "test-unseen"), n_unseen
    )
    test += [_renumber(u, n_seen + i) for i, u in enumerate(test_unseen)]
    keys = {sentence_key(s) for s in sentences}
    extra = [s for s in train_sentences if sentence_key(s) not in keys]
    if len(extra) < len(train_sentences):
        log.warning(
            "dropped %d train-only sentences that repeat the main text",
            len(train_sentences) - len(extra),
        )
    extra = seeds.rng(seed, "train-only-text").sample(extra, len(extra))
    train_texts = _train_texts(seeds.rng(seed, "train-text"), pools["train"] + extra)
    utterances = {
        "train": _assign("train", train_texts, seen, seeds.rng(seed, "train"), num_train),
        "dev": _assign("dev", pools["dev"], seen, seeds.rng(seed, "dev"), num_dev),
        "test": test,
    }
    speakers = {s.spk: s for s in [*seen, *unseen]}
    return CorpusPlan(seed, speakers, new_acc, new_var, utterances)


def _train_texts(rng: random.Random, pool: Sequence[str]) -> Iterator[str]:
    """The train pool in its (seeded) order, then further passes, each freshly shuffled."""
    yield from pool
    while pool:
        yield from rng.sample(list(pool), len(pool))


def _renumber(u: Utterance, i: int) -> Utterance:
    return dataclasses.replace(u, utt=f"{u.spk}-{u.split}{i:05d}")
