"""Prepare the NURC-SP Audio Corpus (CORAA NURC-SP) as Kaldi data dirs.

The corpus (Lima et al., BRACIS 2024: 239.30 h of spontaneous São Paulo Portuguese, 401
speakers, licence CC BY-NC-ND 4.0) is the Hub dataset ``nilc-nlp/CORAA-NURC-SP-Audio-Corpus``.
Its loading script does not run under ``datasets`` >= 4, so this module reads the files
themselves. The Hub repository (as ``huggingface-cli download --repo-type dataset
nilc-nlp/CORAA-NURC-SP-Audio-Corpus --local-dir CORPUS`` or ``--download`` lays it out)::

    train.tar.gz  dev.tar.gz  test.tar.gz           audio: one file per segment, already cut
    original/audios_{train,dev,test}_metadata.csv   config "original": every segment
    filtered/audios_{train,dev,test}_metadata.csv   config "filtered": empty transcriptions removed
    CORAA-NURC-SP-Audio-Corpus.py  README.md

Earlier revisions kept ``audios_<split>_metadata.csv`` at the top level; those are read when the
config's folder is missing (with a warning). The CSVs have a header naming the columns
``audio_name, file_path, text, start_time, end_time, duration, quality, speech_genre,
speech_style, variety, accent, sex, age_range, num_speakers, speaker_id``: ``audio_name`` is
the source recording (shared by all its segments), ``start_time``/``end_time`` place the segment
in that recording (seconds), ``file_path`` is the segment's audio file and ``speaker_id`` a
per-recording speaker number from WhisperX's diarisation (the corpus' README warns it may be
inaccurate).

Audio files: when the first rows' files are found under ``CORPUS/<split>`` or ``CORPUS``
(archives extracted by hand), nothing is extracted. Otherwise ``CORPUS/<split>.tar.gz`` is
extracted once into ``EXTRACT_DIR/<split>/`` (default ``CORPUS/extracted``): into a temporary
folder beside it that is renamed when complete, so an interrupted extraction starts again and
a finished one is reused. ``file_path`` is looked up under those folders as given, then
without its leading folders, then by its file name alone when that name is unique there.

Output, one data dir per split (``OUT/train``, ``OUT/dev``, ``OUT/test``). The segments are
separate files, so ``wav.scp`` maps each utterance to its file (absolute path; no
``segments``). ``text`` is the transcript with whitespace collapsed (NURC annotations are
kept: the ``pt_br`` normaliser removes them when scoring); ``utt2dur`` comes from the audio
headers; ``utt2genre`` and ``utt2quality`` hold ``speech_genre`` and ``quality`` (spaces as
``_``, ``unknown`` when empty); ``utt2reco`` holds the recording, ``audio_name`` (made a safe id
as speakers are), which ``speechdistill data pack`` groups by.

Speakers (``--speaker``): ``diarized`` (default) = ``<audio_name>_spk<speaker_id>``, one
WhisperX speaker of one recording (``<audio_name>_unk`` without ``speaker_id``);
``recording`` = ``<audio_name>``. Utterance ids are ``<speaker>-<audio_name>_<start>_<end>``,
times in centiseconds with 7 digits, so that each speaker's utterances sort in time order
(previous-context conditioning in training takes the previous utterance in id order).

Bad rows are skipped, and each reason's count and rows are logged: empty text, missing or
non-numeric times, ``end_time <= start_time``, an ``audio_name`` that is no safe id (``..``),
audio missing / unreadable / empty / ambiguous,
a second row with the same utterance id. A split without any usable row is an error.

Run ``python -m data_prep.nurc_sp CORPUS OUT [--config filtered] [--splits train dev test]
[--download]``.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import os
import re
import shutil
import sys
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tqdm import tqdm

from data_prep.common import (
    PrepResult,
    Skipped,
    clean_transcript,
    finish_data_dir,
    probe_audio,
    resolve_under,
    speaker_key,
)
from data_prep.folder import AUDIO_EXTENSIONS
from speechdistill.datadir import unsafe_id_reason
from speechdistill.utils import PathLike, check_owned, mark_owned, setup_logging

log = logging.getLogger("data_prep.nurc_sp")

REPO_ID = "nilc-nlp/CORAA-NURC-SP-Audio-Corpus"
CONFIGS = ("original", "filtered")
SPLITS = ("train", "dev", "test")
SPEAKER_MODES = ("diarized", "recording")
REQUIRED_COLUMNS = ("audio_name", "file_path", "text", "start_time", "end_time")
#: Written in a finished extraction folder.
EXTRACTED_MARKER = ".extracted"
#: The owner recorded in a temporary extraction folder (:data:`~speechdistill.utils.OWNER_FILE`).
EXTRACT_OWNER = "data_prep.nurc_sp extract"
#: Rows whose audio is looked up before deciding whether an archive must be extracted.
_PROBE_ROWS = 20
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def metadata_csv(corpus: Path, config: str, split: str) -> Path:
    """The metadata CSV of ``split`` in ``config``; see the module doc for where it is looked for."""
    name = f"audios_{split}_metadata.csv"
    path = corpus / config / name
    if path.is_file():
        return path
    if not (corpus / config).is_dir() and (corpus / name).is_file():
        log.warning(
            "%s: no %s/ folder; reading %s (the layout of earlier revisions of %s)",
            corpus,
            config,
            name,
            REPO_ID,
        )
        return corpus / name
    found = sorted((corpus / config).glob(f"*{split}*metadata*.csv"))
    if len(found) == 1:
        return found[0]
    raise FileNotFoundError(
        f"{corpus}: no metadata CSV for split {split!r} of config {config!r} "
        f"(looked for {config}/{name}"
        + (f"; several candidates: {[p.name for p in found]}" if found else "")
        + "); download the corpus (see --download) or pass its folder"
    )


def read_metadata(path: Path) -> list[dict[str, str]]:
    """The CSV's rows as dicts (header names stripped, lower-cased); missing columns are an error.

    Each row also has ``_n`` (its number, from 1) and ``_malformed`` (non-empty when its field
    count differs from the header's).
    """
    with open(path, encoding="utf-8-sig", newline="") as f:
        content = f.read()
    first = content.split("\n", 1)[0]
    delim = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delim)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ValueError(f"{path}: empty file") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing} in the header {header}")
    rows = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        row = dict(zip(header, values, strict=False))
        row["_n"] = str(len(rows) + 1)  # data row number, for the skip log
        row["_malformed"] = "1" if len(values) != len(header) else ""
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# archives and audio files


def _member_is_safe(member: tarfile.TarInfo) -> bool:
    """For Pythons without ``tarfile``'s ``data`` filter: regular files and folders, no escape."""
    parts = re.split(r"[\\/]+", member.name)
    return (
        (member.isfile() or member.isdir())
        and not member.name.startswith(("/", "\\"))
        and ".." not in parts
    )


def extract_archive(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into ``dest`` once (atomically: a temporary folder, then a rename).

    A ``dest`` holding :data:`EXTRACTED_MARKER` is reused; a leftover temporary folder of an
    interrupted run (marked as this function's, see :func:`~speechdistill.utils.check_owned`) is
    removed and the extraction starts again; a ``dest`` without the marker
    (not made by this function) is an error rather than being overwritten.
    """
    if (dest / EXTRACTED_MARKER).is_file():
        log.info("%s: already extracted into %s", archive.name, dest)
        return dest
    if dest.exists():
        raise FileExistsError(
            f"{dest} exists but is not a finished extraction of {archive.name} (no "
            f"{EXTRACTED_MARKER}); remove it or choose another --extract-dir"
        )
    tmp = dest.parent / f".{dest.name}.partial"
    if tmp.exists():
        check_owned(tmp, EXTRACT_OWNER, hint="remove it yourself or choose another --extract-dir")
        log.warning("removing %s, left by an interrupted extraction", tmp)
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    mark_owned(tmp, EXTRACT_OWNER)
    size_gb = archive.stat().st_size / 1e9
    log.info("extracting %s (%.2f GB) into %s", archive, size_gb, dest)
    with tarfile.open(archive, "r:*") as tf:
        members: Iterable[tarfile.TarInfo] = tqdm(
            tf, desc=f"extract {archive.name}", unit="file", mininterval=2.0
        )
        if hasattr(tarfile, "data_filter"):
            tf.extractall(tmp, members=members, filter="data")
        else:  # pragma: no cover - Python < 3.10.12 / 3.11.4
            tf.extractall(tmp, members=(m for m in members if _member_is_safe(m)))
    (tmp / EXTRACTED_MARKER).write_text(
        f"{archive.name} {archive.stat().st_size}\n", encoding="utf-8"
    )
    os.replace(tmp, dest)
    return dest


def find_archive(corpus: Path, split: str) -> Path | None:
    for suffix in _ARCHIVE_SUFFIXES:
        path = corpus / f"{split}{suffix}"
        if path.is_file():
            return path
    return None


class AudioFinder:
    """Finds a metadata ``file_path`` under the split's folders (see the module doc)."""

    def __init__(self, roots: Sequence[Path], index_roots: Sequence[Path]):
        self.roots = [r for r in dict.fromkeys(roots) if r.is_dir()]
        self.index_roots = [r for r in dict.fromkeys(index_roots) if r.is_dir()]
        self._by_name: dict[str, Path | None] | None = None

    def direct(self, file_path: str) -> Path | None:
        """The file at ``file_path`` under a root, fullest relative path first."""
        candidates = [resolve_under(root, file_path) for root in self.roots]
        for level in range(max((len(c) for c in candidates), default=0)):
            for cands in candidates:
                if level < len(cands) and cands[level].is_file():
                    return cands[level]
        return None

    def _index(self) -> dict[str, Path | None]:
        if self._by_name is None:
            self._by_name = {}
            for root in self.index_roots:
                for dirpath, _, names in os.walk(root):
                    for name in names:
                        if name.rsplit(".", 1)[-1].lower() not in AUDIO_EXTENSIONS:
                            continue
                        path = Path(dirpath) / name
                        # None marks a name found twice: ambiguous
                        self._by_name[name] = None if name in self._by_name else path
        return self._by_name

    def find(self, file_path: str) -> tuple[Path | None, str | None]:
        """``(path, None)``, or ``(None, reason)``."""
        path = self.direct(file_path)
        if path is not None:
            return path, None
        name = re.split(r"[\\/]+", file_path.strip())[-1]
        index = self._index()
        if name in index:
            if index[name] is None:
                return None, "ambiguous audio file name"
            return index[name], None
        return None, "missing audio"


def audio_finder(
    corpus: Path, split: str, extract_dir: Path, file_paths: Sequence[str]
) -> AudioFinder:
    """An :class:`AudioFinder` for ``split``, extracting its archive when that is needed."""
    dest = extract_dir / split
    by_hand = [corpus / split, corpus]
    finder = AudioFinder(
        ([dest] if (dest / EXTRACTED_MARKER).is_file() else []) + by_hand,
        [dest, corpus / split],
    )
    probe = [p for p in file_paths if p][:_PROBE_ROWS]
    if probe and any(finder.direct(p) is not None for p in probe):
        return finder
    archive = find_archive(corpus, split)
    if archive is None:
        log.warning(
            "%s: the audio of the first rows is not under %s and there is no %s.tar.gz to extract",
            split,
            ", ".join(str(r) for r in [dest, *by_hand]),
            split,
        )
        return finder
    extract_archive(archive, dest)
    return AudioFinder([dest, *by_hand], [dest, corpus / split])


# --------------------------------------------------------------------------------------------
# rows -> data dir


def parse_seconds(value: str | None) -> float | None:
    """Seconds from ``12.5`` or ``[[hh:]mm:]ss[.ff]``; None when not a finite number."""
    if value is None:
        return None
    value = value.strip()
    try:
        parts = [float(p) for p in value.split(":")] if value else []
    except ValueError:
        return None
    if not parts or len(parts) > 3 or not all(math.isfinite(p) for p in parts):
        return None
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + p
    return seconds


def _speaker_number(value: str) -> str:
    value = value.strip()
    if re.fullmatch(r"\d+\.0*", value):  # a float column written by pandas: "1.0"
        value = value.split(".", 1)[0]
    return value


def speaker_of(row: dict[str, str], mode: str) -> str:
    """The speaker id of a row (see the module doc); empty when the row names no recording."""
    audio = speaker_key(row.get("audio_name") or "")
    if mode == "recording" or not audio:
        return audio
    number = _speaker_number(row.get("speaker_id") or "")
    if not number:
        return f"{audio}_unk"
    return speaker_key(f"{audio}_spk{number}" if number.isdigit() else f"{audio}_{number}")


def _label(value: str | None) -> str:
    return "_".join((value or "").split()) or "unknown"


def prepare_split(
    rows: Sequence[dict[str, str]],
    finder: AudioFinder,
    out_dir: PathLike,
    *,
    speaker: str = "diarized",
    name: str = "",
) -> PrepResult:
    """Write the data dir of one split's metadata rows (see the module doc)."""
    skipped = Skipped(log)
    wav_scp: dict[str, str] = {}
    text: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    utt2dur: dict[str, float] = {}
    genre: dict[str, str] = {}
    quality: dict[str, str] = {}
    origin: dict[str, str] = {}
    utt2reco: dict[str, str] = {}
    for row in tqdm(rows, desc=f"prepare {name}", unit="row", mininterval=2.0):
        file_path = (row.get("file_path") or "").strip()
        what = file_path or f"row {row['_n']}"
        if row["_malformed"]:
            skipped.add("malformed row (field count differs from the header)", f"row {row['_n']}")
            continue
        if not file_path:
            skipped.add("no file_path", what)
            continue
        transcript = clean_transcript(row.get("text") or "")
        if not transcript:
            skipped.add("empty text", what)
            continue
        start, end = parse_seconds(row.get("start_time")), parse_seconds(row.get("end_time"))
        if start is None or end is None or start < 0:
            skipped.add(
                "missing or bad times",
                f"{what} ({row.get('start_time')!r}, {row.get('end_time')!r})",
            )
            continue
        if end <= start:
            skipped.add("end_time <= start_time", f"{what} ({start:g} .. {end:g})")
            continue
        spk = speaker_of(row, speaker)
        if not spk:
            skipped.add("no audio_name", what)
            continue
        path, reason = finder.find(file_path)
        duration = None
        if path is not None:
            duration, reason = probe_audio(path)
        if duration is None:
            skipped.add(reason or "missing audio", what)
            continue
        reco = speaker_key(row["audio_name"])
        if unsafe_id_reason(reco):
            skipped.add("audio_name is not a safe recording id", f"{what} ({reco!r})")
            continue
        utt = f"{spk}-{reco}_{round(start * 100):07d}_{round(end * 100):07d}"
        if utt in origin:
            skipped.add("duplicate utterance id", f"{what} (id {utt} of {origin[utt]})")
            continue
        origin[utt] = what
        wav_scp[utt] = os.path.abspath(path)
        text[utt] = transcript
        utt2spk[utt] = spk
        utt2dur[utt] = duration
        genre[utt] = _label(row.get("speech_genre"))
        quality[utt] = _label(row.get("quality"))
        utt2reco[utt] = reco
    return finish_data_dir(
        out_dir,
        name=name,
        skipped=skipped,
        wav_scp=wav_scp,
        utt2spk=utt2spk,
        text=text,
        durations=utt2dur,
        extra={"utt2genre": genre, "utt2quality": quality, "utt2reco": utt2reco},
        logger=log,
    )


def download(
    corpus: PathLike, *, config: str, splits: Sequence[str], revision: str | None = None
) -> Path:
    """Fetch the config's CSVs and the splits' archives from the Hub into ``corpus``."""
    from huggingface_hub import snapshot_download

    patterns = [f"{config}/audios_{s}_metadata.csv" for s in splits]
    patterns += [f"{s}.tar.gz" for s in splits] + ["README.md"]
    log.info("downloading %s (%s) into %s", REPO_ID, ", ".join(patterns), corpus)
    snapshot_download(
        repo_id=REPO_ID,
        repo_type="dataset",
        revision=revision,
        local_dir=str(corpus),
        allow_patterns=patterns,
    )
    return Path(corpus)


def prepare_nurc_sp(
    corpus: PathLike,
    out_root: PathLike,
    *,
    config: str = "filtered",
    splits: Sequence[str] = SPLITS,
    extract_dir: PathLike | None = None,
    speaker: str = "diarized",
    download_first: bool = False,
    revision: str | None = None,
) -> dict[str, PrepResult]:
    """Write ``out_root/<split>`` for each split; see the module doc."""
    if config not in CONFIGS:
        raise ValueError(f"unknown config {config!r} (one of {', '.join(CONFIGS)})")
    if speaker not in SPEAKER_MODES:
        raise ValueError(f"unknown speaker mode {speaker!r} (one of {', '.join(SPEAKER_MODES)})")
    corpus = Path(corpus).resolve()
    if download_first:
        download(corpus, config=config, splits=splits, revision=revision)
    if not corpus.is_dir():
        raise FileNotFoundError(f"{corpus}: no such folder (use --download to fetch the corpus)")
    extract_root = Path(extract_dir).resolve() if extract_dir else corpus / "extracted"
    results = {}
    for split in splits:
        csv_path = metadata_csv(corpus, config, split)
        rows = read_metadata(csv_path)
        log.info("%s: %d rows in %s", split, len(rows), csv_path)
        finder = audio_finder(
            corpus, split, extract_root, [(r.get("file_path") or "").strip() for r in rows]
        )
        results[split] = prepare_split(
            rows, finder, Path(out_root) / split, speaker=speaker, name=split
        )
    return results


def _iter_splits(values: Iterable[str]) -> Iterator[str]:
    for v in values:
        yield from (s for s in v.replace(",", " ").split() if s)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m data_prep.nurc_sp",
        description="NURC-SP Audio Corpus (metadata CSVs + tar.gz archives, as downloaded from "
        f"the Hub dataset {REPO_ID}) -> Kaldi data dirs OUT/<split>.",
    )
    p.add_argument("corpus", metavar="CORPUS", help="folder of the downloaded Hub dataset")
    p.add_argument("out", metavar="OUT", help="folder for the data dirs (OUT/train, OUT/dev, …)")
    p.add_argument(
        "--config",
        choices=CONFIGS,
        default="filtered",
        help="original: every segment; filtered: empty transcriptions removed (default)",
    )
    p.add_argument(
        "--splits",
        nargs="+",
        default=list(SPLITS),
        help="splits to prepare (default: train dev test; commas also separate)",
    )
    p.add_argument(
        "--extract-dir", help="where the archives are extracted (default: CORPUS/extracted)"
    )
    p.add_argument(
        "--speaker",
        choices=SPEAKER_MODES,
        default="diarized",
        help="diarized: recording + WhisperX speaker_id (default); recording: audio_name",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help=f"first fetch the CSVs and archives of the splits from the Hub ({REPO_ID})",
    )
    p.add_argument("--revision", help="Hub revision for --download (default: main)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    p.add_argument("-q", "--quiet", action="count", default=0, help="less logging")
    args = p.parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    splits = list(_iter_splits(args.splits))
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        p.error(f"unknown split(s) {unknown} (choose from {', '.join(SPLITS)})")
    try:
        prepare_nurc_sp(
            args.corpus,
            args.out,
            config=args.config,
            splits=splits,
            extract_dir=args.extract_dir,
            speaker=args.speaker,
            download_first=args.download,
            revision=args.revision,
        )
    except (OSError, ValueError, tarfile.TarError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
