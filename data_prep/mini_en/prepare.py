"""``prepare_mini_en``: plan, synthesise and write the mini_en corpus as Kaldi data dirs.

Writes ``OUT_DIR/{train,dev,test}`` (``wav.scp`` with absolute paths to 16 kHz mono 16-bit WAVs
under ``OUT_DIR/wav/<split>/``, ``text``, ``utt2spk``, ``spk2utt``, ``utt2dur``; ``test`` also has
``utt2voiceset``: ``seen`` or ``unseen``) and ``OUT_DIR/local/`` (the speakers and their
espeak-ng settings, the synthesis parameters of every utterance, the text source, the
configuration).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from data_prep.mini_en.plan import SPLITS, CorpusPlan, Utterance, plan_corpus
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
    """Synthesise the corpus into ``out_dir`` and return its data dirs by split name.

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
