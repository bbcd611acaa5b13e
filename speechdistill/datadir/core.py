"""Kaldi data directories: reading and writing the key-value files.

A data dir holds ``wav.scp`` (recording -> path or ``cmd |`` pipe), optional ``segments``
(utterance -> recording, start, end), ``text``, ``utt2spk``, ``spk2utt``, ``utt2dur``,
``reco2dur`` and any other utterance-keyed file (``text.teacher``, ``utt2<score>`` …).
Every file is one ``key value`` pair a line, keys unique and sorted in C (byte) order.

Ids (utterance, recording, speaker) become file names (``format`` writes ``<utt>.wav``), so each
must be a safe file-name component (:func:`check_id`); the reader refuses a file with an unsafe
key, naming file and line.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from speechdistill.utils import PathLike, atomic_open

log = logging.getLogger(__name__)

_SPLIT = re.compile(r"[ \t]+")
#: Longest id in UTF-8 bytes, so that ``<id>.wav`` and the like fit a file name (255 bytes).
MAX_ID_BYTES = 240

#: Files keyed by utterance id (besides the patterns ``text*`` and ``utt2*``).
UTT_FILES_FIXED = ("segments", "feats.scp")
#: Files keyed by recording id when ``segments`` exists.
RECO_FILES = ("wav.scp", "reco2dur", "reco2file_and_channel", "reco2num_samples")
#: Files keyed by speaker id.
SPK_FILES = ("spk2utt", "spk2gender", "cmvn.scp")


class DataDirError(ValueError):
    """A data-dir file is malformed; the message names the file (and line when known)."""

    def __init__(self, message: str, path: PathLike | None = None, line: int | None = None):
        self.path = None if path is None else Path(path)
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class Segment(NamedTuple):
    """One line of ``segments``: the recording and the span in seconds."""

    reco: str
    start: float
    end: float


def unsafe_id_reason(key: str) -> str | None:
    """Why ``key`` is not a safe id, or None when it is.

    A safe id is a non-empty file-name component of at most :data:`MAX_ID_BYTES` UTF-8 bytes:
    no ``/``, not ``.`` or ``..``, no leading ``-``, no whitespace or control characters.
    """
    if not key:
        return "empty"
    if "/" in key:
        return "contains '/'"
    if key in (".", ".."):
        return f"{key!r} names a directory"
    if key.startswith("-"):
        return "starts with '-'"
    if " " in key or not key.isprintable():
        return "contains whitespace or a control character"
    if len(key.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        return f"longer than {MAX_ID_BYTES} bytes"
    return None


def check_id(
    key: str, what: str = "utterance id", path: PathLike | None = None, line: int | None = None
) -> str:
    """Return ``key`` if it is a safe id (see :func:`unsafe_id_reason`), else raise DataDirError.

    Every writer that makes a path from an id calls this; the message names the file and line
    when given: ``data/train/text:12: utterance id '../x' is not a safe file name (contains '/')``.
    """
    reason = unsafe_id_reason(key)
    if reason is not None:
        raise DataDirError(f"{what} {key!r} is not a safe file name ({reason})", path, line)
    return key


def id_kind(name: str) -> str:
    """What the keys of data-dir file ``name`` are, for messages (``utterance id`` …)."""
    if name in SPK_FILES:
        return "speaker id"
    if name in RECO_FILES:
        return "recording id"
    return "utterance id"


def c_sorted(keys: Iterable[str]) -> list[str]:
    """Sort keys as ``LC_ALL=C sort`` does (UTF-8 byte order equals code-point order)."""
    return sorted(keys)


def parse_line(line: str) -> tuple[str, str]:
    """Split a Kaldi line into its key and the rest (the value may be empty)."""
    line = line.rstrip("\r\n")
    parts = _SPLIT.split(line.strip(" \t"), maxsplit=1)
    key = parts[0]
    value = parts[1] if len(parts) > 1 else ""
    return key, value


class Entry(NamedTuple):
    """One non-blank line of a Kaldi file."""

    line: int
    key: str
    value: str


@dataclass
class KaldiFile:
    """The decoded lines of a Kaldi file (newlines removed)."""

    path: Path
    lines: list[str]
    final_newline: bool

    def entries(self) -> list[Entry]:
        """The non-blank lines as ``(line number, key, value)``."""
        out = []
        for lineno, line in enumerate(self.lines, 1):
            key, value = parse_line(line)
            if key:
                out.append(Entry(lineno, key, value))
        return out


def read_kaldi_file(path: PathLike) -> KaldiFile:
    """Read a Kaldi file, split on ``\\n`` only; missing file or invalid UTF-8 raise DataDirError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataDirError("file not found", path) from None
    except IsADirectoryError:
        raise DataDirError("is a directory, expected a file", path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = raw[: e.start].count(b"\n") + 1
        raise DataDirError("invalid UTF-8", path, lineno) from None
    lines = text.split("\n")
    final_newline = text.endswith("\n")
    if final_newline or text == "":
        lines.pop()
    return KaldiFile(path, lines, final_newline)


def read_kv(path: PathLike, *, allow_duplicates: bool = False) -> dict[str, str]:
    """Read a ``key value`` file into an ordered dict.

    Duplicate keys, blank lines and unsafe ids (:func:`check_id`) are errors naming file and
    line. DOS line endings (CRLF) are stripped with a warning;
    ``speechdistill data validate`` refuses them and ``data fix`` rewrites the file without them.
    """
    path = Path(path)
    out: dict[str, str] = {}
    lines = read_kaldi_file(path).lines  # split on \n: U+0085, U+2028 … may be in a transcript
    kind = id_kind(path.name)
    crlf = 0
    for lineno, line in enumerate(lines, 1):
        crlf += line.endswith("\r")
        key, value = parse_line(line)
        if not key:
            raise DataDirError("empty line", path, lineno)
        check_id(key, kind, path, lineno)
        if key in out and not allow_duplicates:
            raise DataDirError(f"duplicate key {key!r}", path, lineno)
        out[key] = value
    if crlf:
        log.warning(
            "%s: %d line(s) end in CR (DOS line endings), stripped; `speechdistill data fix` "
            "rewrites the file without them",
            path,
            crlf,
        )
    return out


def format_line(key: str, value: str) -> str:
    """One Kaldi line (``key value``, or ``key`` alone for an empty value)."""
    if not key or any(c.isspace() for c in key):
        raise ValueError(
            f"invalid Kaldi key {key!r}: keys must be non-empty and without whitespace"
        )
    if "\n" in value or "\r" in value:
        raise ValueError(f"value for {key!r} contains a newline")
    return f"{key} {value}\n" if value != "" else f"{key}\n"


def write_kv(path: PathLike, mapping: Mapping[str, object], *, sort: bool = True) -> None:
    """Write ``mapping`` as a Kaldi file atomically, C-sorted by key unless ``sort=False``.
    An unsafe id (:func:`check_id`) is an error and nothing is written."""
    keys = c_sorted(mapping) if sort else list(mapping)
    kind = id_kind(Path(path).name)
    for key in keys:
        check_id(key, kind, path)
    with atomic_open(path, "w") as f:
        for key in keys:
            f.write(format_line(key, _fmt(mapping[key])))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return " ".join(_fmt(v) for v in value)
    return str(value)


def read_segments(path: PathLike) -> dict[str, Segment]:
    """Read ``segments`` (``utt reco start end``); a malformed line is an error naming it."""
    out: dict[str, Segment] = {}
    for lineno, (utt, value) in enumerate(read_kv(path).items(), 1):
        fields = value.split()
        if len(fields) != 3:
            raise DataDirError(
                f"expected 'utt reco start end', got {len(fields) + 1} fields", path, lineno
            )
        try:
            start, end = float(fields[1]), float(fields[2])
        except ValueError:
            raise DataDirError(f"non-numeric start/end for {utt!r}", path, lineno) from None
        out[utt] = Segment(fields[0], start, end)
    return out


def write_segments(path: PathLike, segments: Mapping[str, Segment]) -> None:
    """Write ``segments`` with times to the millisecond."""
    write_kv(path, {u: f"{s.reco} {s.start:.3f} {s.end:.3f}" for u, s in segments.items()})


def read_floats(path: PathLike) -> dict[str, float]:
    """Read a ``key number`` file such as ``utt2dur``; non-numeric values are errors."""
    out: dict[str, float] = {}
    for lineno, (key, value) in enumerate(read_kv(path).items(), 1):
        try:
            out[key] = float(value)
        except ValueError:
            raise DataDirError(f"non-numeric value {value!r} for {key!r}", path, lineno) from None
    return out


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    """Invert ``utt2spk``; utterances of each speaker in C order."""
    out: dict[str, list[str]] = {}
    for utt in c_sorted(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return {spk: out[spk] for spk in c_sorted(out)}


def spk2utt_to_utt2spk(spk2utt: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """Invert ``spk2utt``."""
    return {utt: spk for spk, utts in spk2utt.items() for utt in utts}


def is_utt_file(name: str) -> bool:
    """Whether a file in a data dir is keyed by utterance id (wav.scp depends on segments)."""
    return name.startswith(("text", "utt2")) or name in UTT_FILES_FIXED


class DataDir:
    """A Kaldi data directory. Reads are uncached; writes are atomic and C-sorted."""

    def __init__(self, path: PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"DataDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self, name: str) -> bool:
        return (self.path / name).is_file()

    # generic
    def read(self, name: str) -> dict[str, str]:
        return read_kv(self.path / name)

    def write(self, name: str, mapping: Mapping[str, object]) -> None:
        write_kv(self.path / name, mapping)

    def read_floats(self, name: str) -> dict[str, float]:
        return read_floats(self.path / name)

    # standard files
    @property
    def has_segments(self) -> bool:
        return self.exists("segments")

    def wav_scp(self) -> dict[str, str]:
        return self.read("wav.scp")

    def text(self, name: str = "text") -> dict[str, str]:
        return self.read(name)

    def utt2spk(self) -> dict[str, str]:
        return self.read("utt2spk")

    def spk2utt(self) -> dict[str, list[str]]:
        return {k: v.split() for k, v in self.read("spk2utt").items()}

    def segments(self) -> dict[str, Segment]:
        return read_segments(self.path / "segments")

    def utt2dur(self) -> dict[str, float]:
        return self.read_floats("utt2dur")

    def write_utt2spk(self, utt2spk: Mapping[str, str]) -> None:
        """Write ``utt2spk`` and the matching ``spk2utt``."""
        self.write("utt2spk", utt2spk)
        self.write("spk2utt", {s: " ".join(u) for s, u in utt2spk_to_spk2utt(utt2spk).items()})

    def write_segments(self, segments: Mapping[str, Segment]) -> None:
        write_segments(self.path / "segments", segments)

    def utt_ids(self) -> list[str]:
        """Utterance ids in C order, from ``utt2spk`` (or ``segments``/``wav.scp``/``text``)."""
        for name in ("utt2spk", "segments", "text"):
            if self.exists(name):
                return c_sorted(self.read(name))
        if self.exists("wav.scp"):
            return c_sorted(self.read("wav.scp"))
        raise DataDirError("no utt2spk, segments, text or wav.scp: not a data dir", self.path)

    def utt_files(self) -> list[str]:
        """Names of the utterance-keyed files present (``wav.scp`` only without ``segments``)."""
        names = sorted(p.name for p in self.path.iterdir() if p.is_file() and is_utt_file(p.name))
        names = [n for n in names if not n.startswith(".")]
        if not self.has_segments and self.exists("wav.scp"):
            names.append("wav.scp")
        return names

    def __len__(self) -> int:
        return len(self.utt_ids())
