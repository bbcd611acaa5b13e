"""Pruned encoders on mini_en: size, batch-1 speed and test CER against the unpruned encoder and
the DistilHuBERT student.

Reads what the recipes left under ``egs/mini_en/exp`` (or ``--exp``): the teacher
(``exp/teacher``, Whisper tiny.en), the pruned students of ``run_prune.sh`` (``exp/prune50``,
``exp/prune75``: ``student/`` after the final distillation, ``ctc/`` after CTC fine-tuning,
``ctc/decode_test/score_wer``) and the DistilHuBERT student of ``run_hubert.sh``
(``exp/hubert``). For each encoder it prints

- parameters, and the batch-1 speed-up its parameter count predicts (``teacher / params``);
- the measured batch-1 speed-up over the unpruned encoder on the same input, median seconds per
  clip over the first ``--speed-utts`` test clips after a warm-up, every model timed on every
  clip in turn (the same machine load): on the clip's own frames (``clip``, how the CTC models
  run) and, for Whisper encoders, on the 30 s window (``window``, what a Whisper decoder reads);
- the test CER / WER of its CTC model (greedy), from the recipe's scoring.

    python bench/prune.py [--exp egs/mini_en/exp] [--runs prune50 prune75] [--speed-utts 16]

Writes ``EXP/prune_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _scores(run: Path) -> dict | None:
    from speechdistill.scoring import load_results

    path = run / "ctc" / "decode_test" / "score_wer"
    if not (path / "results.json").is_file():
        return None
    res = load_results(path)
    return {"cer": res["cer"], "wer": res["wer"], "n_utts": res["n_utts"]}


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.inference_mode()
def measure(exp: Path, runs: list[str], n: int, data: Path) -> dict:
    from speechdistill.audio import AudioReader
    from speechdistill.batching import pad_waveforms
    from speechdistill.inference.ctc import encoder_batch, whisper_clip_input
    from speechdistill.prune.io import load_pruned
    from speechdistill.teachers.hubert import load_ssl_teacher
    from speechdistill.train.hubert_student import load_hubert_student

    teacher = load_ssl_teacher(exp / "teacher")
    fe = teacher.feature_extractor
    reader = AudioReader(data)
    audios = [reader(u) for u in reader.utt_ids[:n]]
    clips = [encoder_batch([a], fe) for a in audios]

    def whisper_fns(model):
        def clip(x):
            with whisper_clip_input(model, int(x["num_frames"][0])):
                return model(x["input_features"])

        def window(x):
            return model(fe([x["audio"]], sampling_rate=16000, return_tensors="pt").input_features)

        return {"clip": clip, "window": window}

    models = {"tiny.en encoder": (teacher.model, whisper_fns(teacher.model))}
    for run in runs:
        model = load_pruned(exp / run / "student")
        models[run] = (model, whisper_fns(model))
    hubert = exp / "hubert" / "student"
    if (hubert / "model.safetensors").is_file():
        student, hfe, _ = load_hubert_student(hubert)
        enc = student.encoder.eval()
        models["distilhubert"] = (enc, {"clip": lambda x: enc(x["hubert"]["input_values"])})
    inputs = []
    for a, c in zip(audios, clips, strict=True):
        hub = pad_waveforms([a], hfe) if "distilhubert" in models else None
        inputs.append({**c, "audio": a, "hubert": hub})
    times: dict[tuple[str, str], list[float]] = {}
    for _, fns in models.values():  # warm-up
        for fn in fns.values():
            fn(inputs[0])
    for x in inputs:
        for name, (_, fns) in models.items():
            for mode, fn in fns.items():
                t0 = time.perf_counter()
                fn(x)
                times.setdefault((name, mode), []).append(time.perf_counter() - t0)
    base = _params(teacher.model)
    out = {"clips": len(audios), "audio_seconds": sum(len(a) for a in audios) / 16000, "models": {}}
    for name, (model, fns) in models.items():
        row = {"params": _params(model), "predicted_speedup": base / _params(model)}
        for mode in fns:
            med = statistics.median(times[(name, mode)])
            row[f"{mode}_median_s"] = med
            row[f"{mode}_speedup"] = statistics.median(times[("tiny.en encoder", mode)]) / med
        run = exp / ("hubert" if name == "distilhubert" else name)
        row["test"] = _scores(run) if name != "tiny.en encoder" else None
        info = run / "prune" / "prune.json"
        if info.is_file():
            p = json.loads(info.read_text())
            row.update(target_sparsity=p["target_sparsity"], sparsity=p["sparsity"])
        out["models"][name] = row
    return out


def report(res: dict) -> list[str]:
    lines = [
        f"batch 1, median over {res['clips']} test clips ({res['audio_seconds']:.1f} s of audio)",
        f"{'encoder':<16} {'params':>8} {'sparsity':>15} {'pred':>6} {'clip':>14} "
        f"{'window':>14} {'test CER':>9} {'WER':>6}",
    ]
    for name, r in res["models"].items():
        sp = f"{r['sparsity']:.3f} (t {r['target_sparsity']})" if "sparsity" in r else ""
        clip = f"{1000 * r['clip_median_s']:.1f}ms {r['clip_speedup']:.2f}x"
        window = (
            f"{1000 * r['window_median_s']:.0f}ms {r['window_speedup']:.2f}x"
            if "window_median_s" in r
            else ""
        )
        t = r["test"]
        cer = f"{100 * t['cer']:.1f}%" if t else ""
        wer = f"{100 * t['wer']:.1f}%" if t else ""
        lines.append(
            f"{name:<16} {r['params'] / 1e6:>7.2f}M {sp:>15} {r['predicted_speedup']:>5.2f}x "
            f"{clip:>14} {window:>14} {cer:>9} {wer:>6}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--exp", type=Path, default=REPO / "egs" / "mini_en" / "exp")
    p.add_argument(
        "--data", type=Path, default=None, help="test data dir (default: EXP/../dump/test)"
    )
    p.add_argument("--runs", nargs="+", default=["prune50", "prune75"])
    p.add_argument("--speed-utts", type=int, default=16)
    args = p.parse_args(argv)
    from speechdistill.utils import setup_logging

    setup_logging(0)
    runs = [r for r in args.runs if (args.exp / r / "student" / "model.safetensors").is_file()]
    missing = sorted(set(args.runs) - set(runs))
    if missing:
        print(f"not run yet (no student/): {', '.join(missing)}", file=sys.stderr)
    data = args.data or args.exp.parent / "dump" / "test"
    res = measure(args.exp, runs, args.speed_utts, data)
    res["threads"] = torch.get_num_threads()
    (args.exp / "prune_bench.json").write_text(json.dumps(res, indent=2) + "\n")
    print("\n".join(report(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
