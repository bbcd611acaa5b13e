"""Prepare a Kaldi data dir from any folder of audio files.

Sources (``SRC``):

- a folder, searched recursively for audio (``wav flac ogg oga opus mp3 aif aiff au``); each
  file's transcript is the ``.txt`` file beside it with the same stem. When no file has one, the
  data dir is audio-only (no ``text``);
- a CSV or TSV file of ``path,text[,speaker]``, paths relative to the CSV's folder. A first row
  naming a column ``path``/``file``/``audio``… (and no audio file) is a header, and then columns
  are found by name (``text``/``transcript``/``sentence``, ``speaker``/``client_id``…). An empty
  text cell is an empty transcript; a row without one has no transcript.

Speakers: the CSV's speaker column, else the parent folder's name with ``--speaker-from-dir``,
else one speaker per file. Utterance ids are ``<speaker>-<name>``, or ``<name>`` alone when each
file is its own speaker; ``<name>`` is the path relative to the folder (or CSV) without its
extension, ``/`` and whitespace -> ``_`` (with ``--speaker-from-dir``, the file's stem).

Bad input: missing, unreadable or empty audio and (when others have transcripts) audio without a
transcript are skipped, with their count and list logged; duplicate utterance ids are an error
(which file is meant is ambiguous); nothing usable is an error. Writes ``wav.scp`` (absolute
paths), ``utt2spk``, ``spk2utt``, ``text`` and ``utt2dur`` (from the headers).

Run ``python -m data_prep.folder SRC OUT``, or :func:`prepare_folder` from Python.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from speechdistill.audio import format_seconds
from speechdistill.datadir import DataDir

log = logging.getLogger("data_prep.folder")

AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "oga", "opus", "mp3", "aif", "aiff", "au")
_PATH_NAMES = {"path", "file", "filename", "file_name", "filepath", "audio", "audio_path", "wav"}
_TEXT_NAMES = {"text", "transcript", "transcription", "sentence", "normalized_text"}
_SPK_NAMES = {"speaker", "speaker_id", "spk", "spk_id", "client_id"}
_MAX_LISTED = 20
_BAD_KEY_CHARS = re.compile(r"[\s/\\]+")


@dataclass
class Entry:
    """One audio file with its optional transcript and speaker."""

    path: Path
    name: str
    text: str | None = None
    speaker: str | None = None


@dataclass
class Skipped:
    """Files left out, by reason."""

    reasons: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, what: str) -> None:
        self.reasons.setdefault(reason, []).append(what)

    def log(self) -> None:
        for reason, items in self.reasons.items():
            shown = ", ".join(items[:_MAX_LISTED]) + (" …" if len(items) > _MAX_LISTED else "")
            log.warning("skipped %d file(s) (%s): %s", len(items), reason, shown)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.reasons.values())


def clean_key(value: str) -> str:
    """A Kaldi key: whitespace and path separators become ``_``."""
    return _BAD_KEY_CHARS.sub("_", value.strip())


def _is_audio(path: Path) -> bool:
    return path.suffix.lower().lstrip(".") in AUDIO_EXTENSIONS and not path.name.startswith(".")


def _read_transcript(path: Path) -> str:
    return " ".join(path.read_text(encoding="utf-8-sig").split())


def scan_folder(root: Path, skipped: Skipped, *, use_text: bool = True) -> list[Entry]:
    """Audio files under ``root`` (sorted) with the transcripts beside them."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and _is_audio(p))
    entries = []
    for p in files:
        rel = p.relative_to(root).with_suffix("")
        entries.append(Entry(p, "_".join(rel.parts), speaker=None))
    txts = [e.path.with_suffix(".txt") for e in entries] if use_text else []
    if not any(t.is_file() for t in txts):
        if use_text:
            log.info("no transcripts (.txt beside the audio) under %s: audio only", root)
        return entries
    kept = []
    for e, txt in zip(entries, txts, strict=True):
        if not txt.is_file():
            skipped.add("no transcript", str(e.path))
            continue
        try:
            e.text = _read_transcript(txt)
        except (OSError, UnicodeDecodeError) as err:
            skipped.add("unreadable transcript", f"{txt} ({err})")
            continue
        kept.append(e)
    return kept


def read_table(table: Path, *, use_text: bool = True) -> list[Entry]:
    """Entries from a CSV/TSV of ``path,text[,speaker]`` (paths relative to its folder)."""
    with open(table, encoding="utf-8-sig", newline="") as f:
        content = f.read()
    first = content.split("\n", 1)[0]
    delim = "\t" if table.suffix.lower() == ".tsv" or "\t" in first else ","
    rows = [
        r for r in csv.reader(content.splitlines(), delimiter=delim) if any(c.strip() for c in r)
    ]
    if not rows:
        raise ValueError(f"{table}: no rows")
    ipath, itext, ispk = 0, 1, 2
    header = [c.strip().lower() for c in rows[0]]
    if any(h in _PATH_NAMES for h in header) and not any(_is_audio(Path(h)) for h in header):
        ipath = next(i for i, h in enumerate(header) if h in _PATH_NAMES)
        itext = next((i for i, h in enumerate(header) if h in _TEXT_NAMES), -1)
        ispk = next((i for i, h in enumerate(header) if h in _SPK_NAMES), -1)
        rows = rows[1:]
        start = 2
    else:
        start = 1
    entries = []
    for lineno, row in enumerate(rows, start):
        if len(row) <= ipath or not row[ipath].strip():
            raise ValueError(f"{table}:{lineno}: no path in {row!r}")
        rel = Path(row[ipath].strip())
        path = rel if rel.is_absolute() else table.parent / rel
        text = row[itext] if use_text and 0 <= itext < len(row) else None
        spk = row[ispk].strip() if 0 <= ispk < len(row) and row[ispk].strip() else None
        name = "_".join(rel.with_suffix("").parts) if not rel.is_absolute() else rel.stem
        entries.append(
            Entry(
                path, name, text=" ".join(text.split()) if text is not None else None, speaker=spk
            )
        )
    return entries


def _utt_and_speaker(e: Entry, speaker_from_dir: bool) -> tuple[str, str]:
    spk = e.speaker
    if spk is None and speaker_from_dir:
        spk = e.path.parent.name
    if spk is None:
        utt = clean_key(e.name)
        return utt, utt
    spk = clean_key(spk)
    name = clean_key(e.path.stem if speaker_from_dir and e.speaker is None else e.name)
    utt = name if name == spk or name.startswith(spk + "-") else f"{spk}-{name}"
    return utt, spk


def prepare_folder(
    src: Path | str,
    out_dir: Path | str,
    *,
    speaker_from_dir: bool = False,
    use_text: bool = True,
) -> DataDir:
    """Write the data dir for ``src`` (a folder or a CSV/TSV) to ``out_dir``; see the module doc."""
    src = Path(src).resolve()
    skipped = Skipped()
    if src.is_dir():
        entries = scan_folder(src, skipped, use_text=use_text)
    elif src.is_file():
        entries = read_table(src, use_text=use_text)
    else:
        raise FileNotFoundError(f"{src}: no such folder or CSV/TSV file")

    wav_scp: dict[str, str] = {}
    text: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    utt2dur: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for e in tqdm(entries, desc=f"prepare {src.name}", unit="file"):
        utt, spk = _utt_and_speaker(e, speaker_from_dir)
        if not utt:
            raise ValueError(f"{e.path}: empty utterance id")
        if utt in origin:
            raise ValueError(
                f"duplicate utterance id {utt!r} for {origin[utt]} and {e.path}; "
                "rename one of them (or prepare without --speaker-from-dir)"
            )
        origin[utt] = e.path
        try:
            info = sf.info(str(e.path))
        except (sf.LibsndfileError, RuntimeError, OSError) as err:
            reason = "missing" if not e.path.exists() else "unreadable audio"
            skipped.add(reason, f"{e.path}" + ("" if reason == "missing" else f" ({err})"))
            continue
        if info.frames == 0:
            skipped.add("empty audio", str(e.path))
            continue
        wav_scp[utt] = os.path.abspath(e.path)
        utt2spk[utt] = spk
        utt2dur[utt] = format_seconds(info.frames / info.samplerate)
        if e.text is not None:
            text[utt] = e.text
    if text and len(text) != len(wav_scp):  # CSV rows without a text cell
        for utt in sorted(set(wav_scp) - set(text)):
            skipped.add("no transcript", str(origin[utt]))
            del wav_scp[utt], utt2spk[utt], utt2dur[utt]
    skipped.log()
    if not wav_scp:
        raise ValueError(f"{src}: no usable audio files")

    out = DataDir(out_dir)
    out.path.mkdir(parents=True, exist_ok=True)
    out.write("wav.scp", wav_scp)
    out.write_utt2spk(utt2spk)
    out.write("utt2dur", utt2dur)
    if text:
        out.write("text", text)
    elif out.exists("text"):
        out.file("text").unlink()
    for stale in ("segments", "reco2dur"):
        if out.exists(stale):
            out.file(stale).unlink()
    log.info(
        "%s: %d utterances, %d speakers, %s; %d skipped",
        out.path,
        len(wav_scp),
        len(set(utt2spk.values())),
        "with text" if text else "no text",
        skipped.total,
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.folder",
        description="Folder of audio (+ .txt transcripts, or a CSV/TSV of path,text[,speaker]) "
        "-> Kaldi data dir (wav.scp, utt2spk, spk2utt, text, utt2dur).",
    )
    parser.add_argument("src", metavar="SRC", help="folder of audio, or a CSV/TSV file")
    parser.add_argument("out", metavar="OUT", help="data dir to write")
    parser.add_argument(
        "--speaker-from-dir",
        action="store_true",
        help="speaker = the audio file's parent folder (default: one speaker per file)",
    )
    parser.add_argument(
        "--no-text", action="store_true", help="ignore transcripts (audio-only data dir)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        prepare_folder(
            args.src, args.out, speaker_from_dir=args.speaker_from_dir, use_text=not args.no_text
        )
    except (OSError, ValueError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
