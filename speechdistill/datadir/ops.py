"""Operations on whole Kaldi data dirs: subset, combine, copy, split and merging job outputs.

Ports of Kaldi's ``utils/subset_data_dir.sh``, ``combine_data.sh``, ``copy_data_dir.sh`` and
``split_data.sh``. Every file the toolkit recognises (see :func:`~speechdistill.datadir.fix.file_kind`)
is carried over, restricted to the chosen utterances, their speakers and recordings; other files
are not copied. Outputs are written atomically and C-sorted.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import random as _random
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from speechdistill.datadir.core import DataDirError, c_sorted, read_kaldi_file
from speechdistill.datadir.fix import (
    Kind,
    Tables,
    file_kind,
    fix,
    load_tables,
    read_table,
    render,
    restrict,
    write_tables,
)
from speechdistill.utils import PathLike, atomic_write_text, replace_dir

log = logging.getLogger(__name__)

MANIFEST = ".manifest.json"


# helpers --------------------------------------------------------------------------------------


def _same_dir(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _prepare_dst(dst: Path, srcs: Sequence[Path]) -> None:
    """Create ``dst``; remove data files left there by an earlier run (they would be stale)."""
    for src in srcs:
        if _same_dir(src, dst):
            raise DataDirError(f"destination is the same directory as the source {src}", dst)
    dst.mkdir(parents=True, exist_ok=True)
    for p in dst.iterdir():
        if p.is_file() and not p.name.startswith(".") and file_kind(p.name, False):
            log.debug("%s: removing stale %s", dst, p.name)
            p.unlink()


def _write_and_fix(dst: Path, tables: Tables) -> None:
    write_tables(dst, tables)
    fix(dst, backup=False)


def _read_ids(source: PathLike | Iterable[str], what: str) -> list[str]:
    """Ids from a file (first field of each line) or from an iterable of strings."""
    if isinstance(source, str | os.PathLike):
        ids = read_keys(source)
        if not ids:
            raise DataDirError(f"empty {what} list", source)
        return ids
    return [str(x) for x in source]


# subset ---------------------------------------------------------------------------------------


def subset(
    src: PathLike,
    dst: PathLike,
    *,
    utt_list: PathLike | Iterable[str] | None = None,
    first: int | None = None,
    last: int | None = None,
    random: int | None = None,
    seed: int = 0,
    spk_list: PathLike | Iterable[str] | None = None,
) -> Path:
    """Copy ``src`` to ``dst`` restricted to some utterances (Kaldi's ``subset_data_dir.sh``).

    Exactly one selector: ``utt_list``/``spk_list`` (a file whose first field is the id, or an
    iterable of ids), the ``first``/``last`` N utterances in C order, or ``random`` N utterances
    drawn with ``seed`` (deterministic). Returns ``dst``.
    """
    src, dst = Path(src), Path(dst)
    selectors = {"utt_list": utt_list, "first": first, "last": last, "random": random}
    given = [k for k, v in {**selectors, "spk_list": spk_list}.items() if v is not None]
    if len(given) != 1:
        raise ValueError(
            f"subset: give exactly one of utt_list, spk_list, first, last, random; got {given}"
        )
    tables, kinds = load_tables(src)
    utt2spk = tables["utt2spk"]
    if utt_list is not None:
        chosen = _known(src, _read_ids(utt_list, "utterance"), utt2spk.keys(), "utterance")
    elif spk_list is not None:
        speakers = set(
            _known(src, _read_ids(spk_list, "speaker"), set(utt2spk.values()), "speaker")
        )
        chosen = [u for u, s in utt2spk.items() if s in speakers]
    else:
        chosen = _take(src, c_sorted(utt2spk), first, last, random, seed)
    if not chosen:
        raise DataDirError("subset: no utterances selected", src)
    _prepare_dst(dst, [src])
    _write_and_fix(dst, restrict(tables, kinds, chosen))
    log.info("subset: %d of %d utterances of %s -> %s", len(set(chosen)), len(utt2spk), src, dst)
    return dst


def _known(src: Path, ids: list[str], known: Iterable[str], what: str) -> list[str]:
    known = set(known)
    unknown = [i for i in ids if i not in known]
    if unknown:
        log.warning(
            "%s: %d %s ids not in the data dir (e.g. %r)", src, len(unknown), what, unknown[0]
        )
    return [i for i in ids if i in known]


def _take(
    src: Path, utts: list[str], first: int | None, last: int | None, n_random: int | None, seed: int
) -> list[str]:
    n = next(x for x in (first, last, n_random) if x is not None)
    if n <= 0 or n > len(utts):
        raise DataDirError(f"subset: cannot take {n} utterances: the data dir has {len(utts)}", src)
    if first is not None:
        return utts[:n]
    if last is not None:
        return utts[-n:]
    return c_sorted(_random.Random(seed).sample(utts, n))


# copy -----------------------------------------------------------------------------------------


def copy(
    src: PathLike,
    dst: PathLike,
    *,
    utt_prefix: str = "",
    utt_suffix: str = "",
    spk_prefix: str = "",
    spk_suffix: str = "",
) -> Path:
    """Copy a data dir, optionally renaming utterances and speakers (``copy_data_dir.sh``).

    Recording ids (``wav.scp`` with ``segments``) are kept; without ``segments`` ``wav.scp`` is
    keyed by utterance and renamed with it. Returns ``dst``.
    """
    src, dst = Path(src), Path(dst)
    tables, kinds = load_tables(src)

    def utt(u: str) -> str:
        return f"{utt_prefix}{u}{utt_suffix}"

    def spk(s: str) -> str:
        return f"{spk_prefix}{s}{spk_suffix}"

    rename = {"utt": utt, "spk": spk, "reco": str}
    out: Tables = {}
    for name, table in tables.items():
        key = rename[kinds[name]]
        out[name] = {key(k): v for k, v in table.items()}
    out["utt2spk"] = {utt(u): spk(s) for u, s in tables["utt2spk"].items()}
    _prepare_dst(dst, [src])
    _write_and_fix(dst, out)
    return dst


# combine --------------------------------------------------------------------------------------


def combine(dst: PathLike, srcs: Sequence[PathLike]) -> Path:
    """Union of data dirs (Kaldi's ``combine_data.sh``), then fixed. Returns ``dst``.

    A key with different values in two dirs is an error naming both. A file missing from some of
    the dirs is not combined (warning). When only some dirs have ``segments``, the others get
    identity segments (recording = utterance) from their ``utt2dur`` or ``reco2dur``.
    """
    dst = Path(dst)
    paths = [Path(s) for s in srcs]
    if not paths:
        raise ValueError("combine: no source data dirs")
    loaded = [load_tables(p) for p in paths]
    if any("segments" in t for t, _ in loaded):
        loaded = [_with_segments(p, t, k) for p, (t, k) in zip(paths, loaded, strict=True)]
    merged: Tables = {}
    for name in sorted({n for t, _ in loaded for n in t}):
        missing = [str(p) for p, (t, _) in zip(paths, loaded, strict=True) if name not in t]
        if missing:
            log.warning("combine: not combining %s: missing from %s", name, ", ".join(missing))
            continue
        merged[name] = _union(name, [(p, t[name]) for p, (t, _) in zip(paths, loaded, strict=True)])
    _prepare_dst(dst, paths)
    _write_and_fix(dst, merged)
    log.info("combine: %d utterances from %d dirs -> %s", len(merged["utt2spk"]), len(paths), dst)
    return dst


def _union(name: str, parts: Sequence[tuple[Path, dict[str, str]]]) -> dict[str, str]:
    out: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for path, table in parts:
        for k, v in table.items():
            if k in out and out[k] != v:
                raise DataDirError(
                    f"combine: key {k!r} of {name} differs between {origin[k]} "
                    f"({out[k]!r}) and {path} ({v!r})"
                )
            out[k] = v
            origin.setdefault(k, path)
    return out


def _with_segments(
    path: Path, tables: Tables, kinds: dict[str, Kind]
) -> tuple[Tables, dict[str, Kind]]:
    """Give a dir without ``segments`` identity segments (recording = utterance, whole file)."""
    if "segments" in tables:
        return tables, kinds
    durations = tables.get("utt2dur") or tables.get("reco2dur")
    if durations is None:
        raise DataDirError(
            "has no segments while other dirs do: identity segments need utt2dur or reco2dur "
            "(run `speechdistill data utt2dur` first)",
            path,
        )
    missing = sorted(tables["utt2spk"].keys() - durations.keys())
    if missing:
        raise DataDirError(f"no duration for {len(missing)} utterances (e.g. {missing[0]!r})", path)
    tables = dict(tables)
    tables["segments"] = {u: f"{u} 0 {durations[u]}" for u in tables["utt2spk"]}
    tables.setdefault("reco2dur", {u: durations[u] for u in tables["utt2spk"]})
    kinds = {**kinds, "segments": "utt", "reco2dur": "reco"}
    for name in kinds:
        if name in tables and file_kind(name, True) == "reco":
            kinds[name] = "reco"
    return tables, kinds


# split ----------------------------------------------------------------------------------------


def split_dir(src: PathLike, n: int, *, by_speaker: bool = False) -> Path:
    """Where :func:`split` puts its parts: ``src/split{n}`` (``src/split{n}spk`` by speaker)."""
    return Path(src) / (f"split{n}spk" if by_speaker else f"split{n}")


def split(src: PathLike, n: int, *, by_speaker: bool = False) -> list[Path]:
    """Split a data dir into ``n`` parts ``split{n}/1 … split{n}/n`` (Kaldi's ``split_data.sh``).

    Parts are contiguous runs of utterances in C order, balanced in size (the first ones get one
    more when ``n`` does not divide the count). With ``by_speaker`` no speaker is split across
    parts (they go to ``split{n}spk/``). A split whose source files have not changed since is
    reused; the parts are written beside it and then replace it whole (a directory there that is
    not a split is refused, never removed). Returns the part directories.
    """
    src = Path(src)
    if n < 1:
        raise ValueError(f"split: the number of parts must be positive, got {n}")
    out = split_dir(src, n, by_speaker=by_speaker)
    parts = [out / str(i) for i in range(1, n + 1)]
    manifest = _manifest(src, n, by_speaker)
    if _is_fresh(out, manifest, parts):
        log.info("split: %s is up to date", out)
        return parts
    tables, kinds = load_tables(src)
    utt2spk = tables["utt2spk"]
    chunks = (
        _chunks_by_speaker(src, utt2spk, n) if by_speaker else _chunks(src, c_sorted(utt2spk), n)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for i, chunk in enumerate(chunks, 1):
            write_tables(tmp / str(i), restrict(tables, kinds, chunk))
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        # an earlier split (or one of Kaldi's split_data.sh: numbered parts only) is replaced
        replace_dir(tmp, out, "data split", legacy_record=("1",), legacy=("[0-9]*", MANIFEST),
                    hint="move it out of the data dir or remove it yourself")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("split: %s into %d parts in %s", src, n, out)
    return parts


def _chunks(src: Path, utts: list[str], n: int) -> list[list[str]]:
    """``n`` contiguous chunks whose sizes differ by at most one."""
    if n > len(utts):
        raise DataDirError(f"split: cannot split {len(utts)} utterances into {n} parts", src)
    size, extra = divmod(len(utts), n)
    chunks, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        chunks.append(utts[start:end])
        start = end
    return chunks


def _chunks_by_speaker(src: Path, utt2spk: dict[str, str], n: int) -> list[list[str]]:
    """``n`` contiguous runs of whole speakers; each cut is placed nearest an even share of the rest."""
    spk2utts: dict[str, list[str]] = {}
    for u in c_sorted(utt2spk):
        spk2utts.setdefault(utt2spk[u], []).append(u)
    speakers = c_sorted(spk2utts)
    if n > len(speakers):
        raise DataDirError(f"split: cannot split {len(speakers)} speakers into {n} parts", src)
    cum = [0]
    for s in speakers:
        cum.append(cum[-1] + len(spk2utts[s]))
    cuts, prev = [0], 0
    for k in range(1, n):
        target = cum[prev] + (cum[-1] - cum[prev]) / (n - k + 1)  # share out what is left
        lo, hi = prev + 1, len(speakers) - (n - k)
        prev = min(range(lo, hi + 1), key=lambda b: (abs(cum[b] - target), b))
        cuts.append(prev)
    cuts.append(len(speakers))
    return [[u for s in speakers[a:b] for u in spk2utts[s]] for a, b in itertools.pairwise(cuts)]


def _manifest(src: Path, n: int, by_speaker: bool) -> dict[str, object]:
    """What a split was made from: its options and a hash of each data file."""
    files = {}
    for p in sorted(src.iterdir()):
        if p.is_file() and not p.name.startswith(".") and file_kind(p.name, False):
            files[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return {"n": n, "by_speaker": by_speaker, "files": files}


def _is_fresh(out: Path, manifest: dict[str, object], parts: list[Path]) -> bool:
    try:
        old = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return old == manifest and all((p / "utt2spk").is_file() for p in parts)


# merging job outputs --------------------------------------------------------------------------


def merge_split(
    outputs: Sequence[PathLike],
    dst_file: PathLike,
    *,
    expected: Iterable[str] | None = None,
) -> int:
    """Merge per-job ``key value`` files into ``dst_file`` (C order); return the number of keys.

    A key in two outputs is an error naming both files; with ``expected`` (e.g. the utterance
    ids of the split data dir) a missing or unexpected key is an error too.
    """
    if not outputs:
        raise ValueError("merge: no input files")
    merged: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for out in map(Path, outputs):
        table = read_table(out)
        for key, value in table.items():
            if key in merged:
                raise DataDirError(f"key {key!r} also in {origin[key]}", out)
            merged[key] = value
            origin[key] = out
    if expected is not None:
        _check_expected(Path(dst_file), merged.keys(), set(expected))
    atomic_write_text(dst_file, render(merged))
    log.info("merge: %d keys from %d files -> %s", len(merged), len(outputs), dst_file)
    return len(merged)


def _check_expected(dst: Path, keys: Iterable[str], expected: set[str]) -> None:
    keys = set(keys)
    missing, unexpected = c_sorted(expected - keys), c_sorted(keys - expected)
    problems = []
    if missing:
        problems.append(f"{len(missing)} keys missing (e.g. {missing[0]!r})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]!r})")
    if problems:
        raise DataDirError(
            "merge: " + "; ".join(problems) + ": a job lost or invented entries", dst
        )


def read_keys(path: PathLike) -> list[str]:
    """The first field of each non-blank line of a file (an id list, or any Kaldi file)."""
    return [e.key for e in read_kaldi_file(path).entries()]
