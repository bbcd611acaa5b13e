"""Prepare Mozilla Common Voice (any language) as Kaldi data dirs.

A release, once extracted, holds one folder per language (``cv-corpus-<version>-<date>/<lang>/``)::

    train.tsv  dev.tsv  test.tsv                the official splits (speakers disjoint)
    validated.tsv  invalidated.tsv  other.tsv   all validated / rejected / unreviewed clips
    clip_durations.tsv                          clip -> duration[ms] (releases from 2022 on)
    clips/common_voice_<lang>_<number>.mp3      the audio

The split files are tab-separated with a header, ``client_id path sentence up_votes
down_votes age gender accents variant locale segment`` (newer releases add ``sentence_id`` and
``sentence_domain``; only ``client_id``, ``path`` and ``sentence`` are needed). Fields are not
quoted: a ``"`` inside a sentence is part of it.

``CORPUS`` may be the language folder itself, the release folder holding ``<lang>/``, or a folder
holding one release (``CORPUS/cv-corpus-*/<lang>/``); give ``--language`` for the latter two.

Output, one data dir per split (``OUT/train``, ``OUT/dev``, ``OUT/test``; other TSV names work
too): ``wav.scp`` (absolute paths of the mp3 files; ``speechdistill.audio`` decodes MP3 through
libsndfile >= 1.1), ``text`` (the sentence, whitespace collapsed, non-printable characters
such as zero-width spaces removed), ``utt2spk``/``spk2utt`` and ``utt2dur``. No ``utt2reco``:
every clip is a recording of its own (one sentence read alone), so there are no recordings to
pack utterances from; ``speechdistill data pack`` falls back to the speaker.

Speakers: the ``client_id`` (a 128-hex-digit hash) cut to its first ``--speaker-chars``
characters (default 16), made longer when two different ``client_id`` s would otherwise share
a speaker id; the length is decided once over all the splits prepared together, so it is the
same in each. Utterance ids are ``<speaker>-<clip name without extension>``.

Durations come from ``clip_durations.tsv`` when it lists the clip (the file must still exist and
not be empty), otherwise from the audio header. Rows left out are counted and listed in the
log: malformed rows (field count differs from the header's), no ``client_id`` or ``path``, an
empty sentence, audio missing / empty / unreadable, and a clip listed twice in one split.

Run ``python -m data_prep.common_voice CORPUS OUT [--language pt] [--splits train dev test]``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tqdm import tqdm

from data_prep.common import (
    PrepResult,
    Skipped,
    clean_transcript,
    finish_data_dir,
    probe_audio,
    speaker_key,
)
from speechdistill.utils import PathLike, setup_logging

log = logging.getLogger("data_prep.common_voice")

SPLITS = ("train", "dev", "test")
KNOWN_TSVS = ("train", "dev", "test", "validated", "invalidated", "other")
REQUIRED_COLUMNS = ("client_id", "path", "sentence")
DEFAULT_SPEAKER_CHARS = 16


def find_language_dir(corpus: PathLike, language: str | None = None) -> Path:
    """The folder holding ``train.tsv`` and ``clips/`` (see the module doc)."""
    corpus = Path(corpus)
    if (corpus / "clips").is_dir() or any((corpus / f"{s}.tsv").is_file() for s in KNOWN_TSVS):
        return corpus
    if language:
        if (corpus / language).is_dir():
            return corpus / language
        found = sorted(p for p in corpus.glob(f"*/{language}") if p.is_dir())
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ValueError(
                f"{corpus}: several releases hold {language}/ ({', '.join(str(p) for p in found)}); "
                "pass the one to use"
            )
    hint = "" if language else " (pass --language if it holds language folders)"
    raise FileNotFoundError(f"{corpus}: no Common Voice language folder found{hint}")


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a Common Voice TSV (tab-separated, no quoting)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise ValueError(f"{path}: empty file")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing} in the header {header}")
    return header, [r for r in rows[1:] if any(c.strip() for c in r)]


def read_clip_durations(lang_dir: Path) -> dict[str, float]:
    """``clip_durations.tsv`` as clip name -> seconds (empty when the release has none)."""
    path = lang_dir / "clip_durations.tsv"
    if not path.is_file():
        return {}
    header, rows = [], []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, [])
        rows = list(reader)
    if len(header) < 2:
        log.warning("%s: unexpected header %s; durations come from the audio", path, header)
        return {}
    out = {}
    for r in rows:
        try:
            ms = float(r[1])
        except (IndexError, ValueError):
            continue
        if ms > 0:
            out[r[0].strip()] = ms / 1000
    log.info("%s: %d clip durations", path, len(out))
    return out


def speaker_ids(client_ids: Iterable[str], chars: int = DEFAULT_SPEAKER_CHARS) -> dict[str, str]:
    """client_id -> its shortest prefix of at least ``chars`` characters unique among them all."""
    if chars < 1:
        raise ValueError("speaker chars must be at least 1")
    keys = {c: speaker_key(c) for c in set(client_ids)}
    distinct = set(keys.values())
    n = chars
    while len({k[:n] for k in distinct}) < len(distinct):
        n += 1
    if n > chars:
        log.info("speaker ids use %d characters of client_id (%d would collide)", n, chars)
    return {c: k[:n] for c, k in keys.items()}


def prepare_split(
    lang_dir: Path,
    header: list[str],
    rows: Sequence[list[str]],
    out_dir: PathLike,
    speakers: Mapping[str, str],
    durations: Mapping[str, float],
    *,
    name: str = "",
) -> PrepResult:
    """Write the data dir of one TSV's rows (see the module doc)."""
    col = {c: header.index(c) for c in REQUIRED_COLUMNS}
    clips = lang_dir / "clips"
    skipped = Skipped(log)
    wav_scp: dict[str, str] = {}
    text: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    utt2dur: dict[str, float] = {}
    for n, r in enumerate(tqdm(rows, desc=f"prepare {name}", unit="clip", mininterval=2.0), 1):
        if len(r) != len(header):
            skipped.add("malformed row (field count differs from the header)", f"row {n}")
            continue
        client, clip = r[col["client_id"]].strip(), r[col["path"]].strip()
        spk = speakers.get(client, "")
        if not clip or not spk:
            skipped.add("no client_id or path", f"row {n}")
            continue
        sentence = clean_transcript(r[col["sentence"]])
        if not sentence:
            skipped.add("empty sentence", clip)
            continue
        path = clips / clip
        if not path.is_file() and (clips / f"{clip}.mp3").is_file():  # early releases
            path = clips / f"{clip}.mp3"
        known = durations.get(clip) or durations.get(path.name)
        if known is not None:
            duration, reason = known, None
            if not path.is_file():
                duration, reason = None, "missing audio"
            elif path.stat().st_size == 0:
                duration, reason = None, "empty audio"
        else:
            duration, reason = probe_audio(path)
        if duration is None:
            skipped.add(reason or "missing audio", clip)
            continue
        stem = clip.rsplit("/", 1)[-1]
        stem = stem[: -len(".mp3")] if stem.lower().endswith(".mp3") else stem.rsplit(".", 1)[0]
        utt = f"{spk}-{speaker_key(stem)}"
        if utt in wav_scp:
            skipped.add("clip listed twice", clip)
            continue
        wav_scp[utt] = os.path.abspath(path)
        text[utt] = sentence
        utt2spk[utt] = spk
        utt2dur[utt] = duration
    return finish_data_dir(
        out_dir,
        name=name,
        skipped=skipped,
        wav_scp=wav_scp,
        utt2spk=utt2spk,
        text=text,
        durations=utt2dur,
        logger=log,
    )


def prepare_common_voice(
    corpus: PathLike,
    out_root: PathLike,
    *,
    language: str | None = None,
    splits: Sequence[str] = SPLITS,
    speaker_chars: int = DEFAULT_SPEAKER_CHARS,
) -> dict[str, PrepResult]:
    """Write ``out_root/<split>`` for each split TSV; see the module doc."""
    lang_dir = find_language_dir(Path(corpus).resolve(), language)
    log.info("Common Voice folder: %s", lang_dir)
    tables = {}
    for split in splits:
        path = lang_dir / f"{split}.tsv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        tables[split] = read_tsv(path)
    clients = []
    for header, rows in tables.values():
        i = header.index("client_id")
        clients += [r[i].strip() for r in rows if len(r) == len(header) and r[i].strip()]
    speakers = speaker_ids(clients, speaker_chars)
    durations = read_clip_durations(lang_dir)
    return {
        split: prepare_split(
            lang_dir, header, rows, Path(out_root) / split, speakers, durations, name=split
        )
        for split, (header, rows) in tables.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m data_prep.common_voice",
        description="Mozilla Common Voice (a language folder: <split>.tsv + clips/*.mp3) -> "
        "Kaldi data dirs OUT/<split>.",
    )
    p.add_argument("corpus", metavar="CORPUS", help="the language folder, or a folder holding it")
    p.add_argument("out", metavar="OUT", help="folder for the data dirs (OUT/train, …)")
    p.add_argument("--language", help="language folder to use under CORPUS (pt, fr, zh-CN, …)")
    p.add_argument(
        "--splits",
        nargs="+",
        default=list(SPLITS),
        help="TSV files to prepare, by name (default: train dev test; commas also separate)",
    )
    p.add_argument(
        "--speaker-chars",
        type=int,
        default=DEFAULT_SPEAKER_CHARS,
        help="characters of client_id kept as speaker id (more when needed to stay unique)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    p.add_argument("-q", "--quiet", action="count", default=0, help="less logging")
    args = p.parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    splits = [s for v in args.splits for s in v.replace(",", " ").split()]
    try:
        prepare_common_voice(
            args.corpus,
            args.out,
            language=args.language,
            splits=splits,
            speaker_chars=args.speaker_chars,
        )
    except (OSError, ValueError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
