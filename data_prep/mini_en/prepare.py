"""``prepare_mini_en``: plan, synthesise and write the mini_en corpus as Kaldi data dirs.

Writes ``OUT_DIR/{train,dev,test}``: ``wav.scp`` maps recording ids to absolute paths of 16 kHz
mono 16-bit WAVs under ``OUT_DIR/wav/<split>/`` (one a recording), ``segments`` cuts them into the
utterances at the times known from synthesis (exact to the sample), ``reco2dur``, ``text``,
``utt2spk``, ``spk2utt``, ``utt2dur``; ``test`` also has ``utt2voiceset`` (``seen`` or
``unseen``). ``OUT_DIR/test_long`` holds the test recordings whole, one utterance each (its id is
the recording's, ``wav.scp`` the recording WAV, no ``segments``; ``text`` its sentences joined in
order; ``utt2spk``, ``utt2dur``, ``utt2voiceset``), so that short-form (``test``) and long-form
(``test_long``) scores are of the same audio and words. ``OUT_DIR/local/`` records the speakers
and their espeak-ng settings, the synthesis parameters of every utterance, the recordings and
their pauses, the text source and the configuration.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from data_prep.mini_en.plan import SPLITS, CorpusPlan, Recording, Utterance, plan_corpus
from data_prep.mini_en.synthesis import SAMPLE_RATE, espeak_version, find_espeak, synthesize_all
from data_prep.mini_en.text import (
    load_sentences,
    resolve_train_text,
    sentence_key,
    text_fingerprint,
)
from data_prep.mini_en.voices import ACCENTS, VARIANTS, installed_voices
from speechdistill.datadir import DataDir
from speechdistill.utils import PathLike, atomic_write_text

log = logging.getLogger(__name__)


#: The data dir of the test recordings whole.
LONG_TEST = "test_long"


def _seconds(samples: int) -> str:
    """A sample count at 16 kHz as exact seconds (at most 7 decimals)."""
    return f"{samples / SAMPLE_RATE:.7f}".rstrip("0").rstrip(".")


def _wav_scp(recos: Sequence[Recording], wav_dir: Path) -> dict[str, str]:
    return {r.reco: str(wav_dir / r.split / f"{r.reco}.wav") for r in recos}


def _write_split(
    data_dir: DataDir,
    recos: Sequence[Recording],
    wav_dir: Path,
    reco_samples: dict[str, int],
    spans: dict[str, tuple[int, int]],
) -> None:
    utts = [u for r in recos for u in r.utts]
    data_dir.path.mkdir(parents=True, exist_ok=True)
    data_dir.write("wav.scp", _wav_scp(recos, wav_dir))
    data_dir.write(
        "segments",
        {u.utt: f"{u.reco} {_seconds(spans[u.utt][0])} {_seconds(spans[u.utt][1])}" for u in utts},
    )
    data_dir.write("reco2dur", {r.reco: _seconds(reco_samples[r.reco]) for r in recos})
    data_dir.write("text", {u.utt: u.text for u in utts})
    data_dir.write_utt2spk({u.utt: u.spk for u in utts})
    data_dir.write("utt2dur", {u.utt: _seconds(spans[u.utt][1] - spans[u.utt][0]) for u in utts})
    if utts and utts[0].split == "test":
        data_dir.write("utt2voiceset", {u.utt: u.voiceset for u in utts})


def _write_long(
    data_dir: DataDir, recos: Sequence[Recording], wav_dir: Path, reco_samples: dict[str, int]
) -> None:
    """The recordings whole: one utterance each, keyed by the (speaker-prefixed) recording id."""
    data_dir.path.mkdir(parents=True, exist_ok=True)
    data_dir.write("wav.scp", _wav_scp(recos, wav_dir))
    data_dir.write("text", {r.reco: " ".join(u.text for u in r.utts) for r in recos})
    data_dir.write_utt2spk({r.reco: r.spk for r in recos})
    data_dir.write("utt2dur", {r.reco: _seconds(reco_samples[r.reco]) for r in recos})
    data_dir.write("utt2voiceset", {r.reco: r.voiceset for r in recos})


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
        # the recordings: utterances in order, pause after each but the last (milliseconds)
        atomic_write_text(
            local / f"{split}_recordings.tsv",
            "".join(
                f"{r.reco}\t{' '.join(u.utt for u in r.utts)}\t{' '.join(map(str, r.pauses_ms))}\n"
                for r in sorted(plan.recordings[split], key=lambda r: r.reco)
            ),
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
            "(data_prep/mini_en/sentences/, see its README.md); licence CC0-1.0.\n"
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
    train_text: PathLike | Sequence[PathLike] | None = None,
    num_speakers: int = 40,
    num_unseen_speakers: int = 12,
    accents: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    espeak: str | None = None,
    progress: bool = True,
) -> dict[str, DataDir]:
    """Synthesise the corpus into ``out_dir``; returns its data dirs by name (the splits and
    ``test_long``).

    ``text`` and ``train_text`` are sentence files or directories of ``*.txt`` files; ``text``
    defaults to the bundled ``sentences/``, and ``"bundled"`` in ``train_text`` is the bundled
    ``sentences_train/`` (recorded as that path in ``local/config.json``). ``accents`` and
    ``variants`` default to :data:`ACCENTS` and :data:`VARIANTS`."""
    t0 = time.monotonic()
    train_text = resolve_train_text(train_text)
    out = Path(out_dir).resolve()
    exe = find_espeak(espeak)
    accents, variants = installed_voices(
        exe,
        tuple(ACCENTS) if accents is None else accents,
        VARIANTS if variants is None else variants,
    )
    sentences = load_sentences(text)
    log.info(
        "%d distinct sentences from %s",
        len(sentences),
        "the bundled text" if text is None else text,
    )
    train_sentences = load_sentences(train_text) if train_text else []
    if train_text:
        log.info(
            "%d distinct train-only sentences from %s",
            len(train_sentences),
            [str(p) for p in train_text],
        )
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
        "plan: train %d clips (%d distinct sentences), dev %d, test %d (%d unseen voices) in "
        "%d/%d/%d recordings; %d speakers; held out: accents %s, variants %s",
        len(plan.utterances["train"]), n_unique_train, len(plan.utterances["dev"]),
        len(plan.utterances["test"]),
        sum(u.voiceset == "unseen" for u in plan.utterances["test"]),
        *(len(plan.recordings[split]) for split in SPLITS), len(plan.speakers), plan.held_out_accents, plan.held_out_variants,
    )  # fmt: skip
    wav_dir = out / "wav"
    recordings = [r for split in SPLITS for r in plan.recordings[split]]
    reco_samples, spans = synthesize_all(recordings, wav_dir, exe, nj=nj, progress=progress)
    dirs: dict[str, DataDir] = {}
    for split in SPLITS:
        recos = plan.recordings[split]
        _remove_stale_wavs(wav_dir, split, {r.reco for r in recos})
        dirs[split] = DataDir(out / split)
        _write_split(dirs[split], recos, wav_dir, reco_samples, spans)
    dirs[LONG_TEST] = DataDir(out / LONG_TEST)
    _write_long(dirs[LONG_TEST], plan.recordings["test"], wav_dir, reco_samples)
    long_s = [reco_samples[r.reco] / SAMPLE_RATE for r in plan.recordings["test"]]
    if long_s:
        log.info(
            "%s: %d recordings of %.1f-%.1f s (%.1f s on average)",
            LONG_TEST, len(long_s), min(long_s), max(long_s), sum(long_s) / len(long_s),
        )  # fmt: skip
    hours = sum(reco_samples.values()) / SAMPLE_RATE / 3600
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
