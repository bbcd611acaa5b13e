#!/usr/bin/env python
"""Whisper (multilingual) WER on espeak-ng Brazilian Portuguese, by voice, variant, rate and pitch.

Usage::

    python bench/mini_pt_voices.py --model /path/to/whisper-base-ct2 [--num 25]
        [--seed 0] [--settings pt-br:130:50:3,pt-br+f3:140:60,...] [--compute-type int8]
        [--threads 2]

Picks ``--num`` sentences of mini_pt's bundled text (seeded), synthesises each with every setting
``VOICE:WPM:PITCH[:GAP]`` (espeak-ng ``-v VOICE -s WPM -p PITCH -g GAP``), transcribes it with
faster-whisper (``WhisperModel(model, device="cpu", compute_type=...)``, ``language="pt"``, ``beam_size=1``,
no previous-text conditioning) and prints one row per setting: pooled WER after the ``pt_br``
normaliser (:func:`speechdistill.scoring.score`), substitution / deletion / insertion rates, and
the audio seconds. Not a test: a measurement for data_prep/mini_pt/README.md (which voices the
generator uses by default).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import random
import sys
import time

import numpy as np

from data_prep.mini_en.plan import Utterance
from data_prep.mini_en.synthesis import SAMPLE_RATE, find_espeak, synthesize
from data_prep.mini_pt.text import load_sentences
from speechdistill.scoring import score

#: The settings measured by default: the issue's baseline and the candidates around it.
DEFAULT_SETTINGS = (
    "pt-br:175:50",
    "pt-br:150:50",
    "pt-br:150:50:2",
    "pt-br:150:50:4",
    "pt-br:130:50:3",
    "pt-br:120:50:3",
    "pt-br+m3:150:50",
    "pt-br+m3:150:50:3",
    "pt-br+m3:130:50:3",
    "pt-br+f3:140:60",
    "pt-br+f3:150:60:3",
    "pt-br+f2:150:60:3",
    "pt-br+f2:130:60:3",
    "pt-br+m1:150:45:3",
    "pt-br+klatt:160:50",
    "pt:160:50",
    "pt:150:50:3",
)


def parse_setting(value: str) -> tuple[str, int, int, int]:
    """``VOICE:WPM:PITCH[:GAP]`` (GAP: espeak-ng -g, word gap in 10 ms units, default 0)."""
    voice, *nums = value.split(":")
    wpm, pitch, gap = (int(n) for n in [*nums, "0"][:3])
    return voice, wpm, pitch, gap


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--model", default="/tmp/base_ct2", help="CTranslate2 Whisper model folder")
    p.add_argument("--num", type=int, default=25, help="sentences per setting (%(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--settings", default=",".join(DEFAULT_SETTINGS), help="VOICE:WPM:PITCH,...")
    p.add_argument("--compute-type", default="int8")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    from faster_whisper import WhisperModel

    espeak = find_espeak()
    sentences = random.Random(f"{args.seed}:bench").sample(load_sentences(), args.num)
    model = WhisperModel(
        args.model, device="cpu", compute_type=args.compute_type, cpu_threads=args.threads
    )
    print(f"# {args.num} sentences, seed {args.seed}, {args.model}, {args.compute_type}, greedy")
    print(f"{'setting':<24} {'WER%':>6} {'sub%':>6} {'del%':>6} {'ins%':>6} {'audio_s':>8}")
    for setting in args.settings.split(","):
        voice, wpm, pitch, gap = parse_setting(setting)
        refs, hyps, seconds = {}, {}, 0.0
        t0 = time.monotonic()
        for i, text in enumerate(sentences):
            utt = Utterance(f"u{i:03d}", "bench", "spk", voice, text, wpm, pitch, 90, gap, "seen")
            audio = synthesize(utt, espeak).astype(np.float32) / 32768.0
            seconds += audio.shape[0] / SAMPLE_RATE
            segments, _ = model.transcribe(
                audio,
                language="pt",
                beam_size=1,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            refs[utt.utt] = text
            hyps[utt.utt] = " ".join(s.text.strip() for s in segments)
        res = score(refs, hyps, normalizer="pt_br", bootstrap=0)
        w = res.normalized.words
        n = max(w.ref, 1)
        print(
            f"{setting:<24} {100 * res.normalized.wer:6.1f} {100 * w.sub / n:6.1f} "
            f"{100 * w.dels / n:6.1f} {100 * w.ins / n:6.1f} {seconds:8.1f}"
            f"   ({time.monotonic() - t0:.0f} s)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
