"""Teacher caches for fast training: encoder hidden states and sparse (RS-KD) distributions.

Stored in safetensors shards (one per pseudo-labelling batch, written atomically) under a
pseudo-labelled data dir's :data:`CACHE_DIR`, with ``index.json`` mapping each utterance to its
shard and recording the teacher's identity, so a trainer never mixes caches of different
teachers.

Kinds of tensors (:data:`KINDS`): ``encoder`` states, ``rskd`` samples of the plain
pseudo-label and, when it was labelled with timestamps, ``rskd_ts`` samples of the timestamped
one; ``index.json`` records the settings (``timestamps`` among them).

Random-sampling KD (RS-KD): at every position of the teacher-forced pseudo-label, ``K`` tokens
are drawn with replacement from the teacher's softmax at temperature ``T``; the unique ids and
their counts are kept. ``counts / K`` is an unbiased estimate of the teacher's distribution, so
``-Σ_v (count_v / K) log q(v)`` is an unbiased estimate of the cross-entropy ``H(p, q)`` whose
gradient is that of ``KL(p ‖ q)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from speechdistill.utils import (
    PathLike,
    atomic_write_bytes,
    atomic_write_text,
    check_owned,
    replace_dir,
)

log = logging.getLogger(__name__)

CACHE_DIR = "cache"  # a pseudo-labelled data dir's cache, beside its text.teacher
INDEX = "index.json"
#: The owner of a combined cache (:data:`~speechdistill.utils.OWNER_FILE`); a cache without the
#: marker is replaced only if it holds an index and nothing else than a cache's entries.
COMBINED_OWNER = "data combine"
_OWNED = {"legacy_record": (INDEX,), "legacy": (INDEX, "encoder", "rskd", "rskd_ts", "[0-9]*")}
#: ``rskd``: the samples of the plain label (after ``<|notimestamps|>``); ``rskd_ts``: those of
#: the timestamped label (pseudo-labelled with timestamps only).
KINDS = ("encoder", "rskd", "rskd_ts")


def save_shard(
    path: PathLike, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]
) -> None:
    """Write a safetensors shard atomically. Serialised in memory first, so that a failed write
    (a full disk) is an ``OSError`` naming ``path`` with its errno, not a ``SafetensorError``."""
    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)


def rskd_sample(
    logits: torch.Tensor, k: int, temperature: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``k`` tokens per row of ``logits`` (T, V) from softmax(logits / T).

    Returns ``(ids int32, counts uint8, offsets int32)``: row ``t`` holds
    ``ids[offsets[t]:offsets[t+1]]`` with their counts (summing to ``k``).
    """
    if not 1 <= k <= 255:
        raise ValueError(f"RS-KD sample size must be in 1..255, got {k}")
    if logits.shape[0] == 0:  # an empty label (all timestamps, cut at the token limit)
        return (torch.zeros(0, dtype=torch.int32), torch.zeros(0, dtype=torch.uint8),
                torch.zeros(1, dtype=torch.int32))  # fmt: skip
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    draws = torch.multinomial(probs, k, replacement=True, generator=generator)
    ids, counts, offsets = [], [], [0]
    for row in draws:
        uniq, cnt = torch.unique(row, return_counts=True)
        ids.append(uniq)
        counts.append(cnt)
        offsets.append(offsets[-1] + len(uniq))
    return (
        torch.cat(ids).to(torch.int32),
        torch.cat(counts).to(torch.uint8),
        torch.tensor(offsets, dtype=torch.int32),
    )


def utt_generator(seed: int, utt_id: str) -> torch.Generator:
    """A generator seeded by (seed, utterance): the same draws whatever the batching or job."""
    digest = hashlib.sha256(f"{seed}:{utt_id}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


@dataclass
class CacheIndex:
    """What ``index.json`` holds: the teacher, the settings and each utterance's shard."""

    teacher: dict
    settings: dict
    shards: dict[str, dict[str, str]]  # kind -> utt -> shard file (relative to the cache dir)

    @property
    def utterances(self) -> set[str]:
        """Every utterance with at least one cached tensor."""
        return set().union(*self.shards.values())

    def save(self, cache_dir: PathLike) -> None:
        body = {"teacher": self.teacher, "settings": self.settings, "shards": self.shards}
        atomic_write_text(
            Path(cache_dir) / INDEX, json.dumps(body, indent=1, sort_keys=True) + "\n"
        )

    @classmethod
    def load(cls, cache_dir: PathLike) -> CacheIndex:
        path = Path(cache_dir) / INDEX
        if not path.is_file():
            raise FileNotFoundError(f"no cache index {path} (pseudo-label with --cache-…)")
        body = json.loads(path.read_text(encoding="utf-8"))
        return cls(body["teacher"], body["settings"], body["shards"])


class CacheReader:
    """Random access to cached tensors by utterance, checking the teacher's identity."""

    def __init__(self, cache_dir: PathLike, *, teacher: dict | None = None):
        self.dir = Path(cache_dir)
        self.index = CacheIndex.load(self.dir)
        if teacher is not None and teacher != self.index.teacher:
            raise ValueError(
                f"cache {self.dir} was made by teacher {self.index.teacher}, not {teacher}"
            )
        self._loaded: dict[str, dict[str, torch.Tensor]] = {}

    def has(self, kind: str, utt_id: str) -> bool:
        return utt_id in self.index.shards.get(kind, {})

    def _shard(self, name: str) -> dict[str, torch.Tensor]:
        if name not in self._loaded:
            if len(self._loaded) > 64:
                self._loaded.clear()
            try:
                self._loaded[name] = load_file(self.dir / name)
            except SafetensorError as e:
                raise ValueError(
                    f"{self.dir / name}: not a readable safetensors file ({e})"
                ) from None
        return self._loaded[name]

    def encoder(self, utt_id: str) -> torch.Tensor:
        """Encoder hidden states (frames, d_model), float16."""
        return self._shard(self.index.shards["encoder"][utt_id])[utt_id]

    def rskd(
        self, utt_id: str, kind: str = "rskd"
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(ids, counts, offsets)`` of the sparse teacher distributions (see :func:`rskd_sample`)
        of the plain label (``kind="rskd"``) or the timestamped one (``"rskd_ts"``)."""
        shard = self._shard(self.index.shards[kind][utt_id])
        return shard[f"{utt_id}/ids"], shard[f"{utt_id}/counts"], shard[f"{utt_id}/offsets"]

    def utt_ids(self, kind: str) -> Iterable[str]:
        return self.index.shards.get(kind, {}).keys()


def merge_cache_indexes(srcs: Sequence[PathLike]) -> CacheIndex:
    """The index of the union of caches ``srcs``: source ``i``'s shard ``kind/N.safetensors``
    becomes ``i/kind/N.safetensors``. Raises ``ValueError`` when the caches were made by
    different teachers or settings, or share an utterance."""
    indexes = [CacheIndex.load(s) for s in srcs]
    if not indexes:
        raise ValueError("no caches to combine")
    first = indexes[0]
    shards: dict[str, dict[str, str]] = {kind: {} for kind in first.shards}
    origin: dict[str, PathLike] = {}
    for i, (src, index) in enumerate(zip(srcs, indexes, strict=True)):
        for what, mine, theirs in (
            ("teacher", index.teacher, first.teacher),
            ("settings", index.settings, first.settings),
            ("kinds", sorted(index.shards), sorted(first.shards)),
        ):
            if mine != theirs:
                raise ValueError(
                    f"cache {src} differs from {srcs[0]} in its {what}: {mine} vs {theirs}"
                )
        for kind, table in index.shards.items():
            for utt, name in table.items():
                if utt in shards[kind]:
                    raise ValueError(f"utterance {utt} is in the caches of {origin[utt]} and {src}")
                shards[kind][utt] = f"{i}/{name}"
                origin[utt] = src
    return CacheIndex(first.teacher, first.settings, shards)


def combine_caches(dst: PathLike, srcs: Sequence[PathLike], index: CacheIndex) -> CacheIndex:
    """Write the union of caches ``srcs`` (``index``: their :func:`merge_cache_indexes`, merged
    before anything is written) to ``dst``, shards hard-linked (copied across file systems).
    ``dst`` is replaced as a whole, atomically, if it is an earlier cache (``ValueError`` if not)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        for table in index.shards.values():
            for name in set(table.values()):
                i, rel = name.split("/", 1)
                target = tmp / name
                if target.exists():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(Path(srcs[int(i)]) / rel, target)
                except OSError:
                    shutil.copy2(Path(srcs[int(i)]) / rel, target)
        index.save(tmp)
        replace_dir(tmp, dst, COMBINED_OWNER, **_OWNED)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return index


def combine_labelled(dst: PathLike, srcs: Sequence[PathLike]) -> CacheIndex | None:
    """Union of pseudo-labelled data dirs (:func:`speechdistill.datadir.ops.combine`) with their
    teacher caches. Returns the combined cache's index, or ``None`` when not every source has a
    cache: the data are then combined alone (warning) and a stale ``dst`` cache is removed.

    A cache mismatch (teacher, settings, a shared utterance) raises ``ValueError`` before
    anything is written.
    """
    from speechdistill.datadir.ops import combine

    caches = [Path(s) / CACHE_DIR for s in srcs]
    have = [c for c in caches if (c / INDEX).is_file()]
    if have and len(have) < len(caches):
        missing = ", ".join(str(s) for s, c in zip(srcs, caches, strict=True) if c not in have)
        log.warning(
            "combine: not combining the teacher caches (%s/): missing from %s", CACHE_DIR, missing
        )
    index = merge_cache_indexes(caches) if len(have) == len(caches) else None
    check_owned(Path(dst) / CACHE_DIR, COMBINED_OWNER, **_OWNED)
    dst = combine(dst, srcs)
    if index is not None:
        combine_caches(dst / CACHE_DIR, caches, index)
        log.info(
            "combine: teacher caches of %d utterances -> %s", len(index.utterances), dst / CACHE_DIR
        )
    elif (dst / CACHE_DIR).is_dir():
        log.warning("combine: removing the stale teacher cache %s", dst / CACHE_DIR)
        shutil.rmtree(dst / CACHE_DIR)
    return index
