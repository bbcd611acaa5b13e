"""What the corpus preparers share: skip bookkeeping, Kaldi-safe keys, transcripts, writing.

- :class:`Skipped` collects what a preparer leaves out, by reason, and logs each reason's count
  and (the first :data:`MAX_LISTED` of) the items: nothing is dropped silently.
- :func:`speaker_key` makes a speaker id that can prefix utterance ids: only letters, digits,
  ``_`` and ``.`` (all sort after ``-``), so that utterance ids ``<speaker>-<rest>`` sorted in
  C order are also sorted by speaker, as Kaldi's ``validate_data_dir.sh`` requires.
- :func:`clean_transcript` collapses whitespace (any Unicode space, line or paragraph separator)
  and removes the other non-printable characters (Unicode category C: controls, zero-width
  spaces, BOMs, joiners, private-use …), which Kaldi's validation rejects.
- :func:`probe_audio` reads an audio header: duration, or why the file is unusable.
- :func:`write_data_dir` writes a data dir through :class:`~speechdistill.datadir.DataDir`
  (atomic, C-sorted files), removes files of an earlier run that this one did not write, and
  validates the result; :func:`finish_data_dir` also logs what was skipped and a summary, and
  returns a :class:`PrepResult`.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from speechdistill.audio import format_seconds
from speechdistill.datadir import DataDir, is_utt_file, validate
from speechdistill.utils import PathLike

log = logging.getLogger("data_prep.common")

#: Items listed per reason in the skip log (the rest are only counted).
MAX_LISTED = 20

_NOT_SPEAKER_CHAR = re.compile(r"[^\w.]+")


class Skipped:
    """Rows or files left out, by reason (in the order first seen)."""

    def __init__(self, logger: logging.Logger | None = None, noun: str = "row"):
        self.reasons: dict[str, list[str]] = {}
        self._log = logger or log
        self.noun = noun

    def add(self, reason: str, what: str) -> None:
        self.reasons.setdefault(reason, []).append(what)

    def count(self, reason: str) -> int:
        return len(self.reasons.get(reason, ()))

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.reasons.values())

    def log(self, where: str = "") -> None:
        """One warning per reason: ``[where: ]skipped N row(s) (reason): a, b, c …``."""
        prefix = f"{where}: " if where else ""
        for reason, items in self.reasons.items():
            shown = ", ".join(items[:MAX_LISTED]) + (" …" if len(items) > MAX_LISTED else "")
            self._log.warning(
                "%sskipped %d %s(s) (%s): %s", prefix, len(items), self.noun, reason, shown
            )


def speaker_key(value: str) -> str:
    """A speaker id safe as an utterance-id prefix (letters, digits, ``_``, ``.``); may be empty.

    Every other character (``-``, spaces, ``/``, ``+`` …) becomes ``_``: a ``-`` or any character
    sorting before it inside a speaker id could break the "utterances sorted = speakers sorted"
    rule (speakers ``a`` and ``a-b`` give utterances ``a-b-1`` < ``a-x`` but ``a`` < ``a-b``).
    """
    return _NOT_SPEAKER_CHAR.sub("_", value.strip()).strip("_")


def clean_transcript(text: str) -> str:
    """Whitespace collapsed to single spaces; other category-C characters removed."""
    if not text.isprintable():
        text = "".join(
            " " if ch.isspace() else ch
            for ch in text
            if ch.isspace() or unicodedata.category(ch)[0] != "C"
        )
    return " ".join(text.split())


def probe_audio(path: PathLike) -> tuple[float | None, str | None]:
    """``(duration_seconds, None)`` from the header, or ``(None, reason)`` when unusable.

    Reasons: ``missing audio``, ``unreadable audio (<error>)``, ``empty audio``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return None, "missing audio"
    if os.path.getsize(path) == 0:
        return None, "empty audio"
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        return None, f"unreadable audio ({err})"
    if info.frames <= 0 or info.samplerate <= 0:
        return None, "empty audio"
    return info.frames / info.samplerate, None


def write_data_dir(
    out_dir: PathLike,
    *,
    wav_scp: Mapping[str, str],
    utt2spk: Mapping[str, str],
    text: Mapping[str, str] | None = None,
    utt2dur: Mapping[str, str] | None = None,
    extra: Mapping[str, Mapping[str, str]] | None = None,
    spk2gender: Mapping[str, str] | None = None,
    check: bool = True,
) -> DataDir:
    """Write a data dir (no ``segments``: one audio file per utterance) and validate it.

    ``extra`` maps file names (``utt2genre`` …) to utterance-keyed tables. Utterance-keyed
    files (``text*``, ``utt2*``, ``segments``), ``reco2dur`` and ``spk2gender`` left by an
    earlier run and not written now are removed, so a rerun with other options leaves no
    stale file behind.
    """
    if not wav_scp:
        raise ValueError(f"{out_dir}: no utterances to write")
    out = DataDir(out_dir)
    out.path.mkdir(parents=True, exist_ok=True)
    written = {"wav.scp", "utt2spk", "spk2utt"}
    out.write("wav.scp", wav_scp)
    out.write_utt2spk(utt2spk)
    tables: dict[str, Mapping[str, str]] = {}
    if text is not None:
        tables["text"] = text
    if utt2dur is not None:
        tables["utt2dur"] = utt2dur
    tables.update(extra or {})
    if spk2gender is not None:
        tables["spk2gender"] = spk2gender
    for name, table in tables.items():
        out.write(name, table)
        written.add(name)
    for p in sorted(out.path.iterdir()):
        name = p.name
        if not p.is_file() or name.startswith(".") or name in written:
            continue
        if is_utt_file(name) or name in ("reco2dur", "spk2gender"):
            log.info("%s: removing %s of an earlier run", out.path, name)
            p.unlink()
    if check:
        validate(out.path)
    return out


@dataclass
class PrepResult:
    """One prepared data dir: what was kept, what was skipped, and how much audio."""

    data: DataDir
    kept: int
    skipped: Skipped
    hours: float


def finish_data_dir(
    out_dir: PathLike,
    *,
    name: str,
    skipped: Skipped,
    wav_scp: Mapping[str, str],
    utt2spk: Mapping[str, str],
    text: Mapping[str, str],
    durations: Mapping[str, float],
    extra: Mapping[str, Mapping[str, str]] | None = None,
    spk2gender: Mapping[str, str] | None = None,
    logger: logging.Logger | None = None,
) -> PrepResult:
    """Log the skips, write and validate the data dir (:func:`write_data_dir`), log a summary.

    Nothing usable (every row skipped) is a ValueError naming the set.
    """
    logger = logger or log
    skipped.log(name)
    if not wav_scp:
        raise ValueError(f"{name or out_dir}: nothing usable ({skipped.total} skipped)")
    out = write_data_dir(
        out_dir,
        wav_scp=wav_scp,
        utt2spk=utt2spk,
        text=text,
        utt2dur={u: format_seconds(d) for u, d in durations.items()},
        extra=extra,
        spk2gender=spk2gender,
    )
    hours = sum(durations.values()) / 3600
    logger.info(
        "%s: %d utterances (%.2f h), %d speakers; %d skipped",
        out.path,
        len(wav_scp),
        hours,
        len(set(utt2spk.values())),
        skipped.total,
    )
    return PrepResult(out, len(wav_scp), skipped, hours)


def resolve_under(root: Path, relative: str) -> list[Path]:
    """Candidate paths for ``relative`` (any separators) under ``root``: the whole relative
    path, then with its leading components dropped one at a time (``a/b/c.wav``, ``b/c.wav``,
    ``c.wav``). Absolute paths count from their first component; ``..`` gives nothing."""
    parts = [p for p in re.split(r"[\\/]+", relative.strip()) if p not in ("", ".")]
    if not parts or ".." in parts:
        return []
    return [root.joinpath(*parts[k:]) for k in range(len(parts))]
