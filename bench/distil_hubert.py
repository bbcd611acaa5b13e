"""DistilHuBERT on mini_en: does distillation transfer knowledge? Size and speed vs the teacher.

1. Distil a DistilHuBERT student from the Whisper tiny.en encoder (``speechdistill train
   --student hubert`` with ``egs/mini_en/conf/distil_hubert.yaml``).
2. CTC-fine-tune it, and the same architecture from random initialisation, with the same
   settings and the same number of steps (``egs/mini_en/conf/ctc.yaml``).
3. Greedy-decode the test set with both and score (Whisper's English normaliser): CER and WER.
4. Parameters and speed of the student encoder vs the teacher encoder (batch 1, the test clips,
   features prepared beforehand, median per clip after a warm-up; Whisper always encodes its
   30 s window, the student only the clip).

    python bench/distil_hubert.py [--distill-steps N] [--ctc-steps N] [--work DIR]

Data: ``egs/mini_en/dump/{train,dev,test}`` and ``egs/mini_en/exp/teacher`` when a `make demo`
made them, else a corpus is synthesised and the teacher imported into ``--work``. Finished
stages in ``--work`` are reused (delete it to start over). Prints the figures and their ratios
and writes them to ``WORK/results.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
EGS = REPO / "egs" / "mini_en"


def data_and_teacher(work: Path) -> tuple[Path, Path]:
    """(root holding train/dev/test data dirs, teacher dir)."""
    from speechdistill.teachers.whisper import prepare_teacher

    if all((EGS / "dump" / s / "wav.scp").is_file() for s in ("train", "dev", "test")):
        root = EGS / "dump"
    else:
        from data_prep.mini_en import prepare_mini_en

        root = work / "corpus"
        if not (root / "test" / "wav.scp").is_file():
            prepare_mini_en(root, num_train=300, num_dev=50, num_test=100, seed=0, nj=2)
    teacher = EGS / "exp" / "teacher"
    if not (teacher / "model.safetensors").is_file():
        teacher = prepare_teacher("tiny.en", work / "teacher")
    return root, teacher


def distil(args, root: Path, teacher: Path, work: Path) -> dict:
    from speechdistill.train.config import HubertTrainConfig
    from speechdistill.train.hubert_kd import train_hubert

    out = work / "student"
    if (out / "train.json").is_file():
        return json.loads((out / "train.json").read_text())
    over = {"max_steps": args.distill_steps, "seed": args.seed}
    if args.distill_steps:
        over.update(eval_steps=max(1, args.distill_steps // 4), save_steps=args.distill_steps)
    cfg = HubertTrainConfig.from_sources(args.distill_config, over)
    return train_hubert(teacher, root / "train", root / "dev", out, cfg)


def finetune(args, root: Path, student: Path, out: Path, scratch: bool) -> dict:
    from speechdistill.train.config import CTCTrainConfig
    from speechdistill.train.ctc_finetune import ctc_finetune

    if (out / "train.json").is_file():
        return json.loads((out / "train.json").read_text())
    over = {
        "max_steps": args.ctc_steps,
        "from_scratch": scratch,
        "seed": args.seed,
        "freeze_encoder_steps": args.ctc_frozen_steps,
    }
    if args.ctc_steps:
        over.update(eval_steps=max(1, args.ctc_steps // 2), save_steps=args.ctc_steps)
    cfg = CTCTrainConfig.from_sources(args.ctc_config, over)
    return ctc_finetune(student, root / "train", root / "dev", out, cfg)


def test_scores(model: Path, data: Path) -> dict:
    from speechdistill.datadir import read_kv
    from speechdistill.decode import CTCDecodeConfig, decode_ctc_data_dir
    from speechdistill.scoring import score

    out = model / f"decode_{data.name}"
    decode_ctc_data_dir(model, data, out, CTCDecodeConfig(batch_size=8))
    res = score(read_kv(data / "text"), read_kv(out / "text"), normalizer="english", bootstrap=0)
    return {"cer": res.cer, "wer": res.wer, "n_utts": res.normalized.snt}


@torch.inference_mode()
def speed(teacher_dir: Path, student_dir: Path, data: Path, n: int) -> dict:
    """Median seconds per clip (batch 1) of the teacher encoder and the student encoder."""
    from speechdistill.audio import AudioReader
    from speechdistill.batching import pad_waveforms
    from speechdistill.teachers.hubert import load_ssl_teacher
    from speechdistill.train.hubert_student import load_hubert_student

    teacher = load_ssl_teacher(teacher_dir)
    student, fe, _ = load_hubert_student(student_dir)
    encoder = student.encoder.eval()
    reader = AudioReader(data)
    audios = [reader(u) for u in reader.utt_ids[:n]]
    seconds = sum(len(a) for a in audios) / 16000
    t_in = [teacher.feature_extractor(a, sampling_rate=16000, return_tensors="pt") for a in audios]
    s_in = [pad_waveforms([a], fe) for a in audios]

    def teacher_fn(x):
        return teacher.model(x.input_features)

    def student_fn(x):
        return encoder(x["input_values"], attention_mask=x["attention_mask"])

    teacher_fn(t_in[0]), student_fn(s_in[0])  # warm-up
    t_times, s_times = [], []
    for t_x, s_x in zip(t_in, s_in, strict=True):  # interleaved: both see the same machine load
        t0 = time.perf_counter()
        teacher_fn(t_x)
        t1 = time.perf_counter()
        student_fn(s_x)
        t_times.append(t1 - t0)
        s_times.append(time.perf_counter() - t1)
    return {
        "clips": len(audios),
        "audio_seconds": round(seconds, 2),
        "teacher_median_s": statistics.median(t_times),
        "student_median_s": statistics.median(s_times),
        "teacher_rtfx": seconds / sum(t_times),
        "student_rtfx": seconds / sum(s_times),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_distil_hubert")
    p.add_argument("--distill-config", default=str(EGS / "conf" / "distil_hubert.yaml"))
    p.add_argument("--ctc-config", default=str(EGS / "conf" / "ctc.yaml"))
    p.add_argument("--distill-steps", type=int, default=None, help="(default: the config's)")
    p.add_argument("--ctc-steps", type=int, default=None, help="(default: the config's)")
    p.add_argument(
        "--ctc-frozen-steps",
        type=int,
        default=None,
        help="CTC steps with the encoder frozen (default: the config's)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed-utts", type=int, default=16)
    args = p.parse_args(argv)
    from speechdistill.utils import setup_logging

    setup_logging(0)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    root, teacher = data_and_teacher(work)
    stages: dict[str, float] = {}

    t = time.perf_counter()
    kd = distil(args, root, teacher, work)
    stages["distill"] = time.perf_counter() - t
    runs = {}
    for name, scratch in (("distilled", False), ("random_init", True)):
        t = time.perf_counter()
        summary = finetune(args, root, work / "student", work / f"ctc_{name}", scratch)
        runs[name] = {"train": summary, "test": test_scores(work / f"ctc_{name}", root / "test")}
        stages[f"ctc_{name}"] = time.perf_counter() - t
    t = time.perf_counter()
    sp = speed(teacher, work / "student", root / "test", args.speed_utts)
    stages["speed"] = time.perf_counter() - t
    params = kd["params"]

    d, r = runs["distilled"], runs["random_init"]
    steps = d["train"]["steps"]
    frozen = d["train"]["config"]["freeze_encoder_steps"]
    lines = [
        f"DistilHuBERT on mini_en ({root}), teacher: Whisper tiny.en encoder",
        f"distillation: {kd['steps']} steps, best dev loss {kd['best_dev_loss']:.4f} "
        f"(step {kd['best_step']}); target layers {kd['target_layers']}",
        "",
        f"CTC fine-tuning, {steps} steps each (the first {frozen} with the encoder frozen), "
        f"test set ({d['test']['n_utts']} utts), greedy, best dev checkpoint:",
        f"  {'init':<14} {'test CER':>9} {'test WER':>9} {'best dev CER':>13}",
    ]
    for name, run in runs.items():
        best = run["train"].get("best_dev_cer", float("nan"))
        lines.append(
            f"  {name:<14} {100 * run['test']['cer']:>8.1f}% "
            f"{100 * run['test']['wer']:>8.1f}% {100 * best:>12.1f}%"
        )
        curve = ", ".join(f"{e['step']}: {100 * e['dev_cer']:.1f}" for e in run["train"]["evals"])
        lines.append(f"  {'':<14} dev CER % by step: {curve}")
    lines += [
        f"  CER ratio random/distilled: {r['test']['cer'] / max(d['test']['cer'], 1e-9):.2f}; "
        f"distilled wins: {d['test']['cer'] < r['test']['cer']}",
        "",
        f"parameters: teacher encoder {params['teacher']:,}; student encoder "
        f"{params['student_encoder']:,} ({params['teacher'] / params['student_encoder']:.2f}x "
        f"fewer; + {params['heads']:,} in the heads, dropped after distillation)",
        f"speed (batch 1, {sp['clips']} test clips, {sp['audio_seconds']} s of audio): teacher "
        f"{1000 * sp['teacher_median_s']:.1f} ms/clip (RTFx {sp['teacher_rtfx']:.1f}), student "
        f"{1000 * sp['student_median_s']:.1f} ms/clip (RTFx {sp['student_rtfx']:.1f}): "
        f"{sp['teacher_median_s'] / sp['student_median_s']:.1f}x faster",
        f"wall time: {', '.join(f'{k} {v:.0f} s' for k, v in stages.items())}; "
        f"total {time.perf_counter() - t0:.0f} s",
    ]
    print("\n".join(lines))
    result = {
        "distill": {
            k: kd[k]
            for k in (
                "steps",
                "best_step",
                "best_dev_loss",
                "target_layers",
                "params",
                "sec_per_step",
            )
        },
        "ctc": {
            k: {
                "test": v["test"],
                "steps": v["train"]["steps"],
                "best_dev_cer": v["train"].get("best_dev_cer"),
                "dev_evals": v["train"]["evals"],
                "freeze_encoder_steps": v["train"]["config"]["freeze_encoder_steps"],
                "sec_per_step": v["train"].get("sec_per_step"),
            }
            for k, v in runs.items()
        },
        "speed": sp,
        "stage_seconds": stages,
    }
    (work / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
