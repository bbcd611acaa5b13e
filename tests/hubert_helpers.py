"""Builders shared by the DistilHuBERT tests of both tiers: tiny random SSL and Whisper
teachers, Kaldi data dirs of noise clips, and the training log's rows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

TINY = dict(
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=2,
    intermediate_size=48,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)


def tiny_ssl_teacher(out: Path, kind: str = "hubert", **overrides) -> Path:
    """A random 4-layer HuBERT / wav2vec2 / WavLM model (every tensor random, biases and norms
    too, so that copies are told apart from fresh initialisations), saved with safetensors."""
    import transformers

    names = {
        "hubert": ("HubertConfig", "HubertModel"),
        "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model"),
        "wavlm": ("WavLMConfig", "WavLMModel"),
    }
    cfg_cls, model_cls = (getattr(transformers, n) for n in names[kind])
    config = cfg_cls(**{**TINY, "layerdrop": 0.1, **overrides})
    if kind == "wavlm":
        config.num_buckets, config.max_bucket_distance = 16, 40
    torch.manual_seed(1)
    model = model_cls(config)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    model.save_pretrained(out, safe_serialization=True)
    return out


def tiny_whisper_teacher(out: Path) -> Path:
    """A random 2-encoder-layer Whisper (width 64) with the real 30 s window (1500 frames)."""
    from speechdistill.testing import english_tokenizer, save_random_whisper

    return save_random_whisper(
        out, english_tokenizer(), multilingual=False, max_source_positions=1500
    )


def noise_data_dir(root: Path, n: int, *, seed: int = 0, prefix: str = "utt") -> Path:
    """A Kaldi data dir of ``n`` noise clips of 0.4–1.2 s (with a ``text``)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    wav, text, utt2spk = {}, {}, {}
    for i in range(n):
        utt = f"spk{i % 2}-{prefix}{i:03d}"
        path = root / "wav" / f"{utt}.wav"
        path.parent.mkdir(exist_ok=True)
        audio = 0.1 * rng.standard_normal(int(16000 * rng.uniform(0.4, 1.2)))
        sf.write(path, audio.astype(np.float32), 16000)
        wav[utt], text[utt], utt2spk[utt] = str(path), f"word {i} more", f"spk{i % 2}"
    for name, table in (("wav.scp", wav), ("text", text), ("utt2spk", utt2spk)):
        lines = [f"{k} {v}\n" for k, v in sorted(table.items())]
        (root / name).write_text("".join(lines))
    return root


def csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file (a training log) as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
