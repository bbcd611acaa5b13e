#!/usr/bin/env python
"""Throughput of the pseudo-label stage (:mod:`speechdistill.pseudo_label`) on CPU.

Usage::

    python bench/pseudo_label.py [--num-utts 48] [--repeats 3] [--work DIR] [--threads N]
                                 [--variants baseline,hf,...]

Prints a table and writes every figure to ``WORK/results/pseudo_label.json``. Two companions
share its set-up (cached in ``WORK``) and helpers: ``bench/pseudo_label_breakdown.py`` (where
the time goes in one batch) and ``bench/pseudo_label_memory.py`` (memory on 10,000 utterances).

Throughput on the first ``--num-utts`` clips (2-6 s each) of the mini_en corpus (espeak-ng,
synthesised once into ``WORK``) with the real Whisper tiny.en teacher, float32, greedy, batch 16:

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
one after the other, their order rotated from one repetition to the next; the table shows
medians over repetitions, and each ratio to the baseline is the median of the per-repetition
ratios (both runs of a ratio saw the same load). Labels are compared with the baseline's
(equal texts after whitespace normalisation) and scored against the corpus text (WER with the
English normaliser of :func:`speechdistill.scoring.score`).

Threads: torch's intra-op thread count is left as it is (torch's default is the number of
cores) unless ``--threads`` is given; the ct2 backend uses the same count (``intra_threads``).
It is recorded in the JSON. On a machine shared with other jobs (load average above the core
count) torch's multi-threaded ops wait for descheduled threads: small ones such as the
``torch.isin`` that transformers' suppress-tokens processor runs at every decoding step then
take ~100-400 ms instead of ~3 ms, which slows decoding far more than the encoder; compare with
``--threads 1`` there.
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
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # data_prep, when run as a script

from speechdistill.audio import SAMPLE_RATE, AudioReader
from speechdistill.datadir import DataDir, read_kv
from speechdistill.datadir.ops import subset
from speechdistill.pseudo_label import PseudoLabelConfig, make_labeler, pseudo_label
from speechdistill.scoring import score

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


# --------------------------------------------------------------------------------------------
# small helpers


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """``fn()`` and its wall time in seconds (``time.perf_counter``)."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def median(values: Iterable[float]) -> float:
    """The median, as a float."""
    return float(statistics.median(list(values)))


def rotated(items: Sequence[T], k: int) -> list[T]:
    """``items`` rotated left by ``k`` (the running order of repetition ``k``)."""
    k %= max(len(items), 1)
    return [*items[k:], *items[:k]]


def load_average() -> list[float]:
    """The 1, 5 and 15 min load averages."""
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


def quiet_transformers() -> None:
    """No transformers warnings nor progress bars."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def versions() -> dict[str, str]:
    """Versions of Python and of the packages the figures depend on."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "ctranslate2", "speechdistill"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "-"
    return out


# --------------------------------------------------------------------------------------------
# set-up: corpus, teacher, data dir (cached in --work)


@dataclass
class Inputs:
    """What the benchmark runs on."""

    corpus: Path  # the mini_en train data dir
    data: Path  # its first --num-utts clips
    teacher: Path  # tiny.en, transformers format
    setup_seconds: float = 0.0


def num_lines(path: Path) -> int:
    """Lines of ``path`` (0 when missing)."""
    return sum(1 for _ in path.open(encoding="utf-8")) if path.is_file() else 0


def prepare_corpus(work: Path, num_utts: int) -> Path:
    """The mini_en training data dir in ``work``, synthesised when it has fewer clips."""
    from data_prep.mini_synth import prepare_mini_en

    corpus = work / "mini_en"
    if num_lines(corpus / "train" / "wav.scp") < num_utts:
        log(f"synthesising mini_en ({num_utts} clips) into {corpus}")
        prepare_mini_en(corpus, num_train=num_utts, num_dev=0, num_test=0, nj=2, progress=False)
    return corpus / "train"


def prepare_inputs(work: Path, num_utts: int, corpus_utts: int) -> Inputs:
    """Synthesise the corpus and import the teacher when not already in ``work``."""
    from speechdistill.teachers.whisper import prepare_teacher

    t0 = time.perf_counter()
    corpus = prepare_corpus(work, max(num_utts, corpus_utts))
    teacher = prepare_teacher("tiny.en", work / "teacher_tiny.en")
    data = work / f"data_{num_utts}"
    shutil.rmtree(data, ignore_errors=True)
    subset(corpus, data, first=num_utts)
    return Inputs(corpus, data, teacher, time.perf_counter() - t0)


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
# throughput


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
# driver


def common_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options the pseudo-label benchmarks share (inputs, batch, repetitions, threads)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--num-utts", type=int, default=48, help="clips of the comparison (%(default)s)")
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
    return p


def variant_names(args: argparse.Namespace) -> list[str]:
    """The ``--variants`` asked for (unknown names end the run)."""
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    return names


def start(args: argparse.Namespace) -> tuple[dict[str, Any], Inputs]:
    """Threads, quiet logs, the inputs, and the figures' first entries."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    quiet_transformers()
    args.work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"load_average": {"start": load_average()}}
    inputs = prepare_inputs(args.work, args.num_utts, args.corpus_utts)
    d = DataDir(inputs.data)
    out["data"] = {
        "dir": str(inputs.data),
        "num_utts": len(d),
        "audio_seconds": round(sum(d.utt2dur().values()), 2),
    }
    out["setup_seconds"] = round(inputs.setup_seconds, 1)
    return out, inputs


def header(out: dict[str, Any], args: argparse.Namespace, what: str) -> list[str]:
    """The first lines of a report: the data, the settings, the machine and its load."""
    data = out["data"]
    loads = out["load_average"]
    return [
        f"{what}: {data['num_utts']} clips, {data['audio_seconds']:.0f} s of "
        f"audio (mini_en), Whisper tiny.en float32, greedy, batch {args.batch_size}, "
        f"{args.repeats} repetitions (medians; ratios = median of per-repetition ratios)",
        f"CPU cores {os.cpu_count()}, torch threads {torch.get_num_threads()} (ct2 the same); "
        "load average (1, 5, 15 min): "
        + "; ".join(f"{k} {' '.join(map(str, v))}" for k, v in loads.items()),
    ]


def finish(out: dict[str, Any], text: str, work: Path, name: str, t0: float) -> None:
    """Print the report and write every figure to ``work/results/<name>.json``."""
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
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
    results = work / "results" / f"{name}.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"figures: {results}")


def main(argv: Sequence[str] | None = None) -> int:
    args = common_parser(
        "python bench/pseudo_label.py",
        "Throughput of the pseudo-label stage against a distil-whisper-style baseline.",
    ).parse_args(argv)
    t0 = time.perf_counter()
    out, inputs = start(args)
    runners = make_runners(variant_names(args), inputs.teacher, args.batch_size)
    reader = AudioReader(inputs.data)
    warm_ids = reader.utt_ids[:4]
    log("warming up")
    for runner in runners.values():
        runner.warm_up(warm_ids, [reader(u) for u in warm_ids])
    figures = measure_throughput(runners, inputs.data, args.work / "runs", args.repeats)
    out["throughput"] = summarise_throughput(figures, inputs.data)
    out["load_average"]["after_throughput"] = load_average()
    parts = header(out, args, "pseudo-label throughput")
    parts += [
        "",
        "Throughput (wall: audio reading to written output, models loaded beforehand; "
        "model s: features+model+statistics)",
        throughput_table(out["throughput"], out["data"]["num_utts"]),
    ]
    finish(out, "\n".join(parts), args.work, "pseudo_label", t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
