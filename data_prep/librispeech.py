"""Prepare LibriSpeech as Kaldi data dirs.

LibriSpeech (Panayotov et al. 2015, openslr.org/12, CC BY 4.0) comes as one archive per part,
all extracting into one ``LibriSpeech/`` folder::

    LibriSpeech/SPEAKERS.TXT                     ";ID |SEX| SUBSET |MINUTES| NAME" table
    LibriSpeech/<part>/<reader>/<chapter>/<reader>-<chapter>-<n>.flac
    LibriSpeech/<part>/<reader>/<chapter>/<reader>-<chapter>.trans.txt   "<utt-id> TRANSCRIPT"

with the parts ``train-clean-100``, ``train-clean-360``, ``train-other-500``, ``dev-clean``,
``dev-other``, ``test-clean`` and ``test-other``. ``ROOT`` is the ``LibriSpeech`` folder or the
folder holding it.

Output, one data dir per part named with ``_`` for ``-`` (``OUT/dev_clean`` …): ``wav.scp``
(absolute paths of the FLAC files), ``text`` (the corpus' upper-case transcripts; the
``english`` normaliser lower-cases when scoring), ``utt2spk``/``spk2utt``, ``utt2dur`` (FLAC
headers), ``utt2reco`` (the recording: the chapter, ``<reader>-<chapter>``, whose reading the
utterances were cut from in id order) and ``spk2gender`` (``m``/``f`` from ``SPEAKERS.TXT``,
written when it lists every speaker). Utterance ids are the corpus' own,
``<reader>-<chapter>-<n>``.

Speakers (``--speaker``): ``reader`` (default) = the reader id, so that speaker-level scoring and
per-speaker splits are about people; ``chapter`` = ``<reader>-<chapter>``, the "speaker" of
Kaldi's and ESPnet's LibriSpeech recipes (one recording session, which is what per-speaker
normalisation wants). Either way each utterance id starts with its speaker id. A reader's
utterances sort chapter by chapter in reading order, so the previous utterance of a speaker
(previous-context conditioning in training) is the previous one of the chapter, except at
the start of a chapter with ``reader`` speakers.

``--combine NAME=PART,PART,…`` also writes ``OUT/NAME``, the union of the parts' data dirs
(``train_960=train-clean-100,train-clean-360,train-other-500``).

Left out, with counts and lists in the log: transcript lines whose FLAC is missing, unreadable or
empty; empty transcripts; ids that are not ``<reader>-<chapter>-<n>`` of their folder; FLAC
files that no transcript line names.

Run ``python -m data_prep.librispeech ROOT OUT [--parts dev-clean test-clean …]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tqdm import tqdm

from data_prep.common import PrepResult, Skipped, clean_transcript, finish_data_dir, probe_audio
from speechdistill.datadir import combine, validate
from speechdistill.utils import PathLike, setup_logging

log = logging.getLogger("data_prep.librispeech")

PARTS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)
DEFAULT_PARTS = ("train-clean-100", "dev-clean", "dev-other", "test-clean", "test-other")
SPEAKER_MODES = ("reader", "chapter")


def find_root(path: PathLike) -> Path:
    """The ``LibriSpeech`` folder: ``path`` itself or ``path/LibriSpeech``."""
    path = Path(path)
    if (path / "LibriSpeech").is_dir():
        return path / "LibriSpeech"
    if path.is_dir():
        return path
    raise FileNotFoundError(f"{path}: no such folder")


def data_name(part: str) -> str:
    """The data dir of a part: ``dev-clean`` -> ``dev_clean``."""
    return part.replace("-", "_")


def read_genders(root: Path) -> dict[str, str]:
    """Reader id -> ``m``/``f`` from ``SPEAKERS.TXT`` (empty when it is missing)."""
    path = root / "SPEAKERS.TXT"
    if not path.is_file():
        log.info("%s: no SPEAKERS.TXT: no spk2gender", root)
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(";") or "|" not in line:
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) >= 2 and fields[0] and fields[1].lower() in ("m", "f"):
            out[fields[0]] = fields[1].lower()
    return out


def prepare_part(
    root: Path,
    part: str,
    out_dir: PathLike,
    *,
    speaker: str = "reader",
    genders: Mapping[str, str] | None = None,
) -> PrepResult:
    """Write the data dir of one part (see the module doc)."""
    part_dir = root / part
    if not part_dir.is_dir():
        raise FileNotFoundError(f"{part_dir}: no such folder (is {part} downloaded?)")
    skipped = Skipped(log, noun="utterance")
    wav_scp: dict[str, str] = {}
    text: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    utt2dur: dict[str, float] = {}
    utt2reco: dict[str, str] = {}
    chapters = sorted(p for p in part_dir.glob("*/*") if p.is_dir())
    for chapter_dir in tqdm(chapters, desc=f"prepare {part}", unit="chapter", mininterval=2.0):
        reader, chapter = chapter_dir.parent.name, chapter_dir.name
        spk = reader if speaker == "reader" else f"{reader}-{chapter}"
        id_pattern = re.compile(rf"{re.escape(reader)}-{re.escape(chapter)}-\d+")
        trans = chapter_dir / f"{reader}-{chapter}.trans.txt"
        listed: set[str] = set()
        lines = trans.read_text(encoding="utf-8").splitlines() if trans.is_file() else []
        for line in lines:
            if not line.strip():
                continue
            utt, _, words = line.strip().partition(" ")
            listed.add(utt)
            where = f"{part}/{reader}/{chapter}/{utt}"
            if not id_pattern.fullmatch(utt):
                skipped.add("id not <reader>-<chapter>-<n> of its folder", where)
                continue
            transcript = clean_transcript(words)
            if not transcript:
                skipped.add("empty transcript", where)
                continue
            if utt in wav_scp:
                skipped.add("listed twice", where)
                continue
            flac = chapter_dir / f"{utt}.flac"
            duration, reason = probe_audio(flac)
            if duration is None:
                skipped.add(reason or "missing audio", where)
                continue
            wav_scp[utt] = os.path.abspath(flac)
            text[utt] = transcript
            utt2spk[utt] = spk
            utt2dur[utt] = duration
            utt2reco[utt] = f"{reader}-{chapter}"
        for flac in sorted(chapter_dir.glob("*.flac")):
            if flac.stem not in listed:
                skipped.add("no transcript", f"{part}/{reader}/{chapter}/{flac.name}")
    spk2gender = None
    if genders and wav_scp:
        speakers = sorted(set(utt2spk.values()))
        spk2gender = {s: genders.get(s.split("-")[0], "") for s in speakers}
        unknown = [s for s, g in spk2gender.items() if not g]
        if unknown:
            log.warning("%s: SPEAKERS.TXT lacks %s: no spk2gender", part, ", ".join(unknown[:10]))
            spk2gender = None
    return finish_data_dir(
        out_dir,
        name=part,
        skipped=skipped,
        wav_scp=wav_scp,
        utt2spk=utt2spk,
        text=text,
        durations=utt2dur,
        extra={"utt2reco": utt2reco},
        spk2gender=spk2gender,
        logger=log,
    )


def parse_combine(spec: str) -> tuple[str, list[str]]:
    """``NAME=PART,PART`` -> (NAME, [PART, PART])."""
    name, sep, parts = spec.partition("=")
    part_list = [p for p in re.split(r"[,\s]+", parts) if p]
    if not sep or not name.strip() or not part_list or "/" in name:
        raise ValueError(f"--combine {spec!r}: expected NAME=PART,PART,…")
    return name.strip(), part_list


def prepare_librispeech(
    root: PathLike,
    out_root: PathLike,
    *,
    parts: Sequence[str] = DEFAULT_PARTS,
    speaker: str = "reader",
    combine_sets: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, PrepResult]:
    """Write ``out_root/<part_>`` for each part (and the combined sets); see the module doc."""
    if speaker not in SPEAKER_MODES:
        raise ValueError(f"unknown speaker mode {speaker!r} (one of {', '.join(SPEAKER_MODES)})")
    combine_sets = dict(combine_sets or {})
    needed = list(dict.fromkeys([*parts, *(p for ps in combine_sets.values() for p in ps)]))
    root = find_root(Path(root).resolve())
    genders = read_genders(root)
    out_root = Path(out_root)
    results = {
        part: prepare_part(root, part, out_root / data_name(part), speaker=speaker, genders=genders)
        for part in needed
    }
    for name, members in combine_sets.items():
        dst = out_root / name
        combine(dst, [out_root / data_name(p) for p in members])
        validate(dst)
        log.info("%s: %s combined", dst, " + ".join(members))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m data_prep.librispeech",
        description="LibriSpeech (LibriSpeech/<part>/<reader>/<chapter>/*.flac + *.trans.txt) -> "
        "Kaldi data dirs OUT/<part with _ for ->.",
    )
    p.add_argument("root", metavar="ROOT", help="the LibriSpeech folder, or the folder holding it")
    p.add_argument("out", metavar="OUT", help="folder for the data dirs (OUT/dev_clean, …)")
    p.add_argument(
        "--parts",
        nargs="+",
        default=list(DEFAULT_PARTS),
        help=f"parts to prepare (default: {' '.join(DEFAULT_PARTS)}; commas also separate)",
    )
    p.add_argument(
        "--speaker",
        choices=SPEAKER_MODES,
        default="reader",
        help="reader: the reader id (default); chapter: <reader>-<chapter>, as Kaldi's recipe",
    )
    p.add_argument(
        "--combine",
        action="append",
        default=[],
        metavar="NAME=PART,PART",
        help="also write OUT/NAME, the union of these parts (repeatable)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    p.add_argument("-q", "--quiet", action="count", default=0, help="less logging")
    args = p.parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    parts = [s for v in args.parts for s in v.replace(",", " ").split()]
    try:
        combine_sets = dict(parse_combine(c) for c in args.combine)
    except ValueError as e:
        p.error(str(e))
    unknown = [
        x for x in [*parts, *(q for ps in combine_sets.values() for q in ps)] if x not in PARTS
    ]
    if unknown:
        p.error(f"unknown part(s) {unknown} (choose from {', '.join(PARTS)})")
    try:
        prepare_librispeech(
            args.root, args.out, parts=parts, speaker=args.speaker, combine_sets=combine_sets
        )
    except (OSError, ValueError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
