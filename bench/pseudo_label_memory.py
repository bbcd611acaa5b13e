#!/usr/bin/env python
"""Memory of the pseudo-label stage (:mod:`speechdistill.pseudo_label`) over many utterances.

Usage::

    python bench/pseudo_label_memory.py [--num-utts 10000] [--threads 1] [--batch-size 16]
                                        [--work DIR]

Prints a table and writes every figure to ``WORK/results/pseudo_label_memory.json``. Uses the
set-up and helpers of ``bench/pseudo_label.py`` (the mini_en clips, cached in ``WORK``).

``--num-utts`` utterances (20 WAVs of 1-2 s cut from mini_en, listed over and over under distinct
ids), labelled by our stage (hf, 30 s window, batch 16, ``max_new_tokens=4``) with a tiny random
Whisper (d_model 64, :mod:`speechdistill.testing`), in a fresh child process. Per window of
1,000 utterances: VmRSS at every batch end (its floor and median: what stays allocated) and
the window's peak (VmHWM, reset through ``/proc/self/clear_refs`` when a window closes; a
thread also samples VmRSS every 0.5 s); then the peak of ``finalize``. A single VmRSS reading
says little: glibc keeps or returns the ~100 MB of per-batch temporaries from one batch to
the next, so batch ends jump between the floor and floor + 100 MB. "Flat": from the first
window to the last the floor grows by less than :data:`FLOOR_BOUND_MB` and the peak by less
than :data:`PEAK_BOUND_MB` (the median is reported, not judged: it moves with the allocator).

The child runs with ``--threads`` torch threads (1 by default: it measures memory, not speed,
and one thread keeps it from being slowed down by other jobs); recorded in the JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/pseudo_label.py: its helpers, and the environment it sets before transformers loads
sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import soundfile as sf
import torch
from pseudo_label import (
    finish,
    format_table,
    load_average,
    log,
    median,
    num_lines,
    prepare_corpus,
    quiet_transformers,
)

from speechdistill.audio import SAMPLE_RATE, AudioReader
from speechdistill.datadir import DataDir
from speechdistill.pseudo_label import HFLabeler, PseudoLabelConfig, UttLabel, pseudo_label

#: Memory is "flat" when, from the first 1,000-utterance window to the last, the floor (lowest
#: VmRSS at a batch end) grows by less than FLOOR_BOUND_MB and the peak (VmHWM) by less than
#: PEAK_BOUND_MB. Keeping every label record of this run in memory (text, 4 tokens, the
#: statistics: 1.3 KB per utterance as parsed JSON, measured with tracemalloc) would raise the
#: floor by about 12 MB over 9,000 utterances; the floor itself did not move by 0.1 MB between
#: windows. The peak (floor + the batch's temporaries, ~250 MB) spread over 33 MB between the
#: windows of one run with no trend: 50 MB is above that spread and ~6 % of the peak.
FLOOR_BOUND_MB = 10.0
PEAK_BOUND_MB = 50.0
#: Memory is followed per window of this many utterances: VmRSS floor, median, peak.
MEMORY_WINDOW = 1000
#: Short clips for the memory run: this many WAVs, 1.0 s, 1.05 s, ... long.
NUM_SHORT_CLIPS = 20


# --------------------------------------------------------------------------------------------
# probes and inputs


def proc_status_kb(key: str) -> int:
    """A ``/proc/self/status`` field in kB (``VmRSS``, ``VmHWM``); 0 where there is none."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def prepare_memory_inputs(work: Path, corpus: Path, num_utts: int) -> tuple[Path, Path]:
    """The repeated-short-clips data dir and the tiny random teacher of the memory run."""
    from speechdistill.testing import english_tokenizer, save_random_whisper

    mem = work / "memory"
    teacher = mem / "random_teacher"
    if not (teacher / "model.safetensors").is_file():
        save_random_whisper(
            teacher, english_tokenizer(), multilingual=False, max_source_positions=1500
        )
    wav_dir = mem / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    reader = AudioReader(corpus)
    clips = []
    for k, utt in enumerate(reader.utt_ids[:NUM_SHORT_CLIPS]):
        path = wav_dir / f"clip{k:02d}.wav"
        if not path.is_file():
            audio = reader(utt)[: int((1.0 + 0.05 * k) * SAMPLE_RATE)]
            sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
        clips.append(path)
    data = DataDir(mem / f"data_{num_utts}")
    if num_lines(data.file("wav.scp")) != num_utts:
        shutil.rmtree(data.path, ignore_errors=True)
        data.path.mkdir(parents=True)
        # utterance i is clip i mod 20, under the speaker of that clip
        spk = [f"s{i % len(clips):02d}" for i in range(num_utts)]
        utts = [f"{s}-{i:06d}" for i, s in enumerate(spk)]
        data.write("wav.scp", {u: str(clips[i % len(clips)]) for i, u in enumerate(utts)})
        data.write_utt2spk(dict(zip(utts, spk, strict=True)))
    return data.path, teacher


class RssSampler(threading.Thread):
    """VmRSS every ``interval`` seconds, in a daemon thread."""

    def __init__(self, interval: float = 0.5):
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.samples.append((time.perf_counter(), proc_status_kb("VmRSS")))

    def stop(self) -> None:
        self._halt.set()
        self.join()


class ProbeLabeler:
    """Wraps a labeler: VmRSS after every batch, VmHWM per window of ``window`` utterances.

    VmHWM is reset (``clear_refs``) when a window closes, so each window's peak is its own;
    after the last batch it is reset once more, for the peak of ``finalize``.
    """

    def __init__(self, inner: Any, total: int, window: int = MEMORY_WINDOW):
        self.inner = inner
        self.total = total
        self.window = window
        self.done = 0
        self.windows: list[dict[str, Any]] = []  # end (utts done), rss_kb (per batch), peak_kb, t
        self._rss: list[int] = []
        self.last_batch_end = 0.0

    def label(self, utt_ids: Sequence[str], audios: Sequence[np.ndarray]) -> list[UttLabel]:
        labels = self.inner.label(utt_ids, audios)
        before, self.done = self.done, self.done + len(utt_ids)
        self._rss.append(proc_status_kb("VmRSS"))
        if self.done // self.window > before // self.window or self.done >= self.total:
            now = time.perf_counter()
            peak = proc_status_kb("VmHWM")
            self.windows.append({"end": self.done, "rss_kb": self._rss, "peak_kb": peak, "t": now})
            self._rss = []
            reset_peak_rss()
            if self.done >= self.total:
                self.last_batch_end = now
        return labels


def _sampled_peaks(
    windows: list[dict[str, Any]], samples: list[tuple[float, int]], t0: float
) -> None:
    """Add each window's highest 0.5 s VmRSS sample (``sampled_peak_kb``)."""
    start = t0
    for w in windows:
        w["sampled_peak_kb"] = max((kb for t, kb in samples if start <= t <= w["t"]), default=0)
        start = w["t"]


# --------------------------------------------------------------------------------------------
# the run (in a child process) and its figures


def memory_worker(data: Path, teacher: Path, out: Path, batch_size: int, result: Path) -> None:
    """Label ``data`` with our stage and write the memory figures to ``result`` (JSON)."""
    quiet_transformers()
    sampler = RssSampler()
    sampler.start()
    rss_start = proc_status_kb("VmRSS")
    config = PseudoLabelConfig(batch_size=batch_size, max_new_tokens=4)
    probe = ProbeLabeler(HFLabeler.from_pretrained(teacher, config), len(DataDir(data)))
    rss_model = proc_status_kb("VmRSS")
    shutil.rmtree(out, ignore_errors=True)
    exact = reset_peak_rss()  # peaks from here on, the teacher loaded
    t0 = time.perf_counter()
    summary = pseudo_label(teacher, data, out, config, labeler=probe)
    t_end = time.perf_counter()
    finalize_hwm = proc_status_kb("VmHWM")
    sampler.stop()
    assert summary is not None
    _sampled_peaks(probe.windows, sampler.samples, t0)
    finalize_samples = [kb for t, kb in sampler.samples if t >= probe.last_batch_end]
    body = {
        "num_utts": summary.num_utts,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "window_utts": probe.window,
        "peaks_exact": exact,  # VmHWM could be reset: exact peaks per window
        "rss_start_kb": rss_start,
        "rss_model_loaded_kb": rss_model,
        "windows": [{k: v for k, v in w.items() if k != "t"} for w in probe.windows],
        "finalize_peak_kb": finalize_hwm if exact else max(finalize_samples, default=0),
        "rss_end_kb": proc_status_kb("VmRSS"),
        "num_samples": len(sampler.samples),
        "labelling_seconds": round(probe.last_batch_end - t0, 2),
        "finalize_seconds": round(t_end - probe.last_batch_end, 2),
        "results_jsonl_bytes": sum(p.stat().st_size for p in out.glob(".pseudo_label/*.jsonl")),
    }
    result.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")


def run_memory_child(
    work: Path, corpus: Path, num_utts: int, batch_size: int, threads: int
) -> dict[str, Any]:
    """Prepare the inputs here, label them in a fresh interpreter, summarise its figures."""
    data, teacher = prepare_memory_inputs(work, corpus, num_utts)
    result = work / "memory" / "result.json"
    result.unlink(missing_ok=True)
    out = work / "memory" / "out"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--batch-size",
        str(batch_size),
        "--threads",
        str(threads),
        "--memory-worker",
        *map(str, (data, teacher, out, result)),
    ]
    log(f"memory: labelling {num_utts} utterances in a child process ({threads} thread(s))")
    subprocess.run(cmd, check=True)
    return summarise_memory(json.loads(result.read_text(encoding="utf-8")))


def summarise_memory(raw: dict[str, Any]) -> dict[str, Any]:
    """Per window: VmRSS at its end, its floor, median and peak (MB); growth first → last."""

    def mb(kb: float) -> float:
        return round(kb / 1024, 1)

    peak_key = "peak_kb" if raw["peaks_exact"] else "sampled_peak_kb"
    windows = [
        {
            "end": w["end"],
            "rss_at_end_mb": mb(w["rss_kb"][-1]),
            "floor_mb": mb(min(w["rss_kb"])),
            "median_mb": mb(median(w["rss_kb"])),
            "peak_mb": mb(w[peak_key]),
            "sampled_peak_mb": mb(w["sampled_peak_kb"]),
        }
        for w in raw["windows"]
    ]
    first, last = windows[0], windows[-1]
    growth = {k: round(last[k] - first[k], 1) for k in ("floor_mb", "median_mb", "peak_mb")}
    scalars = {k: v for k, v in raw.items() if k != "windows" and not k.endswith("_kb")}
    return {
        **scalars,
        **{k[:-3] + "_mb": mb(v) for k, v in raw.items() if k.endswith("_kb")},
        "peak_source": "VmHWM" if raw["peaks_exact"] else "0.5 s samples",
        "windows": windows,
        "growth_mb": growth,
        "window_peak_range_mb": [
            min(w["peak_mb"] for w in windows),
            max(w["peak_mb"] for w in windows),
        ],
        "floor_bound_mb": FLOOR_BOUND_MB,
        "peak_bound_mb": PEAK_BOUND_MB,
        "flat": growth["floor_mb"] < FLOOR_BOUND_MB and growth["peak_mb"] < PEAK_BOUND_MB,
    }


def _report_windows(windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first window, the one reaching 5,000 utterances (when there is one) and the last."""
    picked = [windows[0]]
    mid = next((w for w in windows if w["end"] >= 5000), None)
    if mid is not None and mid is not windows[-1]:
        picked.append(mid)
    return picked + ([windows[-1]] if windows[-1] is not windows[0] else [])


def memory_table(m: dict[str, Any]) -> str:
    """VmRSS at the start, with the teacher loaded, per reported window and in ``finalize``."""
    na = "-"
    rows: list[list[object]] = [
        ["process start (imports)", f"{m['rss_start_mb']:.1f}", na, na, na],
        ["teacher loaded", f"{m['rss_model_loaded_mb']:.1f}", na, na, na],
    ]
    start = 0
    for w in m["windows"]:
        if w in _report_windows(m["windows"]):
            rows.append(
                [
                    f"utterances {start + 1:,}-{w['end']:,}",
                    f"{w['rss_at_end_mb']:.1f}",
                    f"{w['floor_mb']:.1f}",
                    f"{w['median_mb']:.1f}",
                    f"{w['peak_mb']:.1f}",
                ]
            )
        start = w["end"]
    rows.append(["finalize", f"{m['rss_end_mb']:.1f}", na, na, f"{m['finalize_peak_mb']:.1f}"])
    g = m["growth_mb"]
    lo, hi = m["window_peak_range_mb"]
    verdict = "flat" if m["flat"] else "NOT flat"
    bounds = f"floor < {m['floor_bound_mb']:.0f} MB, peak < {m['peak_bound_mb']:.0f} MB"
    headers = ["VmRSS MB", "at end", "floor", "median", f"peak ({m['peak_source']})"]
    return (
        format_table(headers, rows)
        + f"\n(floor, median: over the batch ends of a window of {m['window_utts']:,} utterances)"
        + f"\nfirst -> last window: floor {g['floor_mb']:+.1f} MB, median {g['median_mb']:+.1f} MB,"
        f" peak {g['peak_mb']:+.1f} MB (peaks of all windows {lo:.0f}-{hi:.0f} MB): {verdict}"
        f" (bounds: {bounds})"
        + f"\nlabelling {m['labelling_seconds']:.0f} s, finalize {m['finalize_seconds']:.1f} s, "
        f"results JSON-lines {m['results_jsonl_bytes'] / 1e6:.1f} MB "
        f"({m['results_jsonl_bytes'] / m['num_utts']:.0f} B/utt)"
    )


# --------------------------------------------------------------------------------------------
# driver


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python bench/pseudo_label_memory.py",
        description="Memory of the pseudo-label stage on 10,000 utterances (a child process).",
    )
    p.add_argument(
        "--num-utts", type=int, default=10000, help="utterances of the run (%(default)s)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads of the run (%(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size (%(default)s)")
    p.add_argument(
        "--corpus-utts",
        type=int,
        default=120,
        help="mini_en training clips synthesised into --work (%(default)s)",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "speechdistill-bench" / "pseudo_label",
        help="cache and output dir (%(default)s); figures in WORK/results",
    )
    # internal: the child process (DATA TEACHER OUT RESULT_JSON)
    p.add_argument("--memory-worker", type=Path, nargs=4, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.memory_worker is not None:
        torch.set_num_threads(args.threads)
        data, teacher, out, result = args.memory_worker
        memory_worker(data, teacher, out, args.batch_size, result)
        return 0
    quiet_transformers()
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"load_average": {"start": load_average()}}
    corpus = prepare_corpus(args.work, max(NUM_SHORT_CLIPS, args.corpus_utts))
    m = out["memory"] = run_memory_child(
        args.work, corpus, args.num_utts, args.batch_size, args.threads
    )
    out["load_average"]["after_memory"] = load_average()
    loads = out["load_average"]
    parts = [
        f"Memory: our stage (hf, 30 s window, batch {m['batch_size']}, max_new_tokens 4, "
        f"{m['threads']} thread(s)), random tiny Whisper, {m['num_utts']:,} utterances "
        f"of {NUM_SHORT_CLIPS} repeated 1-2 s clips",
        f"CPU cores {os.cpu_count()}; load average (1, 5, 15 min): "
        + "; ".join(f"{k} {' '.join(map(str, v))}" for k, v in loads.items()),
        "",
        memory_table(m),
    ]
    finish(out, "\n".join(parts), args.work, "pseudo_label_memory", t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
