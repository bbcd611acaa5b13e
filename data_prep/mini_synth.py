"""mini_en: a small English corpus synthesised with espeak-ng, with known text.

Usage::

    python -m data_prep.mini_synth OUT_DIR [--num-train 300] [--num-dev 50] [--num-test 100]
                                           [--seed 0] [--nj 2] [--text FILE_OR_DIR ...]
                                           [--train-text FILE_OR_DIR ...]

writes Kaldi data dirs ``OUT_DIR/{train,dev,test}`` (``wav.scp`` with absolute paths to 16 kHz
mono 16-bit WAVs under ``OUT_DIR/wav/<split>/``, ``text``, ``utt2spk``, ``spk2utt``, ``utt2dur``;
``test`` also has ``utt2voiceset``: ``seen`` or ``unseen``) and ``OUT_DIR/local/`` (the speakers
and their espeak-ng settings, the synthesis parameters of every utterance, the text source, the
configuration).

Design:

* Text: hand-written natural English sentences shipped in ``data_prep/mini_text/`` (see its
  README for the source and licence), or any sentence files given with ``--text``. Sentences are
  de-duplicated on a normalised key (case, punctuation and spacing ignored); the dev and test
  sentences are drawn first and never occur in train, whatever ``--num-train`` is.
* Train-only text: ``--train-text`` adds sentences that only train may use (the bundled
  ``data_prep/mini_text_train/`` has 1,199 more), so that a larger train set holds more distinct
  sentences instead of repeating them. They come after train's own sentences, so dev, test and
  the first clips of train are those of the corpus without them; a train-only sentence that
  repeats a bundled one is dropped with a count.
* Speakers: an espeak-ng English accent (``en-us``, ``en-gb-x-rp`` …) × a voice variant (``m3``,
  ``f2``, ``klatt`` …) with its own base speed (words per minute), pitch, amplitude and word gap;
  each utterance jitters speed and pitch a little around the speaker's base. Speaker ids are
  ``<accent code>_<variant>`` (``rp_m3``), utterance ids ``<spk>-<split><n>`` (``rp_m3-train00012``).
  The default accents and variants are those on which Whisper tiny.en, the teacher, is usable
  (capped WER about 0.26 on the default test set); espeak-ng's Scottish, West Midlands and
  Caribbean English and a few variants are left out (teacher WER 0.5-0.7), see ``--accents``.
* Unseen voices: one accent and a few variants are held out of training (chosen by the seed);
  half of the test utterances come from speakers built with a held-out accent and/or variant,
  the other half (and all of dev) from the training speakers.
* Determinism: every random choice comes from ``random.Random`` streams seeded with
  ``"<seed>:<purpose>"``; espeak-ng is deterministic for a given command line and soxr's
  resampling is too, so one seed gives byte-identical WAVs. Dev and test do not depend on
  ``--num-train`` (once it reaches ``--num-speakers``), and the train set for N utterances is a
  prefix of the one for M > N.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import logging
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from speechdistill.datadir import DataDir
from speechdistill.utils import PathLike, atomic_open, atomic_write_text, setup_logging

log = logging.getLogger("data_prep.mini_synth")

SAMPLE_RATE = 16000
SPLITS = ("train", "dev", "test")

#: The bundled text: every ``*.txt`` file in this directory, one sentence a line.
TEXT_DIR = Path(__file__).resolve().parent / "mini_text"
#: Bundled train-only text (``--train-text``): sentences never drawn for dev or test.
TRAIN_TEXT_DIR = Path(__file__).resolve().parent / "mini_text_train"

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

_KEY_RE = re.compile(r"[^0-9a-z]+")
_ID_RE = re.compile(r"[^0-9A-Za-z_]+")


# --------------------------------------------------------------------------------------------
# text


def sentence_key(sentence: str) -> str:
    """The key two sentences must differ in: lower-case letters and digits only."""
    return _KEY_RE.sub(" ", sentence.lower()).strip()


def _text_files(paths: Iterable[PathLike]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.txt")))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"text source not found: {p}")
    if not files:
        raise ValueError(f"no sentence files (*.txt) in {[str(p) for p in paths]}")
    return files


def load_sentences(paths: Sequence[PathLike] | None = None) -> list[str]:
    """Read sentence files (one a line; blank lines and ``#`` comments skipped).

    ``paths`` are files or directories (their ``*.txt`` in name order); the default is the
    bundled ``mini_text/``. Whitespace is collapsed and sentences whose :func:`sentence_key`
    repeats an earlier one are dropped, so the result has distinct keys, in file order.
    """
    files = _text_files([TEXT_DIR] if paths is None else paths)
    out: list[str] = []
    seen: set[str] = set()
    dropped = 0
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            s = " ".join(line.split())
            if not s or s.startswith("#"):
                continue
            key = sentence_key(s)
            if not key:
                continue
            if key in seen:
                dropped += 1
                continue
            seen.add(key)
            out.append(s)
    if dropped:
        log.warning("dropped %d duplicate sentences", dropped)
    return out


def text_fingerprint(paths: Sequence[PathLike] | None = None) -> dict[str, str]:
    """sha256 of each sentence file, for ``local/text_source.txt``."""
    files = _text_files([TEXT_DIR] if paths is None else paths)
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


# --------------------------------------------------------------------------------------------
# speakers and the plan


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


def speaker_id(accent: str, variant: str) -> str:
    """``<accent code>_<variant>`` with only ``[0-9a-z_]`` (safe in Kaldi ids and file names)."""
    code = ACCENT_CODES.get(accent, accent)
    return _ID_RE.sub("", f"{code}_{variant}".replace("-", "_")).lower()


def _rng(seed: int, purpose: str) -> random.Random:
    return random.Random(f"{seed}:{purpose}")


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
    rng = _rng(seed, "held-out")
    acc = rng.sample(list(accents), len(accents))
    var = rng.sample(list(variants), len(variants))
    if num_unseen > 0 and not (held_out_accents or held_out_variants):
        raise ValueError("unseen speakers need a held-out accent or variant")
    if held_out_accents >= len(acc) or held_out_variants >= len(var):
        raise ValueError("hold out fewer accents/variants than there are")
    new_acc, old_acc = sorted(acc[:held_out_accents]), acc[held_out_accents:]
    new_var, old_var = sorted(var[:held_out_variants]), var[held_out_variants:]
    pairs = _pair_up(_rng(seed, "seen"), old_acc, old_var, num_seen, set())
    params = _rng(seed, "seen-params")
    seen = [_make_speaker(params, a, v, "seen") for a, v in pairs]
    # unseen kinds in turn: new accent + old variant, old accent + new variant, both new
    # (a held-out accent or variant makes every unseen speaker differ from every seen one)
    kinds = [(new_acc, old_var), (old_acc, new_var), (new_acc, new_var)]
    kinds = [(a, v) for a, v in kinds if a and v]
    counts = [num_unseen // len(kinds) + (i < num_unseen % len(kinds)) for i in range(len(kinds))]
    rng, params, taken = _rng(seed, "unseen"), _rng(seed, "unseen-params"), set()
    unseen: list[Speaker] = []
    for (a, v), k in zip(kinds, counts, strict=True):
        k = min(k, len(a) * len(v))
        unseen += [
            _make_speaker(params, pa, pv, "unseen") for pa, pv in _pair_up(rng, a, v, k, taken)
        ]
    return seen, unseen, new_acc, new_var


def split_sentences(
    sentences: Sequence[str], num_dev: int, num_test: int, seed: int
) -> dict[str, list[str]]:
    """Disjoint sentence pools: ``test`` and ``dev`` (exactly the sizes asked) and ``train`` (the
    rest, in a seeded order). Independent of the train size."""
    if num_dev + num_test >= len(sentences):
        raise ValueError(
            f"{len(sentences)} sentences cannot give {num_dev} dev + {num_test} test and leave "
            "any for train"
        )
    order = _rng(seed, "sentences").sample(list(sentences), len(sentences))
    return {
        "test": order[:num_test],
        "dev": order[num_test : num_test + num_dev],
        "train": order[num_test + num_dev :],
    }


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
    test = _assign("test", pools["test"][:n_seen], seen, _rng(seed, "test"), n_seen)
    test_unseen = _assign(
        "test", pools["test"][n_seen:], unseen, _rng(seed, "test-unseen"), n_unseen
    )
    test += [_renumber(u, n_seen + i) for i, u in enumerate(test_unseen)]
    keys = {sentence_key(s) for s in sentences}
    extra = [s for s in train_sentences if sentence_key(s) not in keys]
    if len(extra) < len(train_sentences):
        log.warning(
            "dropped %d train-only sentences that repeat the main text",
            len(train_sentences) - len(extra),
        )
    extra = _rng(seed, "train-only-text").sample(extra, len(extra))
    train_texts = _train_texts(_rng(seed, "train-text"), pools["train"] + extra)
    utterances = {
        "train": _assign("train", train_texts, seen, _rng(seed, "train"), num_train),
        "dev": _assign("dev", pools["dev"], seen, _rng(seed, "dev"), num_dev),
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


# --------------------------------------------------------------------------------------------
# synthesis


def find_espeak(espeak: str | None = None) -> str:
    """The espeak-ng executable (``espeak`` as a fallback); a clear error when neither exists."""
    for name in [espeak] if espeak else ["espeak-ng", "espeak"]:
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError(
        "espeak-ng not found: install it (Debian/Ubuntu: apt-get install espeak-ng; "
        "`make sysdeps` does) or pass --espeak PATH"
    )


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


def espeak_version(espeak: str) -> str:
    out = subprocess.run([espeak, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def parse_espeak_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Decode espeak-ng's ``--stdout`` WAV (16-bit PCM mono; the RIFF and data sizes are
    placeholders because a pipe cannot seek, so the samples run to the end of the stream)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("espeak-ng output is not a WAV stream")
    pos, rate = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if cid == b"fmt ":
            fmt, channels = (
                int.from_bytes(data[body + o : body + o + 2], "little") for o in (0, 2)
            )
            rate = int.from_bytes(data[body + 4 : body + 8], "little")
            bits = int.from_bytes(data[body + 14 : body + 16], "little")
            if (fmt, channels, bits) != (1, 1, 16):
                raise ValueError(f"unexpected espeak-ng WAV format {fmt}/{channels}ch/{bits}bit")
        elif cid == b"data":
            if rate is None:
                raise ValueError("espeak-ng WAV has no fmt chunk before its data")
            pcm = data[body:]
            pcm = pcm[: len(pcm) // 2 * 2]
            return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, rate
        pos = body + size + (size & 1)
    raise ValueError("espeak-ng WAV has no data chunk")


def synthesize(utt: Utterance, espeak: str, timeout: float = 120.0) -> np.ndarray:
    """Speak ``utt`` with espeak-ng; 16 kHz mono int16 samples."""
    proc = subprocess.run(
        [espeak, *utt.espeak_args(), "--stdout"],
        input=utt.text.encode("utf-8"),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"espeak-ng failed for {utt.utt} ({utt.voice}): {err}")
    audio, rate = parse_espeak_wav(proc.stdout)
    if audio.size == 0:
        raise RuntimeError(f"espeak-ng produced no audio for {utt.utt} ({utt.voice})")
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ")
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)


def write_wav16(path: PathLike, samples: np.ndarray) -> None:
    """Write int16 samples as a 16 kHz mono 16-bit WAV, atomically."""
    with atomic_open(path, "wb") as f:
        sf.write(f, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")


def _synth_one(utt: Utterance, path: Path, espeak: str) -> int:
    samples = synthesize(utt, espeak)
    write_wav16(path, samples)
    return int(samples.shape[0])


def synthesize_all(
    utts: Sequence[Utterance], wav_dir: Path, espeak: str, nj: int = 2, progress: bool = True
) -> dict[str, int]:
    """Synthesise ``utts`` into ``wav_dir/<split>/<utt>.wav`` with ``nj`` concurrent espeak-ng
    processes; returns the number of samples of each utterance."""
    from tqdm.auto import tqdm

    nsamples: dict[str, int] = {}
    with (
        ThreadPoolExecutor(max_workers=max(1, nj)) as pool,
        # disable=None: a bar only on a terminal
        tqdm(
            total=len(utts), desc="espeak-ng", unit="utt", disable=None if progress else True
        ) as bar,
    ):
        futures = {
            pool.submit(_synth_one, u, wav_dir / u.split / f"{u.utt}.wav", espeak): u for u in utts
        }
        for fut in as_completed(futures):
            nsamples[futures[fut].utt] = fut.result()
            bar.update()
    return nsamples


# --------------------------------------------------------------------------------------------
# writing the corpus


def _write_split(
    data_dir: DataDir, utts: Sequence[Utterance], wav_dir: Path, nsamples: dict[str, int]
) -> None:
    data_dir.path.mkdir(parents=True, exist_ok=True)
    data_dir.write("wav.scp", {u.utt: str(wav_dir / u.split / f"{u.utt}.wav") for u in utts})
    data_dir.write("text", {u.utt: u.text for u in utts})
    data_dir.write_utt2spk({u.utt: u.spk for u in utts})
    data_dir.write("utt2dur", {u.utt: f"{nsamples[u.utt] / SAMPLE_RATE:.4f}" for u in utts})
    if utts and utts[0].split == "test":
        data_dir.write("utt2voiceset", {u.utt: u.voiceset for u in utts})


def _remove_stale_wavs(wav_dir: Path, split: str, keep: set[str]) -> None:
    d = wav_dir / split
    if not d.is_dir():
        return
    for p in d.glob("*.wav"):
        if p.stem not in keep:
            p.unlink()


def _write_local(
    local: Path,
    plan: CorpusPlan,
    text_paths: Sequence[PathLike] | None,
    num_sentences: int,
    config: dict,
    train_text_paths: Sequence[PathLike] | None = None,
) -> None:
    local.mkdir(parents=True, exist_ok=True)
    split_of: dict[str, set[str]] = {}
    for split, utts in plan.utterances.items():
        for u in utts:
            split_of.setdefault(u.spk, set()).add(split)
    cols = ["spk", "voice", "accent", "variant", "speed", "pitch", "amplitude", "word_gap",
            "voiceset", "splits"]  # fmt: skip
    lines = ["\t".join(cols)]
    for spk in sorted(plan.speakers):
        s = plan.speakers[spk]
        splits = ",".join(x for x in SPLITS if x in split_of.get(spk, set())) or "-"
        row = [s.spk, s.voice, s.accent, s.variant, s.speed, s.pitch, s.amplitude, s.word_gap,
               s.voiceset, splits]  # fmt: skip
        lines.append("\t".join(map(str, row)))
    atomic_write_text(local / "voices.tsv", "\n".join(lines) + "\n")
    for split, utts in plan.utterances.items():
        atomic_write_text(
            local / f"voices_{split}.txt",
            "".join(f"{spk} {plan.speakers[spk].voice}\n" for spk in sorted({u.spk for u in utts})),
        )
        # the exact espeak-ng options of every utterance (text on stdin, from <split>/text)
        atomic_write_text(
            local / f"{split}_espeak.tsv",
            "".join(f"{u.utt}\t{' '.join(u.espeak_args())}\n" for u in sorted(utts, key=_utt_key)),
        )
    atomic_write_text(
        local / "held_out.txt",
        f"accents {' '.join(plan.held_out_accents)}\nvariants {' '.join(plan.held_out_variants)}\n",
    )
    src = text_fingerprint(text_paths)
    default = text_paths is None
    atomic_write_text(
        local / "text_source.txt",
        (
            "Sentences: hand-written natural English sentences bundled with speechdistill "
            "(data_prep/mini_text/, see its README.md); licence CC0-1.0.\n"
            if default
            else "Sentences: user-supplied files (--text).\n"
        )
        + f"distinct sentences: {num_sentences}\n"
        + "".join(f"sha256 {h} {Path(f).name if default else f}\n" for f, h in src.items())
        + "".join(
            f"train-only sha256 {h} {f}\n"
            for f, h in (text_fingerprint(train_text_paths) if train_text_paths else {}).items()
        ),
    )
    atomic_write_text(local / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")


def _utt_key(u: Utterance) -> str:
    return u.utt


def prepare_mini_en(
    out_dir: PathLike,
    *,
    num_train: int = 300,
    num_dev: int = 50,
    num_test: int = 100,
    seed: int = 0,
    nj: int = 2,
    text: Sequence[PathLike] | None = None,
    train_text: Sequence[PathLike] | None = None,
    num_speakers: int = 40,
    num_unseen_speakers: int = 12,
    accents: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    espeak: str | None = None,
    progress: bool = True,
) -> dict[str, DataDir]:
    """Synthesise the corpus into ``out_dir`` and return its data dirs by split name.

    ``accents`` and ``variants`` default to :data:`ACCENTS` and :data:`VARIANTS`."""
    t0 = time.monotonic()
    out = Path(out_dir).resolve()
    exe = find_espeak(espeak)
    accents, variants = installed_voices(
        exe,
        tuple(ACCENTS) if accents is None else accents,
        VARIANTS if variants is None else variants,
    )
    sentences = load_sentences(text)
    log.info("%d distinct sentences from %s", len(sentences), "mini_text" if text is None else text)
    train_sentences = load_sentences(train_text) if train_text else []
    if train_text:
        log.info("%d distinct train-only sentences from %s", len(train_sentences), train_text)
    plan = plan_corpus(
        sentences,
        train_sentences=train_sentences,
        num_train=num_train,
        num_dev=num_dev,
        num_test=num_test,
        seed=seed,
        num_speakers=num_speakers,
        num_unseen_speakers=num_unseen_speakers,
        accents=accents,
        variants=variants,
    )
    n_unique_train = len({sentence_key(u.text) for u in plan.utterances["train"]})
    log.info(
        "plan: train %d clips (%d distinct sentences), dev %d, test %d (%d unseen voices); "
        "%d speakers; held out: accents %s, variants %s",
        len(plan.utterances["train"]), n_unique_train, len(plan.utterances["dev"]),
        len(plan.utterances["test"]),
        sum(u.voiceset == "unseen" for u in plan.utterances["test"]),
        len(plan.speakers), plan.held_out_accents, plan.held_out_variants,
    )  # fmt: skip
    wav_dir = out / "wav"
    all_utts = [u for split in SPLITS for u in plan.utterances[split]]
    nsamples = synthesize_all(all_utts, wav_dir, exe, nj=nj, progress=progress)
    dirs: dict[str, DataDir] = {}
    for split in SPLITS:
        utts = plan.utterances[split]
        _remove_stale_wavs(wav_dir, split, {u.utt for u in utts})
        dirs[split] = DataDir(out / split)
        _write_split(dirs[split], utts, wav_dir, nsamples)
    hours = sum(nsamples.values()) / SAMPLE_RATE / 3600
    config = {
        "corpus": "mini_en",
        "seed": seed,
        "num_train": num_train,
        "num_dev": num_dev,
        "num_test": num_test,
        "num_speakers": num_speakers,
        "num_unseen_speakers": num_unseen_speakers,
        "accents": list(accents),
        "variants": list(variants),
        "text": None if text is None else [str(p) for p in text],
        "num_sentences": len(sentences),
        "train_text": [str(p) for p in train_text] if train_text else None,
        "num_train_only_sentences": len(train_sentences),
        "espeak": espeak_version(exe),
        "sample_rate": SAMPLE_RATE,
        "hours": round(hours, 4),
    }
    _write_local(out / "local", plan, text, len(sentences), config, train_text)
    log.info("wrote %s: %.2f h of audio in %.1f s (nj=%d)", out, hours, time.monotonic() - t0, nj)
    return dirs


# --------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m data_prep.mini_synth",
        description="Synthesise the mini_en corpus (espeak-ng) into Kaldi data dirs "
        "OUT_DIR/{train,dev,test}, 16 kHz WAVs in OUT_DIR/wav and notes in OUT_DIR/local.",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="output directory")
    p.add_argument("--num-train", type=int, default=300, help="training clips (%(default)s)")
    p.add_argument(
        "--num-dev", type=int, default=50, help="dev clips, one a sentence (%(default)s)"
    )
    p.add_argument(
        "--num-test", type=int, default=100, help="test clips, one a sentence (%(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="same seed, same corpus (%(default)s)")
    p.add_argument("--nj", type=int, default=2, help="concurrent espeak-ng processes (%(default)s)")
    p.add_argument(
        "--num-speakers", type=int, default=40, help="training (seen) speakers (%(default)s)"
    )
    p.add_argument(
        "--num-unseen-speakers", type=int, default=12, help="test-only speakers (%(default)s)"
    )
    p.add_argument(
        "--text",
        nargs="+",
        default=None,
        metavar="PATH",
        help="sentence files, or dirs of *.txt files, one sentence a line "
        "(default: the bundled data_prep/mini_text)",
    )
    p.add_argument(
        "--train-text",
        nargs="+",
        default=None,
        metavar="PATH",
        help="train-only sentence files or dirs, used after train's own sentences "
        f"(bundled: {TRAIN_TEXT_DIR.parent.name}/{TRAIN_TEXT_DIR.name}; default: none)",
    )
    p.add_argument(
        "--accents",
        type=_comma_list,
        default=None,
        help=f"espeak-ng accents, comma-separated (default: {','.join(ACCENTS)}; "
        f"also available: {','.join(HARD_ACCENTS)})",
    )
    p.add_argument(
        "--variants",
        type=_comma_list,
        default=None,
        help="espeak-ng voice variants, comma-separated (default: a curated list of "
        f"{len(VARIANTS)})",
    )
    p.add_argument("--espeak", default=None, help="espeak-ng executable (default: from PATH)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    p.add_argument("-q", "--quiet", action="count", default=0, help="less logging")
    return p


def _comma_list(value: str) -> list[str]:
    return [v for v in (x.strip() for x in value.split(",")) if v]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        prepare_mini_en(
            args.out_dir,
            num_train=args.num_train,
            num_dev=args.num_dev,
            num_test=args.num_test,
            seed=args.seed,
            nj=args.nj,
            text=args.text,
            train_text=args.train_text,
            num_speakers=args.num_speakers,
            num_unseen_speakers=args.num_unseen_speakers,
            accents=args.accents,
            variants=args.variants,
            espeak=args.espeak,
            progress=not args.no_progress,
        )
    except (OSError, ValueError, RuntimeError) as e:
        if args.verbose:
            raise
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
