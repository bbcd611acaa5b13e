"""KD training step time with the three teacher modes, side by side, as ratios.

- ``online``: teacher and student each run their encoder (the distil-whisper baseline when the
  encoder is frozen but not shared);
- ``shared_encoder``: one frozen encoder pass serves both decoders;
- ``cache``: encoder states and RS-KD teacher samples read from the pseudo-label caches; no
  teacher runs.

Default: the real tiny.en teacher (4+4 layers), a 2-decoder-layer student, mini_en speech.
``--shape large-v3``: a teacher of whisper-large-v3's shape (32+32 layers, d_model 1280, 128 mels,
51,866 tokens) with random weights and a 32-2 student, for a GPU; pseudo-labels are capped at
``--label-tokens`` tokens (random weights never stop on their own). Each mode trains for
``--steps`` steps per round; rounds alternate the modes so that load changes hit all of them;
the first two steps of each run (warm-up) are left out; medians over rounds.

    python bench/train_step.py [--steps 6] [--rounds 3] [--batch-size 8] [--work DIR]
    # on a GPU machine without espeak-ng: build the corpus and the teacher's skeleton here,
    python bench/train_step.py --shape large-v3 --batch-size 32 --work W --prepare-only
    # then, there (random weights are drawn on the GPU; the wav.scp files hold absolute paths:
    # if W moved, sed -i "s# /old/W/# $PWD/W/#" W/*/wav.scp W/*/*/wav.scp):
    python bench/train_step.py --shape large-v3 --batch-size 32 --work W \
        --mixed-precision bf16 --num-workers 8 --out figures.json
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
ROOT = Path(__file__).resolve().parents[1]
WARMUP_STEPS = 2  # left out of each run's timing (allocator, kernel selection, first batch)

#: Teacher shapes with random weights (``tiny.en`` is the real, embedded teacher).
# fmt: off
SHAPES: dict[str, dict[str, int]] = {
    "large-v3": {
        "d_model": 1280, "encoder_layers": 32, "decoder_layers": 32,
        "encoder_attention_heads": 20, "decoder_attention_heads": 20,
        "encoder_ffn_dim": 5120, "decoder_ffn_dim": 5120,
        "max_source_positions": 1500, "max_target_positions": 448,
    },
    "tiny-v3": {  # a smoke test of the random-teacher path on a CPU
        "d_model": 64, "encoder_layers": 4, "decoder_layers": 4,
        "encoder_attention_heads": 4, "decoder_attention_heads": 4,
        "encoder_ffn_dim": 128, "decoder_ffn_dim": 128,
        "max_source_positions": 1500, "max_target_positions": 448,
    },
}
# fmt: on


def random_teacher_skeleton(out: Path, shape: str) -> None:
    """Config, generation config and processor of a ``shape`` teacher (v3 vocabulary layout,
    100 languages, 128 mels), without weights: they are drawn where the benchmark runs."""
    from transformers import GenerationConfig, WhisperConfig

    from speechdistill.testing import multilingual_tokenizer, save_random_whisper

    tmp = Path(tempfile.mkdtemp(prefix="skeleton_", dir=out.parent))
    tok = multilingual_tokenizer(tmp, n_langs=100, v3=True)
    save_random_whisper(tmp / "model", tok, multilingual=True, n_mels=128,
                        max_source_positions=SHAPES[shape]["max_source_positions"])  # fmt: skip
    config = WhisperConfig.from_pretrained(tmp / "model")
    config.update(SHAPES[shape])
    gen = GenerationConfig.from_pretrained(tmp / "model")
    gen.max_length = SHAPES[shape]["max_target_positions"]
    for f in (tmp / "model").glob("*.safetensors"):
        f.unlink()
    config.save_pretrained(tmp / "model")
    gen.save_pretrained(tmp / "model")
    (tmp / "model").rename(out)
    shutil.rmtree(tmp)


def draw_weights(teacher: Path, device: str) -> None:
    """Random weights (transformers' own initialisation, seed 0) for a teacher skeleton."""
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig.from_pretrained(teacher)
    torch.manual_seed(0)
    with torch.device(device):
        model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig.from_pretrained(teacher)
    model.save_pretrained(teacher)
    del model


def close_capped_labels(pl: Path, eot: int) -> None:
    """Random weights never emit <|endoftext|>: make the last token of each label cut at
    ``--label-tokens`` the end token, so that training takes it (length and cache alignment kept)."""
    path = pl / "utt2teacher_tokens"
    lines = []
    for line in path.read_text().splitlines():
        utt, *ids = line.split()
        lines.append(" ".join([utt, *ids[:-1], str(eot)]) if ids and ids[-1] != str(eot) else line)
    path.write_text("\n".join(lines) + "\n")


def setup(work: Path, args: argparse.Namespace) -> dict[str, Path]:
    """Corpus, teacher, pseudo-labels with caches and the initial student (kept in ``work``)."""
    from data_prep.mini_en import prepare_mini_en
    from speechdistill.datadir.ops import subset
    from speechdistill.init_student import init_student
    from speechdistill.pseudo_label import PseudoLabelConfig, pseudo_label
    from speechdistill.teachers.whisper import prepare_teacher

    corpus = work / "corpus"
    if not (corpus / "train" / "wav.scp").is_file():
        prepare_mini_en(corpus, num_train=args.num_train or 4 * args.batch_size, num_dev=2,
                        num_test=2, progress=False)  # fmt: skip
    dev = work / "dev"
    if not (dev / "wav.scp").is_file():
        subset(corpus / "dev", dev, first=2)
    teacher = work / "teacher"
    if args.shape == "tiny.en":
        prepare_teacher("tiny.en", teacher)
    elif not (teacher / "config.json").is_file():
        random_teacher_skeleton(teacher, args.shape)
    paths = {"teacher": teacher, "pl": work / "pl", "student": work / "student", "dev": dev}
    if args.prepare_only:
        return paths
    if not any(teacher.glob("*.safetensors")):
        draw_weights(teacher, args.device)
    if not (paths["pl"] / "text.teacher").is_file():
        dtype = {"bf16": "bfloat16", "fp16": "float16"}.get(args.mixed_precision)
        cfg = PseudoLabelConfig(batch_size=args.batch_size, cache_encoder=True, rskd_k=32,
                                max_new_tokens=args.label_tokens, dtype=dtype,
                                language=None if args.shape == "tiny.en" else "en",
                                device=args.device)  # fmt: skip
        pseudo_label(teacher, corpus / "train", paths["pl"], cfg)
        if args.shape != "tiny.en":
            from transformers import GenerationConfig

            close_capped_labels(paths["pl"], GenerationConfig.from_pretrained(teacher).eos_token_id)
    if not (paths["student"] / "student.json").is_file():
        init_student(teacher, paths["student"], decoder_layers=2, overwrite=True)
    return paths


def run_mode(paths: dict[str, Path], mode: str, args: argparse.Namespace, out: Path) -> float:
    """Median seconds per step of one short training run (warm-up steps left out)."""
    from speechdistill.train.config import TrainConfig
    from speechdistill.train.whisper_kd import train_whisper

    shutil.rmtree(out, ignore_errors=True)
    cfg = TrainConfig(
        teacher_mode=mode,
        cache_dir=str(paths["pl"] / "cache") if mode == "cache" else None,
        temperature=1.0,  # the cache's sampling temperature; the same for every mode
        max_steps=args.steps,
        batch_size=args.batch_size,
        mixed_precision=args.mixed_precision,
        num_workers=args.num_workers,
        language=None if args.shape == "tiny.en" else "en",
        log_steps=1,
        eval_steps=10**6,
        save_steps=10**6,
        keep_checkpoints=1,
        eval_max_new_tokens=4,
        warmup_steps=1,
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    train_whisper(paths["student"], paths["teacher"], paths["pl"], paths["dev"], out, cfg)
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(f"{mode}: peak GPU memory {peak:.1f} GiB", flush=True)
    with open(out / "train_log.csv", newline="") as f:
        times = [float(r["sec_per_step"]) for r in csv.DictReader(f)][WARMUP_STEPS:]
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--shape", default="tiny.en", choices=["tiny.en", *SHAPES])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-train", type=int, default=0, help="training clips (0: 4 batches)")
    p.add_argument("--label-tokens", type=int, default=None,
                   help="cap on pseudo-label tokens (default: none for tiny.en, 32 otherwise)")  # fmt: skip
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    p.add_argument("--num-workers", type=int, default=0, help="data loader workers")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="for pseudo-labelling and drawing weights (training: accelerate's)")  # fmt: skip
    p.add_argument("--work", default=None, help="keep corpus/teacher/caches here between runs")
    p.add_argument("--prepare-only", action="store_true",
                   help="only the corpus and the teacher skeleton (to carry to a GPU machine)")  # fmt: skip
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    args = p.parse_args()
    if args.steps <= WARMUP_STEPS:
        p.error(f"--steps must exceed the {WARMUP_STEPS} warm-up steps")
    if args.label_tokens is None and args.shape != "tiny.en":
        args.label_tokens = 32
    if args.prepare_only and not args.work:
        p.error("--prepare-only needs --work")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_train_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths = setup(work, args)
    if args.prepare_only:
        print(f"prepared {work} in {time.perf_counter() - t0:.0f} s")
        return 0
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"set-up {time.perf_counter() - t0:.0f} s; torch {torch.__version__}, {gpu}, "
          f"{torch.get_num_threads()} threads; teacher {args.shape}, batch {args.batch_size}, "
          f"mixed precision {args.mixed_precision}, {args.steps} steps a run "
          f"({WARMUP_STEPS} warm-up), {args.rounds} rounds", flush=True)  # fmt: skip
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode in MODES:
            times[mode].append(run_mode(paths, mode, args, work / "runs" / mode))
            print(f"round {r + 1} {mode:<15} {times[mode][-1]:.3f} s/step", flush=True)
    med = {m: statistics.median(t) for m, t in times.items()}
    print("\nmode             s/step   speed-up vs online")
    for m in MODES:
        print(f"{m:<15} {med[m]:7.3f}   {med['online'] / med[m]:.2f}x")
    print(f"\ncache vs shared_encoder: {med['shared_encoder'] / med['cache']:.2f}x")
    if args.out:
        figures = {"shape": args.shape, "device": gpu, "batch_size": args.batch_size,
                   "mixed_precision": args.mixed_precision, "median_s_per_step": med,
                   "runs": times}  # fmt: skip
        Path(args.out).write_text(json.dumps(figures, indent=2))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
