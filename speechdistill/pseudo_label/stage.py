"""The pseudo-label stage: label this process's shards of the plan, then merge every shard's
results into the output data dir (:func:`finalize`).

Shards (``--num-jobs``/``--job`` for recipe jobs, times the processes of ``accelerate launch``)
take every S-th batch of the same plan, so the result does not depend on how the work was split.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from speechdistill.audio import AudioError, AudioReader
from speechdistill.cache import CACHE_DIR, CacheIndex, save_shard
from speechdistill.datadir import check_stage_input, write_kv
from speechdistill.datadir.fix import load_tables, restrict, write_tables
from speechdistill.pseudo_label.config import WORK_DIR, PseudoLabelConfig, UttLabel
from speechdistill.pseudo_label.ct2 import CT2Labeler
from speechdistill.pseudo_label.hf import HFLabeler
from speechdistill.pseudo_label.plan import (
    Plan,
    load_or_write_plan,
    make_plan,
    open_results,
    read_results,
    too_long_message,
)
from speechdistill.pseudo_label.stats import LANGUAGE_STAT, STATS
from speechdistill.utils import LOCK_FILE, PathLike, atomic_write_text, run_lock
from speechdistill.whisper.language import check_model_language
from speechdistill.whisper.tokens import WINDOW_SECONDS

log = logging.getLogger(__name__)

__all__ = ["PseudoLabelSummary", "finalize", "make_labeler", "pseudo_label"]


def make_labeler(teacher: PathLike, config: PseudoLabelConfig):
    """The labeler of ``config.backend`` (``hf`` or ``ct2``)."""
    if config.backend == "hf":
        return HFLabeler.from_pretrained(teacher, config)
    if config.backend == "ct2":
        return CT2Labeler.from_pretrained(teacher, config)
    raise ValueError(f"unknown backend {config.backend!r} (hf or ct2)")


def _dist() -> tuple[int, int, Any]:
    """(rank, world size, accelerate state or None) of this process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())  # CPU: gloo process group
        return state.process_index, state.num_processes, state
    return 0, 1, None


def _fmt(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return "nan" if math.isnan(value) else f"{value:.6g}"


@dataclass
class PseudoLabelSummary:
    """Counts and speed of a run (``pseudo_label.json``)."""

    num_utts: int
    num_unreadable: int
    #: utterances longer than ``max_duration``, not labelled (listed in ``bad_utts``)
    num_too_long: int
    audio_seconds: float
    wall_seconds: float
    num_shards: int
    config: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["utts_per_second"] = (
            round(self.num_utts / self.wall_seconds, 3) if self.wall_seconds else None
        )
        d["rtfx"] = round(self.audio_seconds / self.wall_seconds, 3) if self.wall_seconds else None
        return d


def pseudo_label(
    teacher: PathLike,
    data: PathLike,
    out: PathLike,
    config: PseudoLabelConfig | None = None,
    *,
    num_jobs: int = 1,
    job: int = 1,
    labeler: Any = None,
) -> PseudoLabelSummary | None:
    """Label this process's share of ``data`` into ``out``; finalise when the run is whole.

    With ``num_jobs > 1`` (recipe jobs on one output dir) call :func:`finalize` once every job
    has finished. Under ``accelerate launch`` each process takes a shard and the main process
    finalises after all are done. Returns the summary when this call finalised.
    """
    config = config or PseudoLabelConfig()
    if not 0 < config.max_duration <= WINDOW_SECONDS:
        raise ValueError(
            f"--max-duration {config.max_duration:g}: must be in (0, {WINDOW_SECONDS:g}] s "
            "(the teacher's window; longer audio would be truncated)"
        )
    if config.cache_encoder and config.encoder_window < WINDOW_SECONDS:
        raise ValueError("--cache-encoder needs the full 30 s encoder window (the student's)")
    if not 1 <= job <= num_jobs:
        raise ValueError(f"job {job} is not in 1..{num_jobs}")
    check_stage_input(data, "pseudo-label")  # before the teacher pass, not after it
    if labeler is None:
        check_model_language(teacher, config.language, "the teacher")
    out = Path(out)
    rank, _, state = _dist()
    if state is not None and state.device.type == "cuda":
        config.device = str(state.device)
    lock_name = LOCK_FILE if num_jobs == 1 else f"{LOCK_FILE}.job{job}-of-{num_jobs}"
    with run_lock(out, lock_name) if rank == 0 else contextlib.nullcontext():
        return _pseudo_label(teacher, data, out, config, num_jobs, job, labeler, state)


def _pseudo_label(
    teacher: PathLike, data: PathLike, out: Path, config: PseudoLabelConfig, num_jobs: int,
    job: int, labeler: Any, state: Any,
) -> PseudoLabelSummary | None:  # fmt: skip
    work = out / WORK_DIR
    rank, world = (0, 1) if state is None else (state.process_index, state.num_processes)
    plan = make_plan(data, teacher, config)
    if rank == 0:
        plan = load_or_write_plan(work, plan)
    if state is not None:
        state.wait_for_everyone()
        plan = load_or_write_plan(work, plan)
    shards = num_jobs * world
    shard = (job - 1) * world + rank
    done = read_results(work)
    mine = [i for i in range(len(plan.batches)) if i % shards == shard and i not in done]
    if done:
        log.info("resuming: %d of %d batches already done", len(done), len(plan.batches))

    if mine:
        labeler = labeler or make_labeler(teacher, config)
        _run_batches(labeler, data, out, plan, mine, shard, shards, config)
    if state is not None:
        state.wait_for_everyone()
    if num_jobs == 1 and rank == 0:
        return _finalize(data, out)
    return None


def _run_batches(
    labeler, data: PathLike, out: Path, plan: Plan, batches: list[int], shard: int, shards: int,
    config: PseudoLabelConfig,
) -> None:  # fmt: skip
    reader = AudioReader(data)
    work = out / WORK_DIR
    results = open_results(work / f"results.{shard:03d}-of-{shards:03d}.jsonl")
    total = sum(len(plan.batches[i]) for i in batches)
    bar = tqdm(total=total, desc=f"pseudo-label {Path(data).name}", unit="utt")
    try:
        for index in batches:
            ids, audios, bad = [], [], {}
            for utt in plan.batches[index]:
                try:
                    audios.append(reader(utt))
                    ids.append(utt)
                except AudioError as e:
                    log.warning("skipping %s: %s", utt, e)
                    bad[utt] = str(e)
            t0 = time.perf_counter()
            labels = labeler.label(ids, audios) if ids else []
            elapsed = time.perf_counter() - t0
            _write_caches(out, index, labels, config)
            record = {
                "batch": index,
                "seconds": round(elapsed, 4),
                "labels": [
                    {
                        "utt": lb.utt,
                        "text": lb.text,
                        "text_ts": lb.text_ts,
                        "stats": lb.stats,
                        "tokens": lb.tokens,
                        "tokens_ts": lb.tokens_ts,
                        "lang": lb.lang,
                    }
                    for lb in labels
                ],
                "bad": bad,
            }
            results.write(json.dumps(record, ensure_ascii=False) + "\n")
            results.flush()
            os.fsync(results.fileno())
            bar.update(len(plan.batches[index]))
    finally:
        bar.close()
        results.close()


def _write_caches(out: Path, index: int, labels: list[UttLabel], config: PseudoLabelConfig) -> None:
    meta = {"batch": str(index)}
    if config.cache_encoder and labels:
        tensors = {lb.utt: lb.encoder for lb in labels}
        save_shard(out / CACHE_DIR / "encoder" / f"{index:06d}.safetensors", tensors, meta)
    for kind in _rskd_kinds(config) if labels else ():
        tensors = {}
        for lb in labels:
            ids, counts, offsets = getattr(lb, kind)
            tensors.update({f"{lb.utt}/ids": ids, f"{lb.utt}/counts": counts,
                            f"{lb.utt}/offsets": offsets})  # fmt: skip
        save_shard(out / CACHE_DIR / kind / f"{index:06d}.safetensors", tensors, meta)


def _rskd_kinds(config: PseudoLabelConfig | dict[str, Any]) -> tuple[str, ...]:
    """The RS-KD kinds a run caches: the plain label's, and the timestamped label's too."""
    get = config.get if isinstance(config, dict) else lambda k: getattr(config, k)
    if not get("rskd_k"):
        return ()
    return ("rskd", "rskd_ts") if get("return_timestamps") else ("rskd",)


def finalize(data: PathLike, out: PathLike) -> PseudoLabelSummary:
    """Merge every shard's results into the output data dir (fails if a batch is missing)."""
    with run_lock(out):
        return _finalize(data, Path(out))


def _finalize(data: PathLike, out: Path) -> PseudoLabelSummary:
    work = out / WORK_DIR
    plan = Plan.load(work / "plan.json")
    done = read_results(work)
    missing = [i for i in range(len(plan.batches)) if i not in done]
    if missing:
        raise RuntimeError(
            f"{len(missing)} of {len(plan.batches)} batches not labelled yet in {work} "
            f"(e.g. {missing[:5]}): rerun the jobs that did not finish"
        )
    labels: dict[str, dict[str, Any]] = {}
    bad = dict(plan.unreadable)
    wall = 0.0
    for rec in done.values():
        wall += rec["seconds"]
        bad.update(rec["bad"])
        for lb in rec["labels"]:
            labels[lb["utt"]] = lb
    limit = plan.identity["config"].get("max_duration", WINDOW_SECONDS)
    too_long = {u: f"longer than {limit:g} s ({d:.1f} s): not labelled, never truncated"
                for u, d in plan.too_long.items()}  # fmt: skip
    if not labels:
        detail = f"; {too_long_message(plan.too_long, limit)}" if too_long else ""
        raise RuntimeError(f"no utterance of {data} could be labelled{detail}")

    tables, kinds = load_tables(data)
    outputs = ("text.teacher", "text.teacher_ts", "utt2teacher_tokens", "utt2teacher_tokens_ts",
               "bad_utts", "utt2lang", f"utt2{LANGUAGE_STAT}")  # fmt: skip
    for name in (*outputs, *(f"utt2{s}" for s in STATS)):
        tables.pop(name, None)
    write_tables(out, restrict(tables, kinds, labels))
    write_kv(out / "text.teacher", {u: lb["text"] for u, lb in labels.items()})
    tokens = {u: " ".join(map(str, lb["tokens"])) for u, lb in labels.items() if lb["tokens"]}
    write_kv(out / "utt2teacher_tokens", tokens)
    if any(lb["text_ts"] is not None for lb in labels.values()):
        write_kv(out / "text.teacher_ts", {u: lb["text_ts"] or "" for u, lb in labels.items()})
        tokens_ts = {u: " ".join(map(str, lb["tokens_ts"]))
                     for u, lb in labels.items() if lb.get("tokens_ts")}  # fmt: skip
        write_kv(out / "utt2teacher_tokens_ts", tokens_ts)
    for stat in STATS:
        write_kv(out / f"utt2{stat}", {u: _fmt(lb["stats"][stat]) for u, lb in labels.items()})
    _write_languages(out, labels)
    write_kv(out / "utt2dur", {u: _fmt(plan.durations[u]) for u in labels})
    if too_long:
        log.warning("%s (listed in %s)", too_long_message(plan.too_long, limit), out / "bad_utts")
    if bad:
        log.warning(
            "%d utterances skipped (unreadable audio), listed in %s", len(bad), out / "bad_utts"
        )
    if bad or too_long:
        write_kv(out / "bad_utts", {u: " ".join(r.split()) for u, r in {**bad, **too_long}.items()})
    elif (out / "bad_utts").exists():
        (out / "bad_utts").unlink()
    _write_cache_index(out, plan, done)

    config = plan.identity["config"]
    shards = len(list(work.glob("results.*.jsonl")))
    summary = PseudoLabelSummary(
        num_utts=len(labels),
        num_unreadable=len(bad),
        num_too_long=len(too_long),
        audio_seconds=round(sum(plan.durations[u] for u in labels), 3),
        wall_seconds=round(wall, 3),
        num_shards=shards,
        config=config,
    )
    atomic_write_text(out / "pseudo_label.json", json.dumps(summary.to_json(), indent=2) + "\n")
    log.info(
        "pseudo-labelled %d utterances (%.2f h), %d skipped (%d unreadable, %d too long); "
        "%.2f utt/s of model time",
        summary.num_utts, summary.audio_seconds / 3600, len(bad) + len(too_long), len(bad),
        len(too_long), summary.num_utts / max(wall, 1e-9),
    )  # fmt: skip
    return summary


def _write_languages(out: Path, labels: dict[str, dict[str, Any]]) -> None:
    """``utt2lang`` and ``utt2lang_prob`` of a multilingual teacher (none for English-only)."""
    langs = {u: lb["lang"] for u, lb in labels.items() if lb.get("lang")}
    for name in ("utt2lang", f"utt2{LANGUAGE_STAT}"):
        (out / name).unlink(missing_ok=True)  # a previous run's, with another teacher
    if langs:
        write_kv(out / "utt2lang", langs)
        probs = {u: _fmt(lb["stats"].get(LANGUAGE_STAT, math.nan)) for u, lb in labels.items()}
        write_kv(out / f"utt2{LANGUAGE_STAT}", probs)


def _write_cache_index(out: Path, plan: Plan, done: dict[int, dict[str, Any]]) -> None:
    config = plan.identity["config"]
    shards: dict[str, dict[str, str]] = {}
    kinds = (("encoder",) if config["cache_encoder"] else ()) + _rskd_kinds(config)
    for kind in kinds:
        shards[kind] = {
            lb["utt"]: f"{kind}/{index:06d}.safetensors"
            for index, rec in done.items()
            for lb in rec["labels"]
        }
    if shards:
        settings = {k: config[k] for k in ("rskd_k", "rskd_temperature", "seed", "encoder_window")}
        settings["encoder_dtype"] = "float16"
        settings["timestamps"] = bool(config["return_timestamps"])
        CacheIndex(plan.identity["teacher"], settings, shards).save(out / CACHE_DIR)
