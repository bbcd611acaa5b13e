"""Kaldi data dirs to and from Hugging Face ``datasets``.

A data dir becomes a :class:`datasets.Dataset` with the columns

- ``id`` (utterance id), ``audio``, ``text`` (when the dir has ``text``), ``speaker``
  (``utt2spk``; None without it), ``duration`` (seconds of the stored audio);
- one string column per extra utterance-keyed file, **named exactly as the file**
  (``text.teacher``, ``utt2avg_logprob`` …), values kept as the file's text so that the round trip
  is exact; an utterance missing from a file gets None.

``audio`` is an ``Audio(sampling_rate=16000, decode=False)`` column whose values hold each
utterance as read by :class:`~speechdistill.audio.AudioReader` (resampled to 16 kHz, mono,
segment-cut) encoded in memory as 16-bit FLAC (lossless, about half the size of WAV; ``wav`` on
request), with ``path`` set to ``<id>.flac`` so that other decoders infer the format. datasets 5
decodes audio only through torchcodec, so nothing here asks datasets to encode or decode audio:
rows are written with ``ArrowWriter`` and audio is decoded with soundfile.

:func:`from_hf` turns such a dataset (or any dataset with an audio column) back into a data dir.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
from datasets import Audio, Features, Value
from datasets.arrow_writer import ArrowWriter
from tqdm import tqdm

from speechdistill.audio import (
    SAMPLE_RATE,
    AudioError,
    AudioReader,
    decode_audio,
    encode_audio,
    format_seconds,
    is_pipe,
    read_audio,
    write_wav,
)
from speechdistill.datadir.core import DataDir, DataDirError, check_id, is_utt_file, write_kv
from speechdistill.utils import PathLike, check_owned, replace_dir

log = logging.getLogger(__name__)

#: The owner of a saved dataset (:data:`~speechdistill.utils.OWNER_FILE`); one without the marker
#: is replaced only if it holds what ``save_to_disk`` writes and nothing else.
HF_OWNER = "data to-hf"
_OWNED = {
    "legacy_record": ("dataset_info.json",),
    "legacy": ("data-*.arrow", "dataset_info.json", "state.json"),
    "hint": "choose another OUT or remove it yourself",
}

#: Files a data dir conversion handles itself (never extra columns / extra files).
RESERVED_FILES = frozenset(
    {"wav.scp", "segments", "text", "utt2spk", "spk2utt", "utt2dur", "reco2dur", "feats.scp"}
)
AUDIO_FORMATS = ("flac", "wav")
_BAD_KEY_CHARS = re.compile(r"[\s/\\]+")


# --------------------------------------------------------------------------------------------
# data dir -> datasets


def extra_utt_files(
    datadir: DataDir | PathLike, extra_files: Sequence[str] | None = None
) -> list[str]:
    """The extra utterance-keyed files to export: all present (None) or the given, checked."""
    d = datadir if isinstance(datadir, DataDir) else DataDir(datadir)
    if extra_files is None:
        return [n for n in d.utt_files() if n not in RESERVED_FILES]
    for name in extra_files:
        if name in RESERVED_FILES or not is_utt_file(name):
            raise ValueError(
                f"{name!r} cannot be an extra file: only utterance-keyed files (text*, utt2*) "
                f"other than {', '.join(sorted(RESERVED_FILES))}"
            )
        if not d.exists(name):
            raise DataDirError(f"extra file {name!r} not found", d.path)
    return list(dict.fromkeys(extra_files))


def hf_features(extra_files: Sequence[str], *, has_text: bool) -> Features:
    """The features of a dataset made by :func:`to_hf`."""
    cols: dict[str, Any] = {
        "id": Value("string"),
        "audio": Audio(sampling_rate=SAMPLE_RATE, decode=False),
    }
    if has_text:
        cols["text"] = Value("string")
    cols["speaker"] = Value("string")
    cols["duration"] = Value("float64")
    for name in extra_files:
        cols[name] = Value("string")
    return Features(cols)


def _rows(d: DataDir, extras: Sequence[str], audio_format: str) -> Iterator[dict[str, Any]]:
    reader = AudioReader(d, sample_rate=SAMPLE_RATE)
    text = d.text() if d.exists("text") else None
    utt2spk = d.utt2spk() if d.exists("utt2spk") else {}
    extra_maps = {name: d.read(name) for name in extras}
    for utt in tqdm(reader.utt_ids, desc=f"to-hf {d.path}", unit="utt"):
        audio = reader(utt)
        row: dict[str, Any] = {
            "id": utt,
            "audio": {
                "bytes": encode_audio(audio, SAMPLE_RATE, audio_format),
                "path": f"{utt}.{audio_format}",
            },
        }
        if text is not None:
            row["text"] = text.get(utt)
        row["speaker"] = utt2spk.get(utt)
        row["duration"] = len(audio) / SAMPLE_RATE
        for name, values in extra_maps.items():
            row[name] = values.get(utt)
        yield row


def _write_arrow(
    d: DataDir, path: Path, extra_files: Sequence[str] | None, audio_format: str
) -> None:
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {AUDIO_FORMATS}, got {audio_format!r}")
    extras = extra_utt_files(d, extra_files)
    features = hf_features(extras, has_text=d.exists("text"))
    log.info("%s -> datasets: columns %s", d.path, ", ".join(features))
    with ArrowWriter(path=str(path), features=features) as writer:
        for row in _rows(d, extras, audio_format):
            writer.write(row)
        writer.finalize()


def to_hf(
    datadir: DataDir | PathLike,
    *,
    extra_files: Sequence[str] | None = None,
    audio_format: str = "flac",
    cache_dir: PathLike | None = None,
) -> datasets.Dataset:
    """A data dir as a :class:`datasets.Dataset` (see the module docstring for the columns).

    ``extra_files``: None exports every extra utterance-keyed file, ``[]`` none. Without
    ``cache_dir`` the dataset is held in memory; with it, it is memory-mapped from an Arrow
    file written there (for corpora larger than memory).
    """
    d = datadir if isinstance(datadir, DataDir) else DataDir(datadir)
    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="speechdistill-hf-") as tmp:
            path = Path(tmp) / "data.arrow"
            _write_arrow(d, path, extra_files, audio_format)
            return datasets.Dataset.from_file(str(path), in_memory=True)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / f"{d.path.resolve().name}.arrow"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=cache)
    os.close(fd)
    try:
        _write_arrow(d, Path(tmp_name), extra_files, audio_format)
        os.replace(tmp_name, final)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return datasets.Dataset.from_file(str(final))


def save_to_hf(
    datadir: DataDir | PathLike,
    out_dir: PathLike,
    *,
    extra_files: Sequence[str] | None = None,
    audio_format: str = "flac",
) -> Path:
    """Write :func:`to_hf`'s dataset with ``save_to_disk`` to ``out_dir`` (replaced as a whole).

    Rows stream through a temporary Arrow file beside ``out_dir``, so memory stays small.
    An existing ``out_dir`` is replaced only if it is empty or an earlier output (ValueError).
    """
    out = Path(out_dir)
    check_owned(out, HF_OWNER, **_OWNED)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        ds = to_hf(datadir, extra_files=extra_files, audio_format=audio_format, cache_dir=tmp)
        ds.save_to_disk(str(tmp / "dataset"))
        del ds
        replace_dir(tmp / "dataset", out, HF_OWNER, **_OWNED)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("saved %s", out)
    return out


# --------------------------------------------------------------------------------------------
# datasets -> data dir


def load_hf(
    dataset: datasets.Dataset | datasets.DatasetDict | PathLike, split: str = "train"
) -> datasets.Dataset:
    """A Dataset from a Dataset, a DatasetDict (its ``split``), a save_to_disk folder or a Hub id."""
    name = None
    if isinstance(dataset, str | os.PathLike):
        name = str(dataset)
        if Path(name).is_dir():
            dataset = datasets.load_from_disk(name)
        elif Path(name).exists():
            raise ValueError(f"{name} is not a folder written by save_to_disk")
        elif name.startswith(("/", ".", "~")) or os.sep + os.sep in name or name.count("/") > 1:
            raise FileNotFoundError(f"{name}: no such dataset folder (nor a Hub id)")
        else:
            log.info("%s is not a local folder: loading it from the Hub (split %s)", name, split)
            return datasets.load_dataset(name, split=split)
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise ValueError(
                f"split {split!r} not in {name or 'the dataset'}; it has {', '.join(dataset)}"
            )
        dataset = dataset[split]
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"expected a datasets.Dataset, got {type(dataset).__name__}")
    return dataset


def clean_key(value: object) -> str:
    """A Kaldi key from any value: whitespace and path separators become ``_``."""
    return _BAD_KEY_CHARS.sub("_", str(value).strip())


def _one_line(value: object, where: str) -> str:
    """A value for a Kaldi file: lists joined by spaces, line breaks become spaces."""
    if isinstance(value, list | tuple):
        return " ".join(_one_line(v, where) for v in value)
    if isinstance(value, dict):
        raise ValueError(f"{where}: cannot write a nested value to a Kaldi file: {value!r}")
    return re.sub(r"[\r\n]+", " ", str(value)).strip()


def _column_files(
    columns: Sequence[str], extra_columns: Sequence[str] | None, used: set[str]
) -> dict[str, str]:
    """Map extra columns to file names: utterance-file names kept, others become ``utt2<col>``."""
    if extra_columns is None:
        chosen = [c for c in columns if is_utt_file(c) and c not in used]
    else:
        missing = [c for c in extra_columns if c not in columns]
        if missing:
            raise ValueError(f"extra columns not in the dataset: {', '.join(missing)}")
        chosen = list(extra_columns)
    out: dict[str, str] = {}
    for col in chosen:
        fname = col if is_utt_file(col) else f"utt2{clean_key(col)}"
        if fname in RESERVED_FILES or fname in {"segments", "feats.scp"}:
            log.warning("column %r would overwrite %s: not written", col, fname)
            continue
        if fname in out.values():
            raise ValueError(f"two columns would both be written to {fname!r}")
        out[col] = fname
    return out


def _audio_of(value: Any, utt: str, where: str) -> Any:
    """Decode one value of the audio column (``{bytes, path}`` or a path) to 16 kHz."""
    path = None
    if isinstance(value, dict):
        path = value.get("path")
        if value.get("bytes"):
            return decode_audio(value["bytes"], utt_id=utt, source=f"{where} ({path or 'bytes'})")
    elif isinstance(value, str | os.PathLike):
        path = str(value)
    if not path:
        raise AudioError(f"no audio bytes or path in {where}", utt_id=utt)
    if is_pipe(path):
        raise AudioError("refusing to run a command found in a dataset", source=path, utt_id=utt)
    return read_audio(path, utt_id=utt)


def from_hf(
    dataset: datasets.Dataset | datasets.DatasetDict | PathLike,
    out_dir: PathLike,
    *,
    split: str = "train",
    audio_column: str = "audio",
    text_column: str | None = "text",
    id_column: str | None = "id",
    speaker_column: str | None = "speaker",
    extra_columns: Sequence[str] | None = None,
    audio_dir: PathLike | None = None,
    skip_errors: bool = False,
) -> DataDir:
    """Write a dataset as a Kaldi data dir with 16 kHz WAV files under ``audio_dir``.

    Utterance ids come from ``id_column``, else the audio path's stem, else the row number;
    they are prefixed with the speaker (``spk-utt``) unless they already are. Without a speaker
    column every utterance is its own speaker. Extra columns (default: those named like
    utterance files, ``text.*``/``utt2*``) are written as files of the same name; other columns
    named in ``extra_columns`` go to ``utt2<column>``. Audio that cannot be decoded is an
    error, or with ``skip_errors`` is skipped and listed in the log. Writes ``wav.scp``,
    ``text``, ``utt2spk``, ``spk2utt``, ``utt2dur`` and the extra files.
    """
    ds = load_hf(dataset, split)
    where_name = str(dataset) if isinstance(dataset, str | os.PathLike) else "dataset"
    columns = list(ds.column_names)
    if audio_column not in columns:
        raise ValueError(
            f"audio column {audio_column!r} not in {where_name}: it has {', '.join(columns)}"
        )
    feature = ds.features[audio_column]
    if isinstance(feature, Audio):
        ds = ds.cast_column(audio_column, Audio(decode=False))
    optional = {"text": text_column, "id": id_column, "speaker": speaker_column}
    for role, col in list(optional.items()):
        if col is not None and col not in columns:
            log.info("no %s column %r in %s", role, col, where_name)
            optional[role] = None
    text_col, id_col, spk_col = optional["text"], optional["id"], optional["speaker"]
    used = {audio_column} | {c for c in optional.values() if c}
    extra = _column_files(columns, extra_columns, used)
    ds = ds.select_columns([audio_column, *(c for c in optional.values() if c), *extra])

    out = DataDir(out_dir)
    out.path.mkdir(parents=True, exist_ok=True)
    wav_dir = Path(audio_dir) if audio_dir is not None else out.path / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    wav_scp: dict[str, str] = {}
    text: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    utt2dur: dict[str, float] = {}
    extra_maps: dict[str, dict[str, str]] = {f: {} for f in extra.values()}
    rows: dict[str, int] = {}
    skipped: list[str] = []
    for i, ex in enumerate(tqdm(ds, desc=f"from-hf {where_name}", unit="utt")):
        value = ex[audio_column]
        path = value.get("path") if isinstance(value, dict) else value
        raw_id = ex[id_col] if id_col else None
        if raw_id is None or clean_key(raw_id) == "":
            raw_id = Path(str(path)).stem if path else f"{i:08d}"
        key = clean_key(raw_id)
        spk = clean_key(ex[spk_col]) if spk_col and ex[spk_col] not in (None, "") else ""
        utt = key if not spk or key == spk or key.startswith(spk + "-") else f"{spk}-{key}"
        check_id(utt, f"utterance id of {where_name}[{i}]")
        if utt in rows:
            raise ValueError(
                f"duplicate utterance id {utt!r} in {where_name} (rows {rows[utt]} and {i})"
            )
        rows[utt] = i
        try:
            audio = _audio_of(value, utt, f"{where_name}[{i}]")
        except AudioError as e:
            if not skip_errors:
                raise
            log.warning("skipping: %s", e)
            skipped.append(utt)
            continue
        wav = (wav_dir / f"{utt}.wav").resolve()
        write_wav(wav, audio)
        wav_scp[utt] = str(wav)
        utt2spk[utt] = spk or utt
        utt2dur[utt] = len(audio) / SAMPLE_RATE
        if text_col and ex[text_col] is not None:
            text[utt] = _one_line(ex[text_col], f"{where_name}[{i}] column {text_col!r}")
        for col, fname in extra.items():
            if ex[col] is not None:
                extra_maps[fname][utt] = _one_line(ex[col], f"{where_name}[{i}] column {col!r}")
    if skipped:
        log.warning("skipped %d utterance(s) with bad audio: %s", len(skipped), " ".join(skipped))
    if not wav_scp:
        raise ValueError(f"no usable utterances in {where_name}")
    _remove_stale(out, {"text"} if text else set(), set(extra_maps))
    out.write("wav.scp", wav_scp)
    out.write_utt2spk(utt2spk)
    out.write("utt2dur", {u: format_seconds(v) for u, v in utt2dur.items()})
    if text:
        out.write("text", text)
        if len(text) < len(wav_scp):
            log.warning("%d utterance(s) have no text", len(wav_scp) - len(text))
    for fname, values in extra_maps.items():
        write_kv(out.file(fname), values)
    log.info(
        "wrote %s: %d utterances, %d speakers", out.path, len(wav_scp), len(set(utt2spk.values()))
    )
    return out


def _remove_stale(out: DataDir, text: set[str], extra: set[str]) -> None:
    """Remove files of an earlier data dir in ``out_dir`` that would no longer match."""
    keep = {"wav.scp", "utt2spk", "spk2utt", "utt2dur"} | text | extra
    stale = [
        p.name
        for p in out.path.iterdir()
        if p.is_file()
        and p.name not in keep
        and (is_utt_file(p.name) or p.name in {"reco2dur", "cmvn.scp", "spk2gender"})
    ]
    for name in stale:
        out.file(name).unlink()
    if stale:
        log.warning("removed stale files from %s: %s", out.path, ", ".join(sorted(stale)))
