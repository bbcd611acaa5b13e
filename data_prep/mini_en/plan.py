"""The corpus plan of mini_en: every recording and utterance (id, speaker, text, espeak-ng
settings, pauses), no audio.

A recording is one voice saying several sentences in a row, with a pause of
:data:`PAUSE_RANGE` seconds (seeded) between two sentences; each sentence is an utterance, cut out
by the ``segments`` file. Utterance ids are ``<spk>-<split><n>`` (``rp_m3-train00012``), recording
ids ``<spk>-<split>_r<k>`` (``rp_m3-train_r001``, the speaker's k-th recording of the split);
each utterance jitters speed and pitch a little around its speaker's base.

Recording sizes, in sentences (:data:`RECORDING_SENTENCES`): train gives its utterances to speakers
round-robin (as before recordings existed) and cuts each speaker's utterances, in order, into
recordings of 2-8 sentences (the speaker's last one may be shorter); dev and test draw a size per
recording and give it to the next speaker of a shuffled cycle: dev 2-8 sentences, test 12-25
(about 45-120 s; each voice set of test is cut into such recordings, one recording holding all of
a voice set that has fewer than 12 sentences).

Dev and test sentences are drawn first and never occur in train; half of test is said by unseen
speakers (a held-out accent and/or variant), the other half and all of dev by the training
speakers. Dev and test do not depend on the train size (once it reaches the number of speakers),
and the train utterances for N are a prefix of those for M > N; so are the recordings, but for
each speaker's last one, which may hold fewer sentences.
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
#: Sentences per recording (min, max) by split.
RECORDING_SENTENCES = {"train": (2, 8), "dev": (2, 8), "test": (12, 25)}
#: Pause between two sentences of a recording (seconds, drawn uniformly; whole milliseconds).
PAUSE_RANGE = (0.2, 1.5)


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
    reco: str = ""  # the recording that holds it

    def espeak_args(self) -> list[str]:
        """Options for ``espeak-ng`` (the text goes to its standard input)."""
        return [
            "-v", self.voice, "-s", str(self.speed), "-p", str(self.pitch),
            "-a", str(self.amplitude), "-g", str(self.word_gap), "-b", "1",
        ]  # fmt: skip


@dataclass(frozen=True)
class Recording:
    """Utterances of one speaker said in a row, ``pauses_ms[i]`` of silence after ``utts[i]``."""

    reco: str
    split: str
    spk: str
    voiceset: str
    utts: tuple[Utterance, ...]
    pauses_ms: tuple[int, ...]  # one fewer than utts


@dataclass
class CorpusPlan:
    """Everything that decides the corpus: speakers, and the recordings of each split (and
    their utterances, in id order)."""

    seed: int
    speakers: dict[str, Speaker]
    held_out_accents: list[str]
    held_out_variants: list[str]
    utterances: dict[str, list[Utterance]]
    recordings: dict[str, list[Recording]] = dataclasses.field(default_factory=dict)


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
    """Decide every recording and utterance of the corpus (no audio yet).

    Dev and test sentences are disjoint from each other and from train. Train uses each of its
    sentences once, then each of ``train_sentences`` (train-only text, in a seeded order; those
    whose key is among ``sentences`` are dropped), then (when ``num_train`` exceeds them all)
    all of them again with other speakers. Dev and the "seen" part of test use the training
    speakers (``num_speakers``, or ``num_train`` of them if fewer, so that each one occurs in
    train); ``unseen_fraction`` of test uses the unseen ones. Recordings: see the module doc.
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
    lo, hi = RECORDING_SENTENCES["test"]
    counts: dict[str, int] = {}
    test = _assign_recordings(
        "test",
        pools["test"][:n_seen],
        _partition(seeds.rng(seed, "test-recordings"), n_seen, lo, hi),
        seen,
        seeds.rng(seed, "test"),
        seed,
        first=0,
        counts=counts,
    )
    test += _assign_recordings(
        "test",
        pools["test"][n_seen:num_test],
        _partition(seeds.rng(seed, "test-unseen-recordings"), n_unseen, lo, hi),
        unseen,
        seeds.rng(seed, "test-unseen"),
        seed,
        first=n_seen,
        counts=counts,
    )
    keys = {sentence_key(s) for s in sentences}
    extra = [s for s in train_sentences if sentence_key(s) not in keys]
    if len(extra) < len(train_sentences):
        log.warning(
            "dropped %d train-only sentences that repeat the main text",
            len(train_sentences) - len(extra),
        )
    extra = seeds.rng(seed, "train-only-text").sample(extra, len(extra))
    train_texts = _train_texts(seeds.rng(seed, "train-text"), pools["train"] + extra)
    train_utts = _assign("train", train_texts, seen, seeds.rng(seed, "train"), num_train)
    lo, hi = RECORDING_SENTENCES["dev"]
    dev = _assign_recordings(
        "dev",
        pools["dev"][:num_dev],
        _draw_sizes(seeds.rng(seed, "dev-recordings"), num_dev, lo, hi),
        seen,
        seeds.rng(seed, "dev"),
        seed,
        first=0,
        counts={},
    )
    speakers = {s.spk: s for s in [*seen, *unseen]}
    recordings = {
        "train": _cut_by_speaker("train", train_utts, speakers, seed),
        "dev": dev,
        "test": test,
    }
    utterances = {
        split: sorted((u for r in recordings[split] for u in r.utts), key=_index)
        for split in SPLITS
    }
    return CorpusPlan(seed, speakers, new_acc, new_var, utterances, recordings)


def _index(u: Utterance) -> int:
    """The utterance's number within its split (its id's suffix)."""
    return int(u.utt.rsplit(u.split, 1)[1])


def _recording(split: str, spk: Speaker, k: int, utts: Sequence[Utterance], seed: int) -> Recording:
    """Recording ``k`` of ``spk`` in ``split``: ``utts`` in order, with seeded pauses."""
    reco = f"{spk.spk}-{split}_r{k:03d}"
    rng = seeds.rng(seed, f"pauses:{reco}")
    lo, hi = (round(x * 1000) for x in PAUSE_RANGE)
    pauses = tuple(rng.randint(lo, hi) for _ in utts[1:])
    held = tuple(dataclasses.replace(u, reco=reco) for u in utts)
    return Recording(reco, split, spk.spk, spk.voiceset, held, pauses)


def _cut_by_speaker(
    split: str, utts: Sequence[Utterance], speakers: dict[str, Speaker], seed: int
) -> list[Recording]:
    """Each speaker's utterances, in order, cut into recordings of sizes drawn from the
    speaker's own stream (so a longer split only adds to its last recording and new ones)."""
    lo, hi = RECORDING_SENTENCES[split]
    by_spk: dict[str, list[Utterance]] = {}
    for u in utts:
        by_spk.setdefault(u.spk, []).append(u)
    out: list[Recording] = []
    for spk, said in sorted(by_spk.items()):
        rng = seeds.rng(seed, f"{split}-recordings:{spk}")
        pos = k = 0
        while pos < len(said):
            n = rng.randint(lo, hi)
            out.append(_recording(split, speakers[spk], k, said[pos : pos + n], seed))
            pos, k = pos + n, k + 1
    return out


def _assign_recordings(
    split: str,
    texts: Sequence[str],
    sizes: Sequence[int],
    speakers: Sequence[Speaker],
    rng: random.Random,
    seed: int,
    *,
    first: int,
    counts: dict[str, int],
) -> list[Recording]:
    """Recordings of ``sizes`` sentences (``texts`` in order), each said by the next speaker of
    a shuffled cycle; utterances numbered from ``first``; ``counts``: recordings per speaker."""
    if not speakers:
        return []
    spk_stream = _cycle_shuffled(rng, speakers)
    out: list[Recording] = []
    pos = 0
    for n in sizes:
        spk = next(spk_stream)
        utts = [
            _utterance(split, first + pos + j, spk, text, rng)
            for j, text in enumerate(texts[pos : pos + n])
        ]
        k = counts.get(spk.spk, 0)
        counts[spk.spk] = k + 1
        out.append(_recording(split, spk, k, utts, seed))
        pos += n
    return out


def _draw_sizes(rng: random.Random, n: int, lo: int, hi: int) -> list[int]:
    """Sizes drawn in [lo, hi] until they reach ``n`` (the last one cut short)."""
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(min(rng.randint(lo, hi), n - sum(sizes)))
    return sizes


def _partition(rng: random.Random, n: int, lo: int, hi: int) -> list[int]:
    """``n`` cut into a random number of sizes in [lo, hi] (one size ``n`` when ``n < lo``)."""
    if n <= 0:
        return []
    k_min = -(-n // hi)
    k = rng.randint(k_min, max(k_min, n // lo))
    if n < lo * k:
        return [n // k + (j < n % k) for j in range(k)]
    sizes = [lo] * k
    rest = n - lo * k
    while rest:
        j = rng.randrange(k)
        if sizes[j] < hi:
            sizes[j] += 1
            rest -= 1
    return sizes


def _train_texts(rng: random.Random, pool: Sequence[str]) -> Iterator[str]:
    """The train pool in its (seeded) order, then further passes, each freshly shuffled."""
    yield from pool
    while pool:
        yield from rng.sample(list(pool), len(pool))
