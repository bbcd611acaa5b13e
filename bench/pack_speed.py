#!/usr/bin/env python
"""Pseudo-labelling packed 30 s windows against labelling each utterance (``data pack``).

Usage::

    python bench/pack_speed.py [--data DIR | --num-utts 100 --num-speakers 10]
                               [--backends hf,ct2] [--repeats 2] [--work DIR] [--threads N]

On the same training audio, with the real Whisper tiny.en teacher (float32, greedy): (a) the
pseudo-label stage on every utterance (no timestamps, the recipe's default), (b) the stage on
the windows of ``speechdistill data pack`` with timestamps (``--pack true`` in the recipe).
``--data`` takes any data dir (with ``segments``: windows are spans of the recordings; without:
the utterances' audio joined with ``--gap`` s of silence); by default the first ``--num-utts``
training clips of a mini_en corpus synthesised into ``WORK``.

Printed per backend: audio seconds, wall time of each run (models loaded and warmed up
beforehand; median over ``--repeats``), the speed ratio, and the label WER of each against the
references, compared per window for fairness: the per-utterance labels joined in window order,
and the window's label, against the utterances' texts joined (English normaliser,
:func:`speechdistill.scoring.score`). The packing itself is timed apart (a data step, run once).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/pseudo_label.py: its helpers, and the environment it sets before transformers loads
sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse
import shutil
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import torch
from pseudo_label import REPO, finish, format_table, load_average, log, median, quiet_transformers

sys.path.insert(0, str(REPO))  # data_prep

from speechdistill.audio import AudioReader
from speechdistill.datadir import DataDir, read_kv
from speechdistill.datadir.ops import subset
from speechdistill.pack import pack_data_dir, window_utts
from speechdistill.pseudo_label import PseudoLabelConfig, make_labeler, pseudo_label
from speechdistill.scoring import score


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python bench/pack_speed.py", description=__doc__.split("\n")[1]
    )
    p.add_argument(
        "--data", type=Path, default=None, help="a data dir with text (default: mini_en)"
    )
    p.add_argument("--num-utts", type=int, default=100, help="mini_en clips (%(default)s)")
    p.add_argument(
        "--num-speakers", type=int, default=10, help="mini_en training voices (%(default)s)"
    )
    p.add_argument("--backends", default="hf,ct2", help="hf, ct2 or both (%(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size (%(default)s)")
    p.add_argument("--repeats", type=int, default=2, help="runs of each, median (%(default)s)")
    p.add_argument("--max-duration", type=float, default=30.0, help="window, s (%(default)s)")
    p.add_argument("--max-gap", type=float, default=3.0, help="with segments (%(default)s)")
    p.add_argument("--gap", type=float, default=0.5, help="without segments (%(default)s)")
    p.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "speechdistill-bench" / "pack_speed",
        help="cache and output dir (%(default)s); figures in WORK/results",
    )
    p.add_argument("--threads", type=int, default=None, help="torch/ct2 threads (torch's)")
    return p.parse_args(argv)


def input_dir(args: argparse.Namespace) -> Path:
    """``--data``, or the first ``--num-utts`` clips of a mini_en corpus synthesised once."""
    if args.data is not None:
        return args.data
    from data_prep.mini_en import prepare_mini_en

    corpus = args.work / f"mini_en_{args.num_utts}_{args.num_speakers}"
    if not (corpus / "train" / "text").is_file():
        log(f"synthesising mini_en ({args.num_utts} clips) into {corpus}")
        prepare_mini_en(
            corpus,
            num_train=args.num_utts,
            num_dev=0,
            num_test=0,
            num_speakers=args.num_speakers,
            nj=2,
            progress=False,
        )
    data = args.work / "data"
    shutil.rmtree(data, ignore_errors=True)
    subset(corpus / "train", data, first=args.num_utts)
    return data


def run_stage(teacher: Path, data: Path, out: Path, config: PseudoLabelConfig, labeler) -> float:
    shutil.rmtree(out, ignore_errors=True)  # a fresh run, not a resume
    t0 = time.perf_counter()
    pseudo_label(teacher, data, out, config, labeler=labeler)
    return time.perf_counter() - t0


def wer(refs: dict[str, str], hyps: dict[str, str]) -> float:
    return score(refs, hyps, bootstrap=0).normalized.wer


def main(argv: Sequence[str] | None = None) -> int:
    from speechdistill.teachers.whisper import prepare_teacher

    args = parse_args(argv)
    t0 = time.perf_counter()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    quiet_transformers()
    args.work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"load_average": {"start": load_average()}}
    data = input_dir(args)
    teacher = prepare_teacher("tiny.en", args.work / "teacher_tiny.en")

    packed = args.work / "packed"
    shutil.rmtree(packed, ignore_errors=True)
    t_pack = time.perf_counter()
    report = pack_data_dir(
        data, packed, max_duration=args.max_duration, max_gap=args.max_gap, gap=args.gap
    )
    pack_seconds = time.perf_counter() - t_pack
    windows = window_utts(packed)
    refs = DataDir(data).text()
    window_refs = {w: " ".join(refs[u] for u in utts) for w, utts in windows.items()}
    out["data"] = {
        "dir": str(data),
        "utterances": report.utterances,
        "windows": report.windows,
        "utterances_alone": report.alone,
        "grouped_by": report.grouped_by,
        "mode": report.mode,
        "audio_seconds": report.utterance_seconds,
        "window_seconds": report.window_seconds,
        "pack_seconds": round(pack_seconds, 2),
    }

    rows, figures = [], {}
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        per_utt = PseudoLabelConfig(batch_size=args.batch_size, backend=backend)
        per_win = PseudoLabelConfig(
            batch_size=args.batch_size, backend=backend, return_timestamps=True
        )
        kinds = {"utterances": (per_utt, data), "windows": (per_win, packed)}
        labelers = {}
        for name, (config, d) in kinds.items():
            log(f"{backend} {name}: loading and warming up")
            labelers[name] = make_labeler(teacher, config)
            reader = AudioReader(d)
            warm = reader.utt_ids[:2]
            labelers[name].label(warm, [reader(u) for u in warm])
        runs: dict[str, dict[str, Any]] = {n: {"seconds": []} for n in kinds}
        for rep in range(args.repeats):  # the order alternates: both runs see the same load
            for name in list(kinds)[:: 1 if rep % 2 == 0 else -1]:
                config, d = kinds[name]
                target = args.work / "runs" / f"{backend}_{name}"
                runs[name]["seconds"].append(run_stage(teacher, d, target, config, labelers[name]))
                runs[name]["texts"] = read_kv(target / "text.teacher")
                log(f"{backend} {name} rep {rep + 1}: {runs[name]['seconds'][-1]:.2f} s")
        ratios = [
            u / w
            for u, w in zip(runs["utterances"]["seconds"], runs["windows"]["seconds"], strict=True)
        ]
        utt_texts = runs["utterances"]["texts"]
        joined = {w: " ".join(utt_texts.get(u, "") for u in utts) for w, utts in windows.items()}
        wall_u, wall_w = median(runs["utterances"]["seconds"]), median(runs["windows"]["seconds"])
        fig = {
            "utterances_seconds": [round(s, 3) for s in runs["utterances"]["seconds"]],
            "windows_seconds": [round(s, 3) for s in runs["windows"]["seconds"]],
            "speedup": round(median(ratios), 3),
            "speedups": [round(r, 3) for r in ratios],
            "speedup_with_packing": round(wall_u / (wall_w + pack_seconds), 3),
            "wer_utterances_joined": round(wer(window_refs, joined), 4),
            "wer_windows": round(wer(window_refs, runs["windows"]["texts"]), 4),
            "wer_utterances_per_utterance": round(wer(refs, utt_texts), 4),
        }
        fig["wer_difference_points"] = round(
            100 * (fig["wer_windows"] - fig["wer_utterances_joined"]), 2
        )
        figures[backend] = fig
        rows.append(
            [
                backend,
                f"{wall_u:.2f}",
                f"{wall_w:.2f}",
                f"{fig['speedup']:.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]",
                f"{fig['speedup_with_packing']:.2f}x",
                f"{100 * fig['wer_utterances_joined']:.2f}",
                f"{100 * fig['wer_windows']:.2f}",
                f"{fig['wer_difference_points']:+.2f}",
            ]
        )
    out["backends"] = figures
    out["load_average"]["end"] = load_average()
    d = out["data"]
    text = "\n".join(
        [
            f"pack speed: {d['utterances']} utterances, {d['audio_seconds']:.0f} s of audio "
            f"({d['grouped_by']}, {d['mode']}) -> {d['windows']} windows "
            f"({d['window_seconds']:.0f} s, {d['utterances_alone']} utterances alone), packed "
            f"in {d['pack_seconds']:.1f} s; Whisper tiny.en float32, greedy, batch "
            f"{args.batch_size}, median of {args.repeats} (order alternating; speed = median of "
            f"per-repetition ratios [min-max]); torch threads "
            f"{torch.get_num_threads()}; load {' '.join(map(str, out['load_average']['start']))}",
            "",
            format_table(
                [
                    "backend",
                    "per-utt s",
                    "windows s",
                    "speed",
                    "incl. pack",
                    "WER utts joined %",
                    "WER windows %",
                    "diff (points)",
                ],
                rows,
            ),
        ]
    )
    finish(out, text, args.work, "pack_speed", t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
