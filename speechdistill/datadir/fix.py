"""Repair a Kaldi data directory: a port of Kaldi's ``utils/fix_data_dir.sh``.

Also the in-memory "tables" shared with :mod:`speechdistill.datadir.ops`: every recognised file
of a data dir loaded as ``key -> value`` strings, classified by what it is keyed by, restricted
to a set of utterances and written back C-sorted and atomically.

Decisions (where Kaldi is silent or differs):

- Unsorted files are sorted; a key repeated with the *same* value is kept once; a key repeated
  with a *different* value is an error naming the file and both lines (Kaldi's ``sort -u`` would
  keep one of them silently). Blank lines and CR line endings are dropped.
- The utterances kept are those present in ``utt2spk`` and in every one of ``text``,
  ``segments`` (whose recording must be in ``wav.scp``) or else ``wav.scp``, ``feats.scp``,
  ``utt2lang``, ``utt2dur`` and ``utt2num_frames`` (positive values only) and the named
  ``utt_extra_files``, and whose speaker is in every speaker-keyed file (``spk2gender``,
  ``cmvn.scp``, ``spk_extra_files``), as Kaldi does. Unlike Kaldi, ``utt_extra_files`` also take
  part in that intersection (so "compute scores, subset, fix" works); other ``text*``/``utt2*``
  files are only filtered to the kept utterances.
- ``spk2utt`` is regenerated from ``utt2spk``; recordings no longer referenced by ``segments`` are
  dropped from ``wav.scp``, ``reco2dur`` …; a file left without entries is removed (with a
  warning) rather than left empty.
- ``utt2spk`` not sorted by speaker is a warning here (Kaldi stops); ``validate`` reports it.
- Nothing is written when no utterance would remain, and files whose content does not change are
  not rewritten.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from speechdistill.datadir.core import (
    RECO_FILES,
    SPK_FILES,
    DataDirError,
    Entry,
    c_sorted,
    check_id,
    format_line,
    id_kind,
    is_utt_file,
    read_kaldi_file,
    utt2spk_to_spk2utt,
)
from speechdistill.utils import PathLike, atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

Kind = Literal["utt", "reco", "spk"]
Tables = dict[str, dict[str, str]]

#: Utterance-keyed files besides ``text*``/``utt2*``/``segments``/``feats.scp``.
OTHER_UTT_FILES = ("vad.scp",)
#: Standard utterance-keyed files that decide which utterances ``fix`` keeps.
INTERSECT_FILES = ("text", "feats.scp", "utt2lang", "utt2dur", "utt2num_frames")
BACKUP_DIR = ".backup"


def file_kind(name: str, has_segments: bool) -> Kind | None:
    """What a data-dir file is keyed by; None for files this module does not know."""
    if name in RECO_FILES or name.startswith("reco2"):
        return "reco" if has_segments else "utt"
    if name in SPK_FILES or name.startswith("spk2"):
        return "spk"
    if is_utt_file(name) or name in OTHER_UTT_FILES:
        return "utt"
    return None


def read_table(path: PathLike) -> dict[str, str]:
    """Read a Kaldi file for repair: C-sorted, identical duplicates merged, blank lines skipped.

    A key repeated with a different value or an unsafe id (:func:`check_id`: fix cannot rename
    ids) raises :class:`DataDirError` naming the file and line.
    """
    path = Path(path)
    kf = read_kaldi_file(path)
    entries = kf.entries()
    first: dict[str, Entry] = {}
    kind = id_kind(path.name)
    for e in entries:
        check_id(e.key, kind, path, e.line)
        if e.key in first:
            if first[e.key].value != e.value:
                raise DataDirError(
                    f"duplicate key {e.key!r} with a different value than on line "
                    f"{first[e.key].line}: remove one of them",
                    path,
                    e.line,
                )
            continue
        first[e.key] = e
    keys = list(first)
    if keys != sorted(keys) or len(first) != len(entries):
        log.info("%s: not sorted or has duplicates: sorting it", path)
    return {k: first[k].value for k in c_sorted(keys)}


def load_tables(
    path: PathLike, utt_extra_files: Iterable[str] = (), spk_extra_files: Iterable[str] = ()
) -> tuple[Tables, dict[str, Kind]]:
    """Load every recognised file of a data dir (except ``spk2utt``) and its kind.

    Named extra files are loaded whatever their name; missing ones are skipped with a warning.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataDirError("no such directory", path)
    if not (path / "utt2spk").is_file():
        raise DataDirError("no utt2spk: not a data dir", path)
    has_segments = (path / "segments").is_file()
    kinds: dict[str, Kind] = {}
    for p in sorted(path.iterdir()):
        kind = file_kind(p.name, has_segments)
        if p.is_file() and not p.name.startswith(".") and kind and p.name != "spk2utt":
            kinds[p.name] = kind
    for names, kind in ((utt_extra_files, "utt"), (spk_extra_files, "spk")):
        for name in names:
            if (path / name).is_file():
                kinds[name] = kind  # type: ignore[assignment]
            else:
                log.warning("%s: no such file %s: skipped", path, name)
    tables = {name: read_table(path / name) for name in kinds}
    _check_utt2spk(path, tables["utt2spk"])
    return tables, kinds


def _check_utt2spk(path: Path, utt2spk: dict[str, str]) -> None:
    for lineno, (utt, spk) in enumerate(utt2spk.items(), 1):
        if len(spk.split()) != 1:
            raise DataDirError(
                f"expected 'utterance speaker' for {utt!r}", path / "utt2spk", lineno
            )
    if not utt2spk:
        raise DataDirError("empty file", path / "utt2spk")


def restrict(tables: Tables, kinds: Mapping[str, Kind], utts: Iterable[str]) -> Tables:
    """The tables restricted to ``utts``, their speakers and (with segments) their recordings.

    Tables left without entries are dropped.
    """
    keep = set(utts)
    out: Tables = {"utt2spk": {u: s for u, s in tables["utt2spk"].items() if u in keep}}
    speakers = set(out["utt2spk"].values())
    recordings: set[str] = set()
    if "segments" in tables:
        out["segments"] = {u: v for u, v in tables["segments"].items() if u in keep}
        recordings = {v.split()[0] for v in out["segments"].values() if v.split()}
    allowed = {"utt": keep, "spk": speakers, "reco": recordings}
    for name, table in tables.items():
        if name not in out:
            out[name] = {k: v for k, v in table.items() if k in allowed[kinds[name]]}
    return {name: table for name, table in out.items() if table}


def render(table: Mapping[str, str]) -> str:
    """A table as Kaldi text, C-sorted."""
    return "".join(format_line(k, table[k]) for k in c_sorted(table))


def write_tables(dst: PathLike, tables: Tables) -> list[str]:
    """Write the tables and the ``spk2utt`` of their ``utt2spk`` into ``dst``; skip unchanged files.

    Returns the names written.
    """
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    spk2utt = {s: " ".join(u) for s, u in utt2spk_to_spk2utt(tables["utt2spk"]).items()}
    written = []
    for name, table in {**tables, "spk2utt": spk2utt}.items():
        text = render(table)
        target = dst / name
        if target.is_file() and target.read_bytes() == text.encode("utf-8"):
            continue
        atomic_write_text(target, text)
        written.append(name)
    return written


@dataclass(frozen=True)
class FixReport:
    """What :func:`fix` did."""

    path: Path
    kept: int
    total: int
    written: tuple[str, ...]
    removed_files: tuple[str, ...]
    backup: Path | None

    @property
    def removed(self) -> int:
        return self.total - self.kept

    def summary(self) -> str:
        return f"fix: kept {self.kept} utterances out of {self.total}"


def kept_utterances(
    tables: Tables,
    utt_extra_files: Iterable[str] = (),
    spk_extra_files: Iterable[str] = (),
) -> set[str]:
    """Utterances present in every deciding file, with a speaker in every speaker-keyed file."""
    utt2spk = tables["utt2spk"]
    speakers = set(utt2spk.values())
    for name in ("spk2gender", "cmvn.scp", *spk_extra_files):
        if name in tables:
            speakers &= tables[name].keys()
    utts = {u for u, s in utt2spk.items() if s in speakers}
    if "segments" in tables:
        wav = tables.get("wav.scp", {})
        utts &= {u for u, v in tables["segments"].items() if v.split()[:1] and v.split()[0] in wav}
    elif "wav.scp" in tables:
        utts &= tables["wav.scp"].keys()
    for name in (*INTERSECT_FILES, *utt_extra_files):
        if name in tables:
            utts &= _usable_keys(name, tables[name])
    return utts


def _usable_keys(name: str, table: Mapping[str, str]) -> set[str]:
    """Keys of a file; for durations and frame counts only those with a positive value."""
    if name not in ("utt2dur", "utt2num_frames"):
        return set(table)
    return {k for k, v in table.items() if _positive(v)}


def _positive(value: str) -> bool:
    try:
        x = float(value)
    except ValueError:
        return False
    return math.isfinite(x) and x > 0


def fix(
    path: PathLike,
    *,
    utt_extra_files: Iterable[str] = (),
    spk_extra_files: Iterable[str] = (),
    backup: bool = True,
) -> FixReport:
    """Make the data dir at ``path`` consistent, like Kaldi's ``fix_data_dir.sh``.

    Sorts every file, keeps the utterances present everywhere (see the module docstring),
    regenerates ``spk2utt``, drops unused speakers and recordings. The previous files are copied
    to ``path/.backup/`` unless ``backup=False``.
    """
    path = Path(path)
    utt_extra_files, spk_extra_files = tuple(utt_extra_files), tuple(spk_extra_files)
    tables, kinds = load_tables(path, utt_extra_files, spk_extra_files)
    if "segments" in tables and "wav.scp" not in tables:
        raise DataDirError("segments exists but wav.scp does not", path)
    _warn_spk_sort(path, tables["utt2spk"])
    total = len(tables["utt2spk"])
    utts = kept_utterances(tables, utt_extra_files, spk_extra_files)
    if not utts:
        raise DataDirError(f"no utterances remained out of {total}: not changing anything", path)
    new = restrict(tables, kinds, utts)
    backup_dir = _backup(path) if backup else None
    written = write_tables(path, new)
    removed = sorted(tables.keys() - new.keys())
    for name in removed:
        log.warning("%s: no entries left in %s: removing it", path, name)
        (path / name).unlink()
    report = FixReport(path, len(utts), total, tuple(written), tuple(removed), backup_dir)
    log.info("%s: %s", path, report.summary())
    return report


def _warn_spk_sort(path: Path, utt2spk: Mapping[str, str]) -> None:
    speakers = [utt2spk[u] for u in c_sorted(utt2spk)]
    if any(b < a for a, b in itertools.pairwise(speakers)):
        log.warning(
            "%s: utt2spk is not sorted by speaker: make speaker ids prefixes of utterance ids",
            path / "utt2spk",
        )


def _backup(path: Path) -> Path:
    """Copy every regular file of the data dir into ``path/.backup/`` (replacing older copies)."""
    backup = path / BACKUP_DIR
    for p in sorted(path.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            atomic_write_bytes(backup / p.name, p.read_bytes())
    log.info("%s: old files are kept in %s", path, backup)
    return backup
