"""Check a Kaldi data directory: a port of Kaldi's ``utils/validate_data_dir.sh``.

Every problem found is collected, and :func:`validate` raises one :class:`DataDirValidationError`
listing them all; each message names the file and, where it applies, the line.

Checks (as Kaldi, unless noted):

- Every key (utterance, recording, speaker id), speaker of ``utt2spk`` and recording of
  ``segments`` is a safe file name (:func:`~speechdistill.datadir.core.unsafe_id_reason`: no
  ``/``, not ``.``/``..``, no leading ``-``, no whitespace or control characters); not in Kaldi.
- ``utt2spk`` and ``spk2utt`` exist, are not empty and agree; ``utt2spk`` has two fields a line.
- Every file: UTF-8, ends with a newline, no blank lines, no CR (DOS line endings), keys unique and
  in ``LC_ALL=C`` order. Empty files are errors (Kaldi checks only some of them).
- Unless ``no_spk_sort``: ``utt2spk`` sorted by utterance is also sorted by speaker, i.e. utterance
  ids start with their speaker id.
- ``text`` exists unless ``no_text``; transcripts (``text`` and ``text.*``) have no whitespace other
  than space and tab, no ``<s>``, ``</s>``, ``#0`` tokens and, unless ``non_print``, no
  non-printable characters (controls, zero-width and other format characters: Kaldi's
  ``grep '[^[:print:][:space:]]'``).
- ``wav.scp`` exists unless ``no_wav`` (and always with ``segments``); no ``~`` paths.
- With ``segments``: four fields, ``0 <= start < end`` or ``end == -1`` (to the end of the
  recording, as Kaldi), utterances equal to ``utt2spk``'s, every
  recording in ``wav.scp``, and every ``wav.scp`` recording used; with ``reco2dur``, segments end
  at most :data:`SEGMENT_OVERSHOOT` s past their recording (Kaldi's ``extract-segments
  --max-overshoot``). Without ``segments``: ``wav.scp`` (and ``reco2dur``) keys equal the utterances.
  Warnings, with counts: segments that overlap within a recording (legal Kaldi: cross-talk), and
  segments longer than :data:`LONG_SEGMENT` s (Whisper's window); not in Kaldi.
- ``utt2reco`` (not Kaldi's; each utterance's recording, written by preparers whose corpus knows
  the recording but ships one file per utterance): every utterance, one safe recording id each,
  the segment's recording when there are segments.
- ``utt2dur``/``reco2dur`` durations positive and finite; ``utt2num_frames`` positive integers;
  ``utt2weight`` (not Kaldi's: per-utterance loss weights) one number in (0, 1] a line.
- ``spk2gender`` (``m``/``f``) and ``cmvn.scp`` keyed by exactly the speakers.
- Utterance-keyed files: the standard ones (:data:`STRICT_UTT_FILES`) must have exactly the
  utterances of ``utt2spk``; other ``text.*``/``utt2*`` files (stage outputs such as
  ``text.teacher``) must be a subset (an unknown utterance is an error, a missing one a warning:
  ``fix --utt-extra-files`` makes them equal). ``feats.scp`` is checked when present, never
  required (Kaldi's ``--no-feats`` is always on: this toolkit works from audio).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speechdistill.datadir.core import (
    DataDirError,
    Entry,
    Segment,
    id_kind,
    is_utt_file,
    parse_line,
    read_kaldi_file,
    unsafe_id_reason,
)
from speechdistill.datadir.reco import segment_layout_warnings
from speechdistill.datadir.weights import UTT2WEIGHT, weight_problem
from speechdistill.utils import PathLike

log = logging.getLogger(__name__)

#: Utterance-keyed files whose keys must equal ``utt2spk``'s (Kaldi's list).
STRICT_UTT_FILES = (
    "text",
    "feats.scp",
    "utt2dur",
    "utt2num_frames",
    "utt2lang",
    "utt2uniq",
    "utt2warp",
    "vad.scp",
    "utt2reco",  # not Kaldi's: each utterance's recording when there are no segments
)
#: Tokens Kaldi reserves for its language models; forbidden in transcripts.
ILLEGAL_TEXT_SYMBOLS = frozenset({"<s>", "</s>", "#0"})
#: Seconds a segment may end past its recording (Kaldi's ``extract-segments --max-overshoot``).
SEGMENT_OVERSHOOT = 0.5
#: Seconds of Whisper's window: a longer segment is a warning.
LONG_SEGMENT = 30.0
#: Errors reported per file before the rest are only counted.
MAX_ERRORS_PER_FILE = 10


class DataDirValidationError(DataDirError):
    """A data dir failed validation; ``errors`` holds one message per problem."""

    def __init__(self, path: PathLike, errors: list[str], *, summary: str | None = None):
        self.errors = list(errors)
        n = len(self.errors)
        listing = "\n".join(f"  {e}" for e in self.errors)
        message = summary or f"invalid data dir ({n} error{'s' if n != 1 else ''}):\n{listing}"
        super().__init__(message, path)


@dataclass(frozen=True)
class ValidateOptions:
    """Kaldi's ``validate_data_dir.sh`` switches."""

    no_text: bool = False
    no_wav: bool = False
    no_spk_sort: bool = False
    non_print: bool = False
    #: Stage-input mode (:func:`check_stage_input`): no sort order, ``spk2utt`` optional.
    stage_input: bool = False


@dataclass
class _Checker:
    """Loads the files of one data dir and collects errors and warnings."""

    path: Path
    opts: ValidateOptions
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _count: dict[str, int] = field(default_factory=dict)
    _cache: dict[str, dict[str, Entry] | None] = field(default_factory=dict)
    counts: tuple[int, int] = (0, 0)  # utterances, speakers

    def error(self, name: str, message: str, line: int | None = None) -> None:
        self._count[name] = self._count.get(name, 0) + 1
        if self._count[name] <= MAX_ERRORS_PER_FILE:
            self.errors.append(self._where(name, line) + message)

    def warn(self, name: str, message: str, line: int | None = None) -> None:
        self.warnings.append(self._where(name, line) + message)

    def _where(self, name: str, line: int | None) -> str:
        path = self.path / name
        return f"{path}:{line}: " if line is not None else f"{path}: "

    def finish(self) -> None:
        """Add one summary line per file whose errors were cut off."""
        for name, n in self._count.items():
            if n > MAX_ERRORS_PER_FILE:
                self.errors.append(
                    f"{self.path / name}: … and {n - MAX_ERRORS_PER_FILE} more errors"
                )

    def exists(self, name: str) -> bool:
        return (self.path / name).is_file()

    def load(self, name: str) -> dict[str, Entry] | None:
        """Key -> first entry of a file, after the per-line checks; None if absent or unreadable."""
        if name not in self._cache:
            self._cache[name] = self._load(name) if self.exists(name) else None
        return self._cache[name]

    def _load(self, name: str) -> dict[str, Entry] | None:
        try:
            kf = read_kaldi_file(self.path / name)
        except DataDirError as e:  # the file exists, so this is bad UTF-8
            self.error(name, "invalid UTF-8 (every file must be UTF-8)", e.line)
            return None
        entries = kf.entries()
        if not entries:
            self.error(name, "empty file")
            return None
        if not kf.final_newline:
            self.error(name, "last line does not end with a newline", len(kf.lines))
        for lineno, line in enumerate(kf.lines, 1):
            if "\r" in line:
                self.error(
                    name,
                    "carriage return (CR) in line: DOS line endings? (`speechdistill data fix` "
                    "removes them)",
                    lineno,
                )
            if not parse_line(line)[0]:
                self.error(name, "empty line", lineno)
        kind = id_kind(name)
        for e in entries:
            self.check_id(name, e.key, kind, e.line)
        return self._check_order(name, entries)

    def _check_order(self, name: str, entries: list[Entry]) -> dict[str, Entry]:
        """Keys unique and in C order (``sort -k1,1 -u -c``); the first disorder is reported."""
        out: dict[str, Entry] = {}
        disorder_reported = self.opts.stage_input  # the stages do not need the order
        prev: Entry | None = None
        for e in entries:
            if e.key in out:
                self.error(
                    name, f"duplicate key {e.key!r} (first on line {out[e.key].line})", e.line
                )
                continue
            if prev is not None and e.key < prev.key and not disorder_reported:
                self.error(
                    name,
                    f"not sorted (LC_ALL=C): {e.key!r} comes after {prev.key!r} on line "
                    f"{prev.line}; run `speechdistill data fix`",
                    e.line,
                )
                disorder_reported = True
            out[e.key] = e
            prev = e
        return out

    def check_id(self, name: str, key: str, what: str, line: int) -> bool:
        """Report an unsafe id (see ``unsafe_id_reason``); True when it is safe."""
        reason = unsafe_id_reason(key)
        if reason is not None:
            self.error(name, f"{what} {key!r} is not a safe file name ({reason})", line)
        return reason is None

    def compare_keys(
        self,
        name: str,
        entries: dict[str, Entry],
        reference: set[str],
        ref_name: str,
        what: str = "utterance",
        *,
        subset_ok: bool = False,
    ) -> None:
        """Keys of ``name`` must equal ``reference`` (or be a subset, missing ones then warned)."""
        for e in entries.values():
            if e.key not in reference:
                self.error(name, f"{what} {e.key!r} is not in {ref_name}", e.line)
        missing = sorted(reference - entries.keys())
        if missing:
            examples = ", ".join(repr(k) for k in missing[:3])
            message = f"{len(missing)} {what}(s) of {ref_name} missing (e.g. {examples})"
            (self.warn if subset_ok else self.error)(name, message)


def validate(
    path: PathLike,
    *,
    no_text: bool = False,
    no_wav: bool = False,
    no_spk_sort: bool = False,
    non_print: bool = False,
) -> list[str]:
    """Validate the data dir at ``path`` like Kaldi's ``validate_data_dir.sh``; return warnings.

    Raises :class:`DataDirValidationError` listing every problem (file and line in each message).
    """
    path = Path(path)
    c = _run_checks(path, ValidateOptions(no_text, no_wav, no_spk_sort, non_print))
    utts, speakers = c.counts
    for w in c.warnings:
        log.warning("%s", w)
    if c.errors:
        raise DataDirValidationError(path, c.errors)
    log.info("%s: valid data dir (%d utterances, %d speakers)", path, utts, speakers)
    return c.warnings


def check_stage_input(
    path: PathLike, stage: str, *, needs: Sequence[str] = (), no_wav: bool = False
) -> None:
    """Refuse a stage's input data dir before the expensive work, with a one-line error.

    :func:`validate`'s checks but Kaldi's sort order, ``spk2utt`` and equal keys in ``text``,
    ``utt2dur`` … (the stages need none of them; an utterance unknown to ``utt2spk`` is still an
    error): every file UTF-8 without CR, ``utt2spk`` and ``wav.scp`` (unless ``no_wav``) and the
    files in ``needs`` present, ids safe, keys consistent. The message names the stage, the first
    problem (file and line) and how many there are; warnings are not logged.
    """
    path = Path(path)
    opts = ValidateOptions(no_text=True, no_wav=no_wav, non_print=True, stage_input=True)
    c = _run_checks(path, opts)
    for name in needs:
        if not c.exists(name):
            c.errors.insert(0, f"{path / name}: no such file ({stage} needs it)")
    if c.errors:
        n = len(c.errors)
        more = f"{n} errors, `speechdistill data validate` lists them; first: " if n > 1 else ""
        summary = f"{stage}: invalid input data dir ({more}{c.errors[0]})"
        raise DataDirValidationError(path, c.errors, summary=summary)


def _run_checks(path: Path, opts: ValidateOptions) -> _Checker:
    """Every check of the data dir at ``path``; the checker holds the errors and warnings."""
    if not path.is_dir():
        raise DataDirError("no such directory", path)
    c = _Checker(path, opts)
    utt2spk = _check_speakers(c)
    utts = set(utt2spk)
    speakers = {e.value for e in utt2spk.values()}
    _check_text_files(c, utts)
    _check_audio(c, utts)
    _check_utt_files(c, utts)
    _check_spk_files(c, speakers)
    c.finish()
    c.counts = (len(utts), len(speakers))
    return c


# speakers -------------------------------------------------------------------------------------


def _check_speakers(c: _Checker) -> dict[str, Entry]:
    """utt2spk/spk2utt present, well-formed and consistent; returns utt2spk (empty if unusable)."""
    for name in ("utt2spk",) if c.opts.stage_input else ("utt2spk", "spk2utt"):
        if not c.exists(name):
            c.error(name, "no such file (every data dir needs utt2spk and spk2utt)")
    utt2spk = {k: _check_utt2spk_line(c, e) for k, e in (c.load("utt2spk") or {}).items()}
    if utt2spk and not c.opts.no_spk_sort:
        _check_spk_sort(c, utt2spk)
    spk2utt = c.load("spk2utt")
    if spk2utt is not None and utt2spk:
        _check_spk2utt(c, spk2utt, utt2spk)
    if len({e.value for e in utt2spk.values()}) == 1:
        c.warn("utt2spk", "only one speaker: speaker adaptation and per-speaker splits need more")
    return utt2spk


def _check_utt2spk_line(c: _Checker, e: Entry) -> Entry:
    """Two fields a line; a bad line keeps its utterance (first field as speaker, if any)."""
    fields = e.value.split()
    if len(fields) != 1:
        c.error("utt2spk", f"expected 'utterance speaker', got {len(fields) + 1} fields", e.line)
        return e._replace(value=fields[0] if fields else "")
    c.check_id("utt2spk", e.value, "speaker id", e.line)
    return e


def _check_spk_sort(c: _Checker, utt2spk: dict[str, Entry]) -> None:
    """Sorted by utterance must also be sorted by speaker (Kaldi: ``sort -k2 -C utt2spk``)."""
    entries = sorted(utt2spk.values(), key=lambda e: e.line)
    for prev, e in itertools.pairwise(entries):
        if e.value < prev.value:
            c.error(
                "utt2spk",
                f"not sorted by speaker: speaker {e.value!r} of {e.key!r} comes after speaker "
                f"{prev.value!r} on line {prev.line}; make speaker ids prefixes of utterance ids "
                "(e.g. spk1-utt1), or pass --no-spk-sort",
                e.line,
            )
            return


def _check_spk2utt(c: _Checker, spk2utt: dict[str, Entry], utt2spk: dict[str, Entry]) -> None:
    """spk2utt must be the inverse of utt2spk, utterances of each speaker in C order."""
    seen: dict[str, int] = {}
    for e in spk2utt.values():
        listed = e.value.split()
        if not listed:
            c.error("spk2utt", f"speaker {e.key!r} has no utterances", e.line)
        if listed != sorted(listed):
            c.error("spk2utt", f"utterances of speaker {e.key!r} are not in C order", e.line)
        for utt in listed:
            if utt in seen:
                c.error("spk2utt", f"utterance {utt!r} also listed on line {seen[utt]}", e.line)
            elif utt not in utt2spk:
                c.error("spk2utt", f"utterance {utt!r} of speaker {e.key!r} not in utt2spk", e.line)
            elif utt2spk[utt].value != e.key:
                spk = utt2spk[utt].value
                c.error(
                    "spk2utt",
                    f"utterance {utt!r} listed under speaker {e.key!r}, utt2spk says {spk!r}",
                    e.line,
                )
            seen[utt] = e.line
    missing = sorted(set(utt2spk) - set(seen))
    if missing:
        examples = ", ".join(repr(u) for u in missing[:3])
        c.error("spk2utt", f"{len(missing)} utterance(s) of utt2spk missing (e.g. {examples})")


# transcripts ----------------------------------------------------------------------------------


def _is_text_file(name: str) -> bool:
    return name.startswith("text")


def _check_text_files(c: _Checker, utts: set[str]) -> None:
    if not c.exists("text") and not c.opts.no_text:
        c.error("text", "no such file (if this is by design, pass --no-text)")
    for name in _listing(c.path):
        if _is_text_file(name):
            entries = c.load(name)
            if entries is not None:
                for e in entries.values():
                    _check_transcript(c, name, e)


def _check_transcript(c: _Checker, name: str, e: Entry) -> None:
    """Kaldi's ``validate_text.pl`` plus the non-printable and reserved-symbol checks."""
    printable = e.value.isprintable()  # fast path: no control, format or whitespace but ' '
    for ch in "" if printable else e.value:
        if ch.isspace() and ch not in " \t\r":
            c.error(
                name, f"disallowed whitespace U+{ord(ch):04X} in transcript of {e.key!r}", e.line
            )
            break
        if not c.opts.non_print and not ch.isprintable() and not ch.isspace():
            c.error(
                name,
                f"non-printable character U+{ord(ch):04X} in transcript of {e.key!r} "
                "(pass --non-print to allow)",
                e.line,
            )
            break
    bad = ILLEGAL_TEXT_SYMBOLS.intersection(e.value.split())
    if bad:
        c.error(name, f"reserved symbol {sorted(bad)[0]!r} in transcript of {e.key!r}", e.line)


# audio: wav.scp, segments, reco2dur ------------------------------------------------------------


def _check_audio(c: _Checker, utts: set[str]) -> None:
    has_segments = c.exists("segments")
    if not c.exists("wav.scp") and (has_segments or not c.opts.no_wav):
        hint = "segments needs it" if has_segments else "if this is by design, pass --no-wav"
        c.error("wav.scp", f"no such file ({hint})")
    wav = c.load("wav.scp")
    if wav is not None:
        for e in wav.values():
            _check_wav_line(c, e)
    if has_segments:
        recos = _check_segments(c, utts, wav)
    else:
        _check_utt2reco(c, None)
        recos = set(utts)
        if wav is not None and utts:
            c.compare_keys("wav.scp", wav, utts, "utt2spk")
    for name in ("reco2dur", "reco2file_and_channel"):
        entries = c.load(name)
        if entries is not None and recos:
            ref = "wav.scp" if has_segments else "utt2spk"
            c.compare_keys(name, entries, recos, ref, "recording" if has_segments else "utterance")
    reco2dur = _check_durations(c, "reco2dur")
    if has_segments and reco2dur:
        _check_segment_ends(c, reco2dur)


def _check_wav_line(c: _Checker, e: Entry) -> None:
    if not e.value:
        c.error("wav.scp", f"no path or command for {e.key!r}", e.line)
    elif e.value.startswith("~"):
        c.error("wav.scp", f"'~' is not expanded: use an absolute path for {e.key!r}", e.line)


def _check_segments(c: _Checker, utts: set[str], wav: dict[str, Entry] | None) -> set[str]:
    """Segment lines, their utterances and recordings; returns the recordings of wav.scp."""
    segments = c.load("segments")
    if segments is None:
        return set(wav or {})
    if utts:
        c.compare_keys("segments", segments, utts, "utt2spk")
    used: set[str] = set()
    spans: dict[str, Segment] = {}
    for e in segments.values():
        fields = e.value.split()
        if len(fields) != 3:
            c.error(
                "segments", f"expected 'utt reco start end', got {len(fields) + 1} fields", e.line
            )
            continue
        used.add(fields[0])
        c.check_id("segments", fields[0], "recording id", e.line)
        times = _check_segment_times(c, e, fields[1], fields[2])
        if times is not None:
            spans[e.key] = Segment(fields[0], *times)
        if wav is not None and fields[0] not in wav:
            c.error("segments", f"recording {fields[0]!r} of {e.key!r} is not in wav.scp", e.line)
    for message in segment_layout_warnings(spans, LONG_SEGMENT):
        c.warn("segments", message)
    _check_utt2reco(c, spans)
    for e in (wav or {}).values():
        if e.key not in used:
            c.error(
                "wav.scp",
                f"recording {e.key!r} is used by no segment (`speechdistill data fix` drops it)",
                e.line,
            )
    return set(wav) if wav is not None else used


def _check_segment_times(
    c: _Checker, e: Entry, start_s: str, end_s: str
) -> tuple[float, float] | None:
    """``(start, end)`` of a segment line, or None (reported) when they are unusable."""
    try:
        start, end = float(start_s), float(end_s)
    except ValueError:
        c.error("segments", f"non-numeric start/end for {e.key!r}", e.line)
        return None
    if not (math.isfinite(start) and math.isfinite(end)):
        c.error("segments", f"non-finite start/end for {e.key!r}", e.line)
    elif start < 0:
        c.error("segments", f"negative start {start_s} for {e.key!r}", e.line)
    elif end <= start and end != -1:
        c.error("segments", f"end {end_s} is not after start {start_s} for {e.key!r}", e.line)
    else:
        return start, end
    return None


def _check_utt2reco(c: _Checker, segments: dict[str, Segment] | None) -> None:
    """``utt2reco``: one safe recording id an utterance, the segment's when there are segments."""
    for e in (c.load("utt2reco") or {}).values():
        fields = e.value.split()
        if len(fields) != 1:
            c.error(
                "utt2reco", f"expected 'utterance recording', got {len(fields) + 1} fields", e.line
            )
        elif c.check_id("utt2reco", fields[0], "recording id", e.line) and segments:
            seg = segments.get(e.key)
            if seg is not None and seg.reco != fields[0]:
                c.error(
                    "utt2reco",
                    f"recording {fields[0]!r} of {e.key!r} differs from its segment's {seg.reco!r}",
                    e.line,
                )


def _check_segment_ends(c: _Checker, reco2dur: dict[str, float]) -> None:
    segments = c.load("segments") or {}
    for e in segments.values():
        fields = e.value.split()
        if len(fields) != 3 or fields[0] not in reco2dur:
            continue
        try:
            end = float(fields[2])
        except ValueError:
            continue
        if end == -1:
            continue
        dur = reco2dur[fields[0]]
        if end > dur + SEGMENT_OVERSHOOT:
            c.error(
                "segments",
                f"{e.key!r} ends at {fields[2]} s, past the end of recording {fields[0]!r} "
                f"({dur:g} s in reco2dur, tolerance {SEGMENT_OVERSHOOT} s)",
                e.line,
            )


def _check_durations(c: _Checker, name: str) -> dict[str, float]:
    """Positive finite numbers, one a line; returns the valid ones."""
    out: dict[str, float] = {}
    for e in (c.load(name) or {}).values():
        try:
            value = float(e.value)
        except ValueError:
            c.error(name, f"expected one number for {e.key!r}, got {e.value!r}", e.line)
            continue
        if not (math.isfinite(value) and value > 0):
            c.error(
                name, f"duration of {e.key!r} must be positive and finite, got {e.value}", e.line
            )
            continue
        out[e.key] = value
    return out


# other utterance- and speaker-keyed files -------------------------------------------------------


def _listing(path: Path) -> list[str]:
    """Regular, non-hidden files of a data dir, sorted."""
    return sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith("."))


def _check_utt_files(c: _Checker, utts: set[str]) -> None:
    for name in _listing(c.path):
        if name in ("utt2spk", "segments") or not (is_utt_file(name) or name in STRICT_UTT_FILES):
            continue
        entries = c.load(name)
        if entries is None or not utts:
            continue
        strict = name in STRICT_UTT_FILES and not c.opts.stage_input  # stages take subsets
        c.compare_keys(name, entries, utts, "utt2spk", subset_ok=not strict)
    _check_durations(c, "utt2dur")
    for e in (c.load(UTT2WEIGHT) or {}).values():
        problem = weight_problem(e.value)
        if problem is not None:
            c.error(UTT2WEIGHT, f"{e.key!r}: {problem}", e.line)
    for e in (c.load("utt2num_frames") or {}).values():
        if not (e.value.isdigit() and int(e.value) > 0):
            c.error("utt2num_frames", f"expected a positive integer, got {e.value!r}", e.line)


def _check_spk_files(c: _Checker, speakers: set[str]) -> None:
    if not speakers:
        return
    for name in ("spk2gender", "cmvn.scp"):
        entries = c.load(name)
        if entries is not None:
            c.compare_keys(name, entries, speakers, "utt2spk", "speaker")
    for e in (c.load("spk2gender") or {}).values():
        if e.value not in ("m", "f"):
            c.error(
                "spk2gender", f"gender of {e.key!r} must be 'm' or 'f', got {e.value!r}", e.line
            )
