"""KD training step time with the three teacher modes, side by side, as ratios.

- ``online``: teacher and student each run their encoder (the distil-whisper baseline when the
  encoder is frozen but not shared);
- ``shared_encoder``: one frozen encoder pass serves both decoders;
- ``cache``: encoder states and RS-KD teacher samples read from the pseudo-label caches; no
  teacher runs.

Real tiny.en teacher (4+4 layers), 2-decoder-layer student, mini_en speech. Each mode trains for
``--steps`` steps per round; rounds alternate the modes so that load changes hit all of them;
the first step of each run (warm-up) is left out; medians over rounds.

    python bench/train_step.py [--steps 6] [--rounds 3] [--batch-size 8] [--work DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

MODES = ("online", "shared_encoder", "cache")


def setup(work: Path, batch_size: int) -> dict[str, Path]:
    """Corpus, teacher, pseudo-labels with caches and the initial student (kept in ``work``)."""
    from data_prep.mini_synth import prepare_mini_en
    from speechdistill.datadir.ops import subset
    from speechdistill.pseudo_label import PseudoLabelConfig, pseudo_label
    from speechdistill.students.whisper import init_student
    from speechdistill.teacher import prepare_teacher

    corpus = work / "corpus"
    if not (corpus / "train" / "wav.scp").is_file():
        prepare_mini_en(corpus, num_train=4 * batch_size, num_dev=2, num_test=2, progress=False)
    teacher = prepare_teacher("tiny.en", work / "teacher")
    pl = work / "pl"
    if not (pl / "text.teacher").is_file():
        cfg = PseudoLabelConfig(batch_size=batch_size, cache_encoder=True, rskd_k=32)
        pseudo_label(teacher, corpus / "train", pl, cfg)
    student = work / "student"
    if not (student / "student.json").is_file():
        init_student(teacher, student, decoder_layers=2, overwrite=True)
    dev = work / "dev"
    if not (dev / "wav.scp").is_file():
        subset(corpus / "dev", dev, first=2)
    return {"teacher": teacher, "pl": pl, "student": student, "dev": dev}


def run_mode(paths: dict[str, Path], mode: str, steps: int, batch_size: int, out: Path) -> float:
    """Median seconds per step of one short training run (first step left out)."""
    from speechdistill.train.config import TrainConfig
    from speechdistill.train.whisper_kd import train_whisper

    shutil.rmtree(out, ignore_errors=True)
    cfg = TrainConfig(
        teacher_mode=mode,
        cache_dir=str(paths["pl"] / "cache") if mode == "cache" else None,
        temperature=1.0,  # the cache's sampling temperature; the same for every mode
        max_steps=steps,
        batch_size=batch_size,
        log_steps=1,
        eval_steps=10**6,
        save_steps=10**6,
        keep_checkpoints=1,
        eval_max_new_tokens=4,
        warmup_steps=1,
    )
    train_whisper(paths["student"], paths["teacher"], paths["pl"], paths["dev"], out, cfg)
    with open(out / "train_log.csv", newline="") as f:
        times = [float(r["sec_per_step"]) for r in csv.DictReader(f)][1:]
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--work", default=None, help="keep corpus/teacher/caches here between runs")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    args = p.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_train_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths = setup(work, args.batch_size)
    print(f"set-up {time.perf_counter() - t0:.0f} s; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; batch {args.batch_size}, {args.steps} steps a run, "
          f"{args.rounds} rounds", flush=True)  # fmt: skip
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode in MODES:
            times[mode].append(
                run_mode(paths, mode, args.steps, args.batch_size, work / "runs" / mode)
            )
            print(f"round {r + 1} {mode:<15} {times[mode][-1]:.3f} s/step", flush=True)
    med = {m: statistics.median(t) for m, t in times.items()}
    print("\nmode             s/step   speed-up vs online")
    for m in MODES:
        print(f"{m:<15} {med[m]:7.3f}   {med['online'] / med[m]:.2f}x")
    print(f"\ncache vs shared_encoder: {med['shared_encoder'] / med['cache']:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps({"median_s_per_step": med, "runs": times}, indent=2))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
