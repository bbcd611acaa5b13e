"""Decode speed of a Distil-Whisper student against its teacher, next to the ideal speed-up.

Two pairs, each decoded with a fixed output length (so that both models do the same work and
the ratio measures cost per token, not how soon each stops):

1. the real tiny.en teacher (4+4 layers) and its 2-decoder-layer student;
2. a whisper-small.en-shaped model with random weights (12+12 layers, d_model 768) and its
   2-decoder-layer student (12 → 2, where ~2.5× is possible).

The ideal speed-up is computed from the multiply-accumulates the removed layers cost: per
generated token, each decoder layer does its projections (self-attention 4·d², cross-attention
query/output 2·d², feed-forward 2·d·d_ff) and attends over the context and the 1500 encoder
frames; per utterance, each layer also projects the encoder output into cross-attention keys
and values (2·1500·d²). The output projection (V·d per token) and the encoder are kept, so
they bound the gain. ``--what decode`` times decoding alone (encoder states given); ``e2e``
adds the encoder.

    python bench/decode.py [--tokens 64] [--batch 1 8] [--repeats 3]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tiny random Whisper builders shared with the tests


def decode_macs(config, layers: int, tokens: int, frames: int = 1500) -> float:
    """Multiply-accumulates to generate ``tokens`` tokens with ``layers`` decoder layers."""
    d, ff, v = config.d_model, config.decoder_ffn_dim, config.vocab_size
    per_token_layer = 6 * d * d + 2 * d * ff + 2 * d * (tokens / 2 + frames)
    per_utt_layer = 2 * frames * d * d  # cross-attention keys and values of the encoder output
    return layers * (per_token_layer * tokens + per_utt_layer) + v * d * tokens


def encoder_macs(config, frames: int = 1500) -> float:
    """Multiply-accumulates of the encoder's transformer layers (the convolutions left out)."""
    d, ff = config.d_model, config.encoder_ffn_dim
    return config.encoder_layers * frames * (4 * d * d + 2 * d * ff + 2 * frames * d)


def ideal_speedup(config, n_student: int, tokens: int, *, with_encoder: bool) -> float:
    """The teacher's MACs over the student's: what removing decoder layers can give at best."""
    enc = encoder_macs(config) if with_encoder else 0.0
    teacher = enc + decode_macs(config, config.decoder_layers, tokens)
    return teacher / (enc + decode_macs(config, n_student, tokens))


def make_random_pair(
    root: Path, *, d_model: int, layers: int, heads: int, ffn: int
) -> tuple[Path, Path]:
    """A random English-only Whisper of the given shape and its 2-decoder-layer student."""
    from transformers import WhisperConfig
    from whisper_builders import english_tokenizer, save_random_whisper

    from speechdistill.students.whisper import init_student

    teacher = save_random_whisper(root / "teacher", english_tokenizer(), multilingual=False,
                                  max_source_positions=1500)  # fmt: skip
    config = WhisperConfig.from_pretrained(teacher)
    config.update({"d_model": d_model, "encoder_layers": layers, "decoder_layers": layers,
                   "encoder_attention_heads": heads, "decoder_attention_heads": heads,
                   "encoder_ffn_dim": ffn, "decoder_ffn_dim": ffn, "max_target_positions": 448})  # fmt: skip
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = WhisperForConditionalGeneration.from_pretrained(
        teacher
    ).generation_config
    model.generation_config.max_length = 448
    model.save_pretrained(teacher)
    init_student(teacher, root / "student", decoder_layers=2, overwrite=True)
    return teacher, root / "student"


def tiny_en_pair(root: Path) -> tuple[Path, Path]:
    """The embedded tiny.en teacher and its 2-decoder-layer student (weights do not matter)."""
    from speechdistill.students.whisper import init_student
    from speechdistill.teacher import prepare_teacher

    teacher = prepare_teacher("tiny.en", root / "teacher")
    init_student(teacher, root / "student", decoder_layers=2, overwrite=True)
    return teacher, root / "student"


@torch.inference_mode()
def time_decode(model, feats: torch.Tensor, tokens: int, e2e: bool) -> float:
    """Seconds to generate exactly ``tokens`` tokens per utterance."""
    from transformers.modeling_outputs import BaseModelOutput

    kw = {"min_new_tokens": tokens, "max_new_tokens": tokens, "do_sample": False}
    t0 = time.perf_counter()
    if e2e:
        model.generate(feats, **kw)
    else:
        enc = BaseModelOutput(last_hidden_state=model.model.encoder(feats).last_hidden_state)
        t0 = time.perf_counter()
        model.generate(encoder_outputs=enc, **kw)
    return time.perf_counter() - t0


def bench_pair(name: str, teacher_dir: Path, student_dir: Path, args) -> list[dict]:
    from transformers import WhisperConfig

    from speechdistill.teacher import load_teacher

    teacher, _ = load_teacher(str(teacher_dir))
    student, _ = load_teacher(str(student_dir))
    config = WhisperConfig.from_pretrained(teacher_dir)
    rows = []
    for batch in args.batch:
        torch.manual_seed(0)
        feats = torch.randn(batch, config.num_mel_bins, 3000) * 0.5
        for what in args.what:
            e2e = what == "e2e"
            time_decode(teacher, feats, 4, e2e)  # warm-up
            time_decode(student, feats, 4, e2e)
            t_times, s_times = [], []
            for _ in range(args.repeats):  # alternate, so that load changes hit both
                t_times.append(time_decode(teacher, feats, args.tokens, e2e))
                s_times.append(time_decode(student, feats, args.tokens, e2e))
            t, s = statistics.median(t_times), statistics.median(s_times)
            ideal = ideal_speedup(config, 2, args.tokens, with_encoder=e2e)
            rows.append({
                "pair": name, "what": what, "batch": batch, "tokens": args.tokens,
                "teacher_s": round(t, 4), "student_s": round(s, 4),
                "speedup": round(t / s, 3), "ideal": round(ideal, 3),
                "of_ideal": round((t / s) / ideal, 3),
                "teacher_ms_per_token": round(1000 * t / (batch * args.tokens), 3),
                "student_ms_per_token": round(1000 * s / (batch * args.tokens), 3),
            })  # fmt: skip
            print(_fmt(rows[-1]), flush=True)
    return rows


def _fmt(r: dict) -> str:
    return (f"{r['pair']:<10} {r['what']:<6} batch {r['batch']:>2}: teacher {r['teacher_s']:.3f} s, "
            f"student {r['student_s']:.3f} s -> speed-up {r['speedup']:.2f}x "
            f"(ideal {r['ideal']:.2f}x, {100 * r['of_ideal']:.0f} % of ideal)")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tokens", type=int, default=64, help="generated tokens per utterance")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--what", nargs="+", default=["decode", "e2e"], choices=["decode", "e2e"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--pairs", nargs="+", default=["tiny.en", "small"], choices=["tiny.en", "small"])
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; fixed output length "
          f"{args.tokens} tokens; medians of {args.repeats}")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if "tiny.en" in args.pairs:
            rows += bench_pair("tiny.en", *tiny_en_pair(root / "tiny"), args)
        if "small" in args.pairs:
            pair = make_random_pair(root / "small", d_model=768, layers=12, heads=12, ffn=3072)
            rows += bench_pair("small", *pair, args)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
