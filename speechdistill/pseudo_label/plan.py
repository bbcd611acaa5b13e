"""The fixed batch plan of a pseudo-label run and its per-shard results: what makes it resumable.

The plan (``.pseudo_label/plan.json``) is fixed by the data and the settings; each finished batch
is appended to a per-shard JSON-lines file and fsynced, so after a kill a rerun skips finished
batches and, because every batch is recomputed with the same members, the final output equals an
uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from speechdistill.audio import AudioError, AudioReader
from speechdistill.batching import length_sorted_batches
from speechdistill.pseudo_label.config import PseudoLabelConfig
from speechdistill.teachers.identity import teacher_identity
from speechdistill.utils import PathLike, atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "Plan",
    "load_or_write_plan",
    "make_plan",
    "open_results",
    "read_results",
    "too_long_message",
]


@dataclass
class Plan:
    """The fixed batches of a run and what they were made from."""

    identity: dict[str, Any]
    batches: list[list[str]]
    durations: dict[str, float]
    unreadable: dict[str, str] = field(default_factory=dict)
    #: utterances longer than ``max_duration``: in no batch (never truncated), reported
    too_long: dict[str, float] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> Plan:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def make_plan(data: PathLike, teacher: PathLike, config: PseudoLabelConfig) -> Plan:
    """Read every duration (unreadable audio is recorded, not fatal) and cut length-sorted batches
    of the utterances no longer than ``config.max_duration`` (the longer ones are recorded)."""
    reader = AudioReader(data)
    durations: dict[str, float] = {}
    unreadable: dict[str, str] = {}
    for utt in reader.utt_ids:
        try:
            durations[utt] = round(reader.duration(utt), 4)
        except AudioError as e:
            unreadable[utt] = str(e)
    if unreadable:
        log.warning("%d utterances have unreadable audio and are skipped", len(unreadable))
    digest = hashlib.sha256(json.dumps(durations, sort_keys=True).encode()).hexdigest()
    identity = {
        "config": config.identity(),
        "teacher": teacher_identity(teacher),
        "utterances_sha256": digest,
    }
    too_long = {u: d for u, d in durations.items() if d > config.max_duration}
    if too_long:
        log.warning("%s", too_long_message(too_long, config.max_duration))
    kept = {u: d for u, d in durations.items() if u not in too_long}
    batches = length_sorted_batches(kept, config.batch_size)
    return Plan(identity, batches, durations, unreadable, too_long)


def too_long_message(too_long: dict[str, float], limit: float) -> str:
    """The one-line report of the utterances skipped for their length (the longest named)."""
    utt, dur = max(too_long.items(), key=lambda kv: (kv[1], kv[0]))
    return (
        f"skipped {len(too_long)} utterances longer than {limit:g} s (e.g. {utt}, {dur:.1f} s); "
        "label them with packing/long-form or segment them"
    )


def load_or_write_plan(work: Path, plan: Plan) -> Plan:
    """The plan already saved in ``work`` (it must have ``plan``'s identity), else ``plan``,
    saved there."""
    path = work / "plan.json"
    if path.is_file():
        old = Plan.load(path)
        if old.identity != plan.identity:
            raise ValueError(
                f"{work.parent} holds pseudo-labels made with other settings, teacher or data "
                f"({path}); remove {work.parent} or choose another --out"
            )
        return old
    work.mkdir(parents=True, exist_ok=True)
    plan.save(path)
    return plan


def read_results(work: Path) -> dict[int, dict[str, Any]]:
    """Finished batches from every shard's JSON-lines file (a torn last line is ignored)."""
    done: dict[int, dict[str, Any]] = {}
    for path in sorted(work.glob("results.*.jsonl")):
        for line in path.read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s: ignoring a torn line (the run was killed while writing)", path)
                continue
            done[rec["batch"]] = rec
    return done


def open_results(path: Path) -> IO[str]:
    """Open a results file for appending, dropping a torn last line left by a kill."""
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
    return open(path, "a", encoding="utf-8")
