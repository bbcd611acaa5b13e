#!/usr/bin/env python
"""Benchmark of the pseudo-label stage (:mod:`speechdistill.pseudo_label`) on CPU.

Usage::

    python bench/pseudo_label.py [--num-utts 48] [--repeats 3] [--work DIR] [--threads N]
                                 [--variants baseline,hf,...] [--skip-breakdown]
                                 [--skip-throughput] [--skip-memory]
                                 [--mem-utts 10000] [--mem-threads 1]

Prints three tables and writes every figure to ``WORK/results/pseudo_label.json``.

1. **Throughput** on the first ``--num-utts`` clips (2-6 s each) of the mini_en corpus (espeak-ng,
   synthesised once into ``WORK``) with the real Whisper tiny.en teacher, float32, greedy,
   batch 16:

   - ``baseline``: a distil-whisper-style loop, as ``training/run_pseudo_labelling.py`` of
     huggingface/distil-whisper does it without its audio concatenation: the clips in dataset
     order, log-mel features per clip padded to 30 s, ``feature_extractor.pad``,
     ``model.generate(input_features, max_length=256, num_beams=1)``, ``batch_decode``, a CSV;
   - our stage, ``pseudo_label(...)`` end to end: duration scan, length-sorted batches, encoder,
     ``generate``, the teacher-forced pass for the statistics (part of the cost: the baseline
     computes no statistics), one fsynced JSON-lines record per batch, ``finalize`` (the output
     data dir). Backends: ``hf`` at Whisper's 30 s window (exact), ``hf`` with
     ``encoder_window=10``, ``ct2`` float32 and int8, ``ct2`` int8 with ``encoder_window=10``.

   Models are loaded (and converted to CTranslate2) once, before timing, and warmed up on a few
   clips; reading the audio is timed for every variant. Within each repetition the variants run
   one after the other, their order rotated from one repetition to the next; the tables show
   medians over repetitions, and each ratio to the baseline is the median of the per-repetition
   ratios (both runs of a ratio saw the same load). Labels are compared with the baseline's
   (equal texts after whitespace normalisation) and scored against the corpus text (WER with the
   English normaliser of :func:`speechdistill.scoring.score`).

2. **Where the time goes** for one batch of short clips (the first ``--batch-size`` clips): the
   log-mel features, the encoder alone, ``generate`` alone (hf) and the whole ``label()`` of each
   stage variant; the rest of ``label()`` is decoding plus the statistics pass. It also times
   log-mel features computed for the encoder window only and checks they equal the first frames
   of the 30 s features.

3. **Memory** on ``--mem-utts`` utterances (20 WAVs of 1-2 s listed over and over under distinct
   ids), labelled by our stage (hf, 30 s window, batch 16, ``max_new_tokens=4``) with a tiny random
   Whisper (d_model 64, :mod:`speechdistill.testing`), in a fresh child process. Per window of
   1,000 utterances: VmRSS at every batch end (its floor and median: what stays allocated) and
   the window's peak (VmHWM, reset through ``/proc/self/clear_refs`` when a window closes; a
   thread also samples VmRSS every 0.5 s); then the peak of ``finalize``. A single VmRSS reading
   says little: glibc keeps or returns the ~100 MB of per-batch temporaries from one batch to
   the next, so batch ends jump between the floor and floor + 100 MB. "Flat": from the first
   window to the last the floor grows by less than :data:`FLOOR_BOUND_MB` and the peak by less
   than :data:`PEAK_BOUND_MB` (the median is reported, not judged: it moves with the allocator).

Threads: torch's intra-op thread count is left as it is (torch's default is the number of
cores) unless ``--threads`` is given; the ct2 backend uses the same count (``intra_threads``).
The memory child runs with ``--mem-threads`` (1 by default: it measures memory, not speed, and
one thread keeps it from being slowed down by other jobs). Both are recorded in the JSON.
On a machine shared with other jobs (load average above the core count) torch's multi-threaded
ops wait for descheduled threads: small ones such as the ``torch.isin`` that transformers'
suppress-tokens processor runs at every decoding step then take ~100-400 ms instead of ~3 ms,
which slows decoding far more than the encoder; compare with ``--threads 1`` there.
"""

# ruff: noqa: E402  (the environment is set before tqdm and transformers are imported)
from __future__ import annotations

import os

# No progress bars (tqdm reads TQDM_DISABLE when it is imported), no network.
for _key, _value in {
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)

import argparse
import csv
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # data_prep, when run as a script

from speechdistill.audio import SAMPLE_RATE, AudioReader
from speechdistill.datadir import DataDir, read_kv
from speechdistill.datadir.ops import subset
from speechdistill.pseudo_label import (
    HFLabeler,
    PseudoLabelConfig,
    UttLabel,
    make_labeler,
    pseudo_label,
)
from speechdistill.scoring import score
from speechdistill.whisper.tokens import WINDOW_SECONDS

T = TypeVar("T")

#: The variants of the throughput table, in display order: name → (description, config or None
#: for the baseline). ``batch_size`` is set from ``--batch-size``.
VARIANTS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "baseline": ("distil-whisper style: generate, dataset order", None),
    "hf": ("our stage, hf, 30 s window (exact)", {}),
    "hf-w10": ("our stage, hf, encoder_window=10", {"encoder_window": 10.0}),
    "ct2-f32": ("our stage, ct2 float32, 30 s", {"backend": "ct2", "dtype": "float32"}),
    "ct2-int8": ("our stage, ct2 int8, 30 s", {"backend": "ct2", "dtype": "int8"}),
    "ct2-int8-w10": (
        "our stage, ct2 int8, encoder_window=10",
        {"backend": "ct2", "dtype": "int8", "encoder_window": 10.0},
    ),
}
#: distil-whisper's default ``--max_label_length`` (its ``generate(max_length=...)``).
BASELINE_MAX_LENGTH = 256
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
# small helpers


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """``fn()`` and its wall time in seconds (``time.perf_counter``)."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def rotated(items: Sequence[T], k: int) -> list[T]:
    """``items`` rotated left by ``k`` (the running order of repetition ``k``)."""
    k %= max(len(items), 1)
    return [*items[k:], *items[:k]]


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


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def log(message: str) -> None:
    """Progress, on stderr (the tables go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


# --------------------------------------------------------------------------------------------
# set-up: corpus, teachers, data dirs (cached in --work)


@dataclass
class Inputs:
    """What the benchmark runs on."""

    corpus: Path  # the mini_en train data dir
    data: Path  # its first --num-utts clips
    teacher: Path  # tiny.en, transformers format
    setup_seconds: float = 0.0


def _num_lines(path: Path) -> int:
    return sum(1 for _ in path.open(encoding="utf-8")) if path.is_file() else 0


def prepare_inputs(work: Path, num_utts: int, corpus_utts: int) -> Inputs:
    """Synthesise the corpus and import the teacher when not already in ``work``."""
    from data_prep.mini_en import prepare_mini_en
    from speechdistill.teachers.whisper import prepare_teacher

    t0 = time.perf_counter()
    corpus = work / "mini_en"
    wanted = max(num_utts, corpus_utts)
    if _num_lines(corpus / "train" / "wav.scp") < wanted:
        log(f"synthesising mini_en ({wanted} clips) into {corpus}")
        prepare_mini_en(corpus, num_train=wanted, num_dev=0, num_test=0, nj=2, progress=False)
    teacher = prepare_teacher("tiny.en", work / "teacher_tiny.en")
    data = work / f"data_{num_utts}"
    shutil.rmtree(data, ignore_errors=True)
    subset(corpus / "train", data, first=num_utts)
    return Inputs(corpus / "train", data, teacher, time.perf_counter() - t0)


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
    if _num_lines(data.file("wav.scp")) != num_utts:
        shutil.rmtree(data.path, ignore_errors=True)
        data.path.mkdir(parents=True)
        # utterance i is clip i mod 20, under the speaker of that clip
        spk = [f"s{i % len(clips):02d}" for i in range(num_utts)]
        utts = [f"{s}-{i:06d}" for i, s in enumerate(spk)]
        data.write("wav.scp", {u: str(clips[i % len(clips)]) for i, u in enumerate(utts)})
        data.write_utt2spk(dict(zip(utts, spk, strict=True)))
    return data.path, teacher


# --------------------------------------------------------------------------------------------
# the compared variants


@dataclass
class RunResult:
    """One labelling run of the whole data dir."""

    seconds: float  # wall time, reading the audio to writing the output
    model_seconds: float  # of which in the model (features, encoder, decoding, statistics)
    texts: dict[str, str]


class Runner(Protocol):
    def warm_up(self, utt_ids: list[str], audios: list[np.ndarray]) -> None: ...

    def run(self, data: Path, out: Path) -> RunResult: ...


class DistilWhisperBaseline:
    """The comparison point: distil-whisper's pseudo-labelling loop, minimal.

    As ``training/run_pseudo_labelling.py`` (huggingface/distil-whisper) with
    ``--concatenate_audio False``: features per clip (its ``prepare_dataset``), batches of the
    clips in dataset order padded with ``feature_extractor.pad`` (its collator), plain
    ``generate`` with ``max_length=256`` and greedy search, ``batch_decode``, a CSV of
    ``file_id,whisper_transcript``. Same teacher, float32, same audio reader as our stage.
    """

    def __init__(self, teacher: Path, batch_size: int):
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.batch_size = batch_size
        self.processor = WhisperProcessor.from_pretrained(str(teacher))
        self.model = WhisperForConditionalGeneration.from_pretrained(
            str(teacher), dtype=torch.float32
        ).eval()
        self.model.generation_config.forced_decoder_ids = None
        self.gen_kwargs = {
            "max_length": BASELINE_MAX_LENGTH,
            "num_beams": 1,
            "return_timestamps": False,
        }

    @torch.inference_mode()
    def transcribe(self, audios: Sequence[np.ndarray]) -> list[str]:
        fe = self.processor.feature_extractor
        per_clip = [fe(a, sampling_rate=SAMPLE_RATE).input_features[0] for a in audios]
        batch = fe.pad({"input_features": per_clip}, padding="longest", return_tensors="pt")
        ids = self.model.generate(batch["input_features"].to(torch.float32), **self.gen_kwargs)
        texts = self.processor.batch_decode(ids, skip_special_tokens=True)
        return [" ".join(t.split()) for t in texts]

    def warm_up(self, utt_ids: list[str], audios: list[np.ndarray]) -> None:
        self.transcribe(audios)

    def run(self, data: Path, out: Path) -> RunResult:
        t0 = time.perf_counter()
        reader = AudioReader(data)
        utts = reader.utt_ids  # dataset order
        texts: dict[str, str] = {}
        model_seconds = 0.0
        for start in range(0, len(utts), self.batch_size):
            batch = utts[start : start + self.batch_size]
            audios = [reader(u) for u in batch]
            hyps, seconds = timed(lambda audios=audios: self.transcribe(audios))
            model_seconds += seconds
            texts.update(zip(batch, hyps, strict=True))
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "transcription.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file_id", "whisper_transcript"])
            writer.writerows(texts.items())
        return RunResult(time.perf_counter() - t0, model_seconds, texts)


class StageRunner:
    """Our stage, ``pseudo_label(...)`` end to end with a labeler loaded once."""

    def __init__(self, teacher: Path, config: PseudoLabelConfig):
        self.teacher = teacher
        self.config = config
        self.labeler = make_labeler(teacher, config)

    def warm_up(self, utt_ids: list[str], audios: list[np.ndarray]) -> None:
        self.labeler.label(utt_ids, audios)

    def run(self, data: Path, out: Path) -> RunResult:
        shutil.rmtree(out, ignore_errors=True)  # a fresh run, not a resume
        t0 = time.perf_counter()
        summary = pseudo_label(self.teacher, data, out, self.config, labeler=self.labeler)
        seconds = time.perf_counter() - t0
        assert summary is not None
        return RunResult(seconds, summary.wall_seconds, read_kv(out / "text.teacher"))


def make_runners(names: Sequence[str], teacher: Path, batch_size: int) -> dict[str, Runner]:
    runners: dict[str, Runner] = {}
    for name in names:
        _, overrides = VARIANTS[name]
        log(f"loading {name}")
        if overrides is None:
            runners[name] = DistilWhisperBaseline(teacher, batch_size)
        else:
            config = PseudoLabelConfig(batch_size=batch_size, **overrides)
            runners[name] = StageRunner(teacher, config)
    return runners


# --------------------------------------------------------------------------------------------
# 1. throughput


@dataclass
class VariantFigures:
    """The repetitions of one variant and what its labels look like."""

    seconds: list[float] = field(default_factory=list)
    model_seconds: list[float] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    stable: bool = True  # the same texts in every repetition


def measure_throughput(
    runners: dict[str, Runner], data: Path, out: Path, repeats: int
) -> dict[str, VariantFigures]:
    """Every variant once per repetition, the running order rotated each time."""
    figures = {name: VariantFigures() for name in runners}
    names = list(runners)
    for rep in range(repeats):
        for name in rotated(names, rep):
            result = runners[name].run(data, out / name)
            fig = figures[name]
            fig.stable &= not fig.texts or fig.texts == result.texts
            fig.texts = result.texts
            fig.seconds.append(result.seconds)
            fig.model_seconds.append(result.model_seconds)
            log(
                f"rep {rep + 1}/{repeats} {name}: {result.seconds:.2f} s (load {load_average()[0]})"
            )
    return figures


def summarise_throughput(
    figures: dict[str, VariantFigures], data: Path
) -> dict[str, dict[str, Any]]:
    """Medians, per-repetition ratios to the baseline, agreement with it and WER."""
    d = DataDir(data)
    refs = d.text()
    audio_seconds = sum(d.utt2dur().values()) if d.exists("utt2dur") else float("nan")
    base = figures.get("baseline")
    out: dict[str, dict[str, Any]] = {}
    for name, fig in figures.items():
        wall = median(fig.seconds)
        row: dict[str, Any] = {
            "description": VARIANTS[name][0],
            "seconds": [round(s, 3) for s in fig.seconds],
            "median_seconds": round(wall, 3),
            "model_seconds": [round(s, 3) for s in fig.model_seconds],
            "median_model_seconds": round(median(fig.model_seconds), 3),
            "utts_per_second": round(len(refs) / wall, 3),
            "audio_seconds_per_second": round(audio_seconds / wall, 3),
            "texts_stable_across_repeats": fig.stable,
            "wer": round(score(refs, fig.texts, bootstrap=0).normalized.wer, 4),
        }
        if base is not None:
            ratios = [b / s for b, s in zip(base.seconds, fig.seconds, strict=True)]
            row["speedup_vs_baseline"] = [round(r, 3) for r in ratios]
            row["median_speedup_vs_baseline"] = round(median(ratios), 3)
            row["equal_texts_to_baseline"] = sum(
                fig.texts.get(u) == t for u, t in base.texts.items()
            )
        out[name] = row
    return out


def throughput_table(summary: dict[str, dict[str, Any]], num_utts: int) -> str:
    rows = []
    for name, r in summary.items():
        speedups = r.get("speedup_vs_baseline")
        ratio = (
            f"{r['median_speedup_vs_baseline']:.2f} [{min(speedups):.2f}-{max(speedups):.2f}]"
            if speedups
            else "-"
        )
        equal = r.get("equal_texts_to_baseline")
        rows.append(
            [
                name,
                f"{r['median_seconds']:.2f}",
                f"{r['median_model_seconds']:.2f}",
                f"{r['utts_per_second']:.2f}",
                f"{r['audio_seconds_per_second']:.2f}",
                ratio,
                "-" if equal is None else f"{equal}/{num_utts}",
                f"{100 * r['wer']:.1f}",
            ]
        )
    headers = [
        "variant",
        "wall s",
        "model s",
        "utt/s",
        "audio s/s",
        "x baseline [min-max]",
        "= baseline",
        "WER %",
    ]
    return format_table(headers, rows)


# --------------------------------------------------------------------------------------------
# 2. where the time goes, one batch of short clips


def _feature_extractor(labeler: Any) -> Any:
    proc = getattr(labeler, "processor", None)
    return proc.feature_extractor if proc is not None else labeler.feature_extractor


def _features(labeler: Any, audios: Sequence[np.ndarray], seconds: float) -> np.ndarray:
    """Log-mel features padded to ``seconds`` (float32, ``(batch, mels, 100 * seconds)``)."""
    fe = _feature_extractor(labeler)
    feats = fe(
        list(audios),
        sampling_rate=SAMPLE_RATE,
        return_tensors="np",
        padding="max_length",
        max_length=int(seconds * SAMPLE_RATE),
    )
    return np.ascontiguousarray(feats.input_features, dtype=np.float32)


def _encode(labeler: Any, feats: np.ndarray, longest: float) -> Any:
    """The encoder alone, as the labeler runs it (window included)."""
    if isinstance(labeler, HFLabeler):
        with torch.inference_mode():
            return labeler.encode(torch.from_numpy(feats), longest)
    import ctranslate2

    window = labeler.config.encoder_window
    if window < WINDOW_SECONDS and longest + 2.0 <= window:
        feats = np.ascontiguousarray(feats[..., : int(window * 100)])
    return labeler.model.encode(ctranslate2.StorageView.from_array(feats), to_cpu=True)


def _generate(labeler: HFLabeler, states: torch.Tensor) -> torch.Tensor:
    """``generate`` from encoder states, as :meth:`HFLabeler.label` calls it (greedy)."""
    from transformers.modeling_outputs import BaseModelOutput

    with torch.inference_mode():
        return labeler.model.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=states),
            num_beams=1,
            do_sample=False,
            return_timestamps=False,
        )


def time_components(labeler: Any, utt_ids: list[str], audios: list[np.ndarray]) -> dict[str, float]:
    """Seconds of each part of labelling one batch (see the module docstring)."""
    longest = max(len(a) for a in audios) / SAMPLE_RATE
    window = labeler.config.encoder_window
    t: dict[str, float] = {}
    feats, t["features"] = timed(lambda: _features(labeler, audios, WINDOW_SECONDS))
    states, t["encoder"] = timed(lambda: _encode(labeler, feats, longest))
    if isinstance(labeler, HFLabeler):
        _, t["generate"] = timed(lambda: _generate(labeler, states))
    _, t["label"] = timed(lambda: labeler.label(utt_ids, audios))
    if window < WINDOW_SECONDS:
        short, t["features_window_only"] = timed(lambda: _features(labeler, audios, window))
        frames = short.shape[-1]
        t["features_window_only_max_abs_diff"] = float(np.abs(feats[..., :frames] - short).max())
    return t


def measure_breakdown(
    runners: dict[str, Runner], utt_ids: list[str], audios: list[np.ndarray], repeats: int
) -> dict[str, dict[str, float]]:
    """Medians over ``repeats`` of :func:`time_components` for every stage variant."""
    labelers = {n: r.labeler for n, r in runners.items() if isinstance(r, StageRunner)}
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in labelers}
    for rep in range(repeats):
        for name in rotated(list(labelers), rep):
            runs[name].append(time_components(labelers[name], utt_ids, audios))
        log(f"breakdown rep {rep + 1}/{repeats} (load {load_average()[0]})")
    out = {}
    for name, parts in runs.items():
        med = {k: median(p[k] for p in parts) for k in parts[0]}
        med["rest"] = med["label"] - med["features"] - med["encoder"]
        if "generate" in med:
            med["forced_pass_and_stats"] = med["rest"] - med["generate"]
        med["encoder_share"] = med["encoder"] / med["label"]
        out[name] = {k: round(v, 4) for k, v in med.items()}
    return out


def breakdown_table(breakdown: dict[str, dict[str, float]]) -> str:
    def cell(b: dict[str, float], key: str) -> str:
        return f"{b[key]:.2f}" if key in b else "-"

    rows = []
    for name, b in breakdown.items():
        rows.append(
            [
                name,
                cell(b, "features"),
                cell(b, "encoder"),
                cell(b, "generate"),
                cell(b, "forced_pass_and_stats"),
                cell(b, "rest"),
                cell(b, "label"),
                f"{100 * b['encoder_share']:.0f} %",
                cell(b, "features_window_only"),
            ]
        )
    headers = [
        "variant",
        "log-mel 30 s",
        "encoder",
        "generate",
        "forced+stats",
        "all but enc+feat",
        "label()",
        "encoder share",
        "log-mel window only",
    ]
    return format_table(headers, rows)


# --------------------------------------------------------------------------------------------
# 3. memory (runs in a child process)


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


def memory_worker(data: Path, teacher: Path, out: Path, batch_size: int, result: Path) -> None:
    """Label ``data`` with our stage and write the memory figures to ``result`` (JSON)."""
    _quiet_transformers()
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


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "ctranslate2", "speechdistill"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "-"
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python bench/pseudo_label.py",
        description="Throughput of the pseudo-label stage against a distil-whisper-style "
        "baseline, where the time goes for short clips, and memory on 10,000 utterances.",
    )
    p.add_argument(
        "--num-utts", type=int, default=48, help="clips of the throughput comparison (%(default)s)"
    )
    p.add_argument(
        "--corpus-utts",
        type=int,
        default=120,
        help="mini_en training clips synthesised into --work (%(default)s)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="batch size (%(default)s)")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="repetitions of every measurement, medians reported (%(default)s)",
    )
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated, from: %(default)s"
    )
    p.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "speechdistill-bench" / "pseudo_label",
        help="cache and output dir (%(default)s); figures in WORK/results",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch (and ct2) intra-op threads (default: torch's, unchanged)",
    )
    p.add_argument(
        "--skip-throughput", action="store_true", help="no throughput nor breakdown (memory only)"
    )
    p.add_argument("--skip-breakdown", action="store_true", help="no per-part timing")
    p.add_argument("--skip-memory", action="store_true", help="no 10,000-utterance memory run")
    p.add_argument(
        "--mem-utts", type=int, default=10000, help="utterances of the memory run (%(default)s)"
    )
    p.add_argument(
        "--mem-threads", type=int, default=1, help="torch threads of the memory run (%(default)s)"
    )
    # internal: the memory run's child process (DATA TEACHER OUT RESULT_JSON)
    p.add_argument("--memory-worker", type=Path, nargs=4, default=None, help=argparse.SUPPRESS)
    return p


def measure_speed(args: argparse.Namespace, inputs: Inputs, out: dict[str, Any]) -> None:
    """Sections 1 and 2 into ``out``: load, warm up, break one batch down, time every variant."""
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    runners = make_runners(names, inputs.teacher, args.batch_size)
    reader = AudioReader(inputs.data)
    batch_ids = reader.utt_ids[: args.batch_size]  # dataset order: short clips, 2-6 s
    batch = [reader(u) for u in batch_ids]
    log("warming up")
    for runner in runners.values():
        runner.warm_up(batch_ids[:4], batch[:4])
    if not args.skip_breakdown:
        out["breakdown"] = measure_breakdown(runners, batch_ids, batch, args.repeats)
        out["breakdown_clip_seconds"] = [round(len(a) / SAMPLE_RATE, 2) for a in batch]
        out["load_average"]["after_breakdown"] = load_average()
    figures = measure_throughput(runners, inputs.data, args.work / "runs", args.repeats)
    out["throughput"] = summarise_throughput(figures, inputs.data)
    out["load_average"]["after_throughput"] = load_average()


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every section asked for; returns the figures."""
    out: dict[str, Any] = {"load_average": {"start": load_average()}}
    inputs = prepare_inputs(args.work, args.num_utts, args.corpus_utts)
    d = DataDir(inputs.data)
    out["data"] = {
        "dir": str(inputs.data),
        "num_utts": len(d),
        "audio_seconds": round(sum(d.utt2dur().values()), 2),
    }
    out["setup_seconds"] = round(inputs.setup_seconds, 1)
    if not args.skip_throughput:
        measure_speed(args, inputs, out)
    if not args.skip_memory:
        out["memory"] = run_memory_child(
            args.work, inputs.corpus, args.mem_utts, args.batch_size, args.mem_threads
        )
        out["load_average"]["after_memory"] = load_average()
    return out


def render(out: dict[str, Any], args: argparse.Namespace) -> str:
    """The printed report."""
    data = out["data"]
    loads = out["load_average"]
    parts = [
        f"pseudo-label benchmark: {data['num_utts']} clips, {data['audio_seconds']:.0f} s of "
        f"audio (mini_en), Whisper tiny.en float32, greedy, batch {args.batch_size}, "
        f"{args.repeats} repetitions (medians; ratios = median of per-repetition ratios)",
        f"CPU cores {os.cpu_count()}, torch threads {torch.get_num_threads()} (ct2 the same); "
        "load average (1, 5, 15 min): "
        + "; ".join(f"{k} {' '.join(map(str, v))}" for k, v in loads.items()),
    ]
    if "throughput" in out:
        parts += [
            "",
            "1. Throughput (wall: audio reading to written output, models loaded beforehand; "
            "model s: features+model+statistics)",
            throughput_table(out["throughput"], data["num_utts"]),
        ]
    if "breakdown" in out:
        clips = out["breakdown_clip_seconds"]
        parts += [
            "",
            f"2. One batch of {len(clips)} short clips ({min(clips):.1f}-{max(clips):.1f} s), "
            "seconds (medians)",
            breakdown_table(out["breakdown"]),
        ]
        diffs = [
            b["features_window_only_max_abs_diff"]
            for b in out["breakdown"].values()
            if "features_window_only_max_abs_diff" in b
        ]
        if diffs:
            parts.append(
                f"log-mel of the window only vs the first frames of the 30 s log-mel: "
                f"max |diff| = {max(diffs):g}"
            )
    if "memory" in out:
        m = out["memory"]
        parts += [
            "",
            f"3. Memory: our stage (hf, 30 s window, batch {m['batch_size']}, max_new_tokens 4, "
            f"{m['threads']} thread(s)), random tiny Whisper, {m['num_utts']:,} utterances "
            f"of {NUM_SHORT_CLIPS} repeated 1-2 s clips",
            memory_table(m),
        ]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.memory_worker is not None:
        data, teacher, out, result = args.memory_worker
        memory_worker(data, teacher, out, args.batch_size, result)
        return 0
    _quiet_transformers()
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    out = run_benchmark(args)
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    text = render(out, args)
    print(text)
    print(f"\ntotal {out['total_seconds']:.0f} s")
    out["meta"] = {
        "argv": sys.argv[1:],
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "platform": platform.platform(),
    }
    out["report"] = text
    results = args.work / "results" / "pseudo_label.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"figures: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
