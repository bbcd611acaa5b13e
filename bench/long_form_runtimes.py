#!/usr/bin/env python
"""Models on whole recordings in the runtimes people deploy: faster-whisper and the pipeline.

Usage::

    python bench/long_form_runtimes.py --data egs/mini_en/dump/test_long \\
        --model teacher=egs/mini_en/exp/teacher --model student=egs/mini_en/exp/student \\
        [--runtimes faster-whisper,pipeline] [--quantization int8] [--work DIR]
        [--condition-on-previous-text false] [--beam-size 1]

``--data`` is a data dir whose utterances are recordings (``wav.scp`` + ``text``, e.g. mini_en's
``test_long``). Each ``--model NAME=DIR`` (a transformers Whisper dir, as the recipe writes) is
exported with ``speechdistill teacher export-ct2 --quantization Q`` and transcribed by
faster-whisper (``WhisperModel(dir, compute_type=Q).transcribe(wav, language="en",
beam_size=B, word_timestamps=True)``, ``--beam-size``, default 1: its sequential long-form
decoding with temperature fallback), and by transformers' ASR pipeline on the whole array
(``return_timestamps=True``:
sequential long-form generation, with the pipeline's own default of 5 beams, which applies to
any model whose ``generation_config`` sets no ``num_beams``, ours included). ``--condition-on-previous-text`` (default true, faster-whisper's
default; transformers' is false) prompts each window with the previous one's text in both.
Printed per model and runtime:
WER (English normaliser, :func:`speechdistill.scoring.score`), substitution, deletion and
insertion rates, segments, words with timestamps, wall time and RTFx, measured in this run.
``speechdistill decode --long-form`` (the recipe's ``decode_long_<set>``) is the third runtime.
"""

from __future__ import annotations

import os

for _key, _value in {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_key, _value)

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from speechdistill.audio import SAMPLE_RATE, AudioReader  # noqa: E402
from speechdistill.datadir import DataDir  # noqa: E402
from speechdistill.scoring import score  # noqa: E402
from speechdistill.whisper.ct2.export import export_ct2  # noqa: E402

RUNTIMES = ("faster-whisper", "pipeline")


def faster_whisper(
    model_dir: Path,
    wavs: dict[str, str],
    quantization: str,
    language: str,
    prev: bool,
    beam_size: int = 1,
):
    """Hypotheses, segments and timed words of faster-whisper on every recording."""
    from faster_whisper import WhisperModel

    model = WhisperModel(str(model_dir), device="cpu", compute_type=quantization)
    hyps, segments, words = {}, 0, 0
    for reco, wav in wavs.items():
        segs = list(model.transcribe(wav, language=language, beam_size=beam_size,
                                     word_timestamps=True,
                                     condition_on_previous_text=prev)[0])  # fmt: skip
        hyps[reco] = " ".join(s.text.strip() for s in segs)
        segments += len(segs)
        words += sum(1 for s in segs for w in (s.words or []) if w.start <= w.end)
    return hyps, segments, words


def pipeline(model_dir: Path, audio: dict, language: str, prev: bool):
    """Hypotheses and chunks of transformers' ASR pipeline (sequential long-form)."""
    import torch
    from transformers import pipeline as hf_pipeline

    asr = hf_pipeline("automatic-speech-recognition", model=str(model_dir), device="cpu",
                      dtype=torch.float32)  # fmt: skip
    multilingual = bool(getattr(asr.model.generation_config, "is_multilingual", False))
    kwargs = {"language": language} if multilingual else {}
    kwargs["condition_on_prev_tokens"] = prev
    hyps, chunks = {}, 0
    for reco, samples in audio.items():
        out = asr({"raw": samples, "sampling_rate": SAMPLE_RATE}, return_timestamps=True,
                  generate_kwargs=kwargs)  # fmt: skip
        hyps[reco] = out["text"].strip()
        chunks += len(out.get("chunks", []))
    return hyps, chunks, 0


def measure(args, work: Path, refs, wavs, audio, seconds: float, prev: bool, runtimes) -> list:
    """One row per model and runtime: WER, its parts, segments, timed words, wall time."""
    rows = []
    for spec in args.model:
        name, _, model_dir = spec.partition("=")
        for rt in runtimes:
            t0 = time.perf_counter()
            if rt == "faster-whisper":
                ct2 = export_ct2(model_dir, work / f"{name}.ct2", quantization=args.quantization,
                                 force=True)  # fmt: skip
                t0 = time.perf_counter()  # the export is not timed
                plain = {r: wavs[r] for r in audio}
                hyps, segs, words = faster_whisper(
                    ct2, plain, args.quantization, args.language, prev, args.beam_size
                )
            else:
                hyps, segs, words = pipeline(Path(model_dir), audio, args.language, prev)
            wall = time.perf_counter() - t0
            res = score(refs, hyps, normalizer=args.normalizer, bootstrap=0)
            c = res.normalized.words
            n = max(c.ref, 1)
            row = {"model": name, "runtime": rt, "wer": 100 * res.wer,
                   "sub": 100 * c.sub / n, "del": 100 * c.dels / n, "ins": 100 * c.ins / n,
                   "segments": segs, "timed_words": words, "wall_s": wall,
                   "rtfx": seconds / wall}  # fmt: skip
            rows.append(row)
            print(json.dumps({k: round(v, 2) if isinstance(v, float) else v
                              for k, v in row.items()}), flush=True)  # fmt: skip
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="data dir of whole recordings")
    ap.add_argument("--model", action="append", required=True, metavar="NAME=DIR")
    ap.add_argument("--runtimes", default=",".join(RUNTIMES))
    ap.add_argument("--quantization", default="int8", help="faster-whisper's compute type")
    ap.add_argument("--language", default="en")
    ap.add_argument("--normalizer", default="english")
    ap.add_argument("--condition-on-previous-text", default="true", choices=("true", "false"))
    ap.add_argument("--beam-size", type=int, default=1, help="faster-whisper's beams")
    ap.add_argument("--work", type=Path, help="where the exports go (default: a temp dir)")
    args = ap.parse_args(argv)
    prev = args.condition_on_previous_text == "true"
    runtimes = [r for r in args.runtimes.split(",") if r]
    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown:
        ap.error(f"unknown runtime(s) {', '.join(unknown)}; choose from {', '.join(RUNTIMES)}")
    data = DataDir(args.data)
    refs = data.read("text")
    wavs = data.wav_scp()
    reader = AudioReader(args.data)
    audio = {r: reader(r) for r in sorted(refs)}
    seconds = sum(len(a) for a in audio.values()) / SAMPLE_RATE
    print(f"{args.data}: {len(refs)} recordings, {seconds:.1f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="long_form_runtimes.") as tmp:
        work = args.work or Path(tmp)  # the exports; a temp dir is removed at the end
        rows = measure(args, work, refs, wavs, audio, seconds, prev, runtimes)
    print("\n| model | runtime | WER | sub | del | ins | segments | RTFx |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['runtime']} | {r['wer']:.1f} | {r['sub']:.1f} | "
              f"{r['del']:.1f} | {r['ins']:.1f} | {r['segments']} | {r['rtfx']:.1f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
