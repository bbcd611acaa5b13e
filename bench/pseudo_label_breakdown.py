#!/usr/bin/env python
"""Where the time of the pseudo-label stage goes, for one batch of short clips, on CPU.

Usage::

    python bench/pseudo_label_breakdown.py [--batch-size 16] [--repeats 3] [--work DIR]
                                           [--threads N] [--variants hf,hf-w10,...]

Prints a table and writes every figure to ``WORK/results/pseudo_label_breakdown.json``. Same
inputs, variants and options as ``bench/pseudo_label.py`` (whose set-up and helpers it uses).

For the first ``--batch-size`` clips of the data (2-6 s each) and every variant of our stage:
the log-mel features, the encoder alone, ``generate`` alone (hf) and the whole ``label()``; the
rest of ``label()`` is decoding plus the statistics pass. It also times log-mel features
computed for the encoder window only and checks they equal the first frames of the 30 s
features. The variants run one after the other in every repetition, their order rotated;
the table shows medians.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/pseudo_label.py: its helpers, and the environment it sets before transformers loads
sys.path.insert(0, str(Path(__file__).resolve().parent))

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pseudo_label import (
    VARIANTS,
    common_parser,
    finish,
    format_table,
    header,
    load_average,
    log,
    median,
    rotated,
    start,
    timed,
    variant_names,
)

from speechdistill.audio import SAMPLE_RATE, AudioReader
from speechdistill.pseudo_label import HFLabeler, PseudoLabelConfig, make_labeler
from speechdistill.whisper.tokens import WINDOW_SECONDS


def _feature_extractor(labeler: Any) -> Any:
    """The labeler's log-mel feature extractor (hf: its processor's)."""
    proc = getattr(labeler, "processor", None)
    return proc.feature_extractor if proc is not None else labeler.feature_extractor


def _features(labeler: Any, audios: Sequence[np.ndarray], seconds: float) -> np.ndarray:
    """Log-mel features padded to ``seconds`` (float32, ``(batch, mels, 100 * seconds)``)."""
    fe = _feature_extractor(labeler)
    feats = fe(
        list(audios),
        sampling_rate=SAMPLE_RATE,
        return_tensors="np",
        padding="max_length",
        max_length=int(seconds * SAMPLE_RATE),
    )
    return np.ascontiguousarray(feats.input_features, dtype=np.float32)


def _encode(labeler: Any, feats: np.ndarray, longest: float) -> Any:
    """The encoder alone, as the labeler runs it (window included)."""
    if isinstance(labeler, HFLabeler):
        with torch.inference_mode():
            return labeler.encode(torch.from_numpy(feats), longest)
    import ctranslate2

    window = labeler.config.encoder_window
    if window < WINDOW_SECONDS and longest + 2.0 <= window:
        feats = np.ascontiguousarray(feats[..., : int(window * 100)])
    return labeler.model.encode(ctranslate2.StorageView.from_array(feats), to_cpu=True)


def _generate(labeler: HFLabeler, states: torch.Tensor) -> torch.Tensor:
    """``generate`` from encoder states, as :meth:`HFLabeler.label` calls it (greedy)."""
    from transformers.modeling_outputs import BaseModelOutput

    with torch.inference_mode():
        return labeler.model.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=states),
            num_beams=1,
            do_sample=False,
            return_timestamps=False,
        )


def time_components(labeler: Any, utt_ids: list[str], audios: list[np.ndarray]) -> dict[str, float]:
    """Seconds of each part of labelling one batch (see the module docstring)."""
    longest = max(len(a) for a in audios) / SAMPLE_RATE
    window = labeler.config.encoder_window
    t: dict[str, float] = {}
    feats, t["features"] = timed(lambda: _features(labeler, audios, WINDOW_SECONDS))
    states, t["encoder"] = timed(lambda: _encode(labeler, feats, longest))
    if isinstance(labeler, HFLabeler):
        _, t["generate"] = timed(lambda: _generate(labeler, states))
    _, t["label"] = timed(lambda: labeler.label(utt_ids, audios))
    if window < WINDOW_SECONDS:
        short, t["features_window_only"] = timed(lambda: _features(labeler, audios, window))
        frames = short.shape[-1]
        t["features_window_only_max_abs_diff"] = float(np.abs(feats[..., :frames] - short).max())
    return t


def measure_breakdown(
    labelers: dict[str, Any], utt_ids: list[str], audios: list[np.ndarray], repeats: int
) -> dict[str, dict[str, float]]:
    """Medians over ``repeats`` of :func:`time_components` for every stage variant."""
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in labelers}
    for rep in range(repeats):
        for name in rotated(list(labelers), rep):
            runs[name].append(time_components(labelers[name], utt_ids, audios))
        log(f"breakdown rep {rep + 1}/{repeats} (load {load_average()[0]})")
    out = {}
    for name, parts in runs.items():
        med = {k: median(p[k] for p in parts) for k in parts[0]}
        med["rest"] = med["label"] - med["features"] - med["encoder"]
        if "generate" in med:
            med["forced_pass_and_stats"] = med["rest"] - med["generate"]
        med["encoder_share"] = med["encoder"] / med["label"]
        out[name] = {k: round(v, 4) for k, v in med.items()}
    return out


def breakdown_table(breakdown: dict[str, dict[str, float]]) -> str:
    """The medians of every variant, in seconds."""

    def cell(b: dict[str, float], key: str) -> str:
        return f"{b[key]:.2f}" if key in b else "-"

    rows = []
    for name, b in breakdown.items():
        rows.append(
            [
                name,
                cell(b, "features"),
                cell(b, "encoder"),
                cell(b, "generate"),
                cell(b, "forced_pass_and_stats"),
                cell(b, "rest"),
                cell(b, "label"),
                f"{100 * b['encoder_share']:.0f} %",
                cell(b, "features_window_only"),
            ]
        )
    headers = [
        "variant",
        "log-mel 30 s",
        "encoder",
        "generate",
        "forced+stats",
        "all but enc+feat",
        "label()",
        "encoder share",
        "log-mel window only",
    ]
    return format_table(headers, rows)


# --------------------------------------------------------------------------------------------
# driver


def main(argv: Sequence[str] | None = None) -> int:
    args = common_parser(
        "python bench/pseudo_label_breakdown.py",
        "Where the time of the pseudo-label stage goes for one batch of short clips.",
    ).parse_args(argv)
    t0 = time.perf_counter()
    out, inputs = start(args)
    labelers = {}
    for name in variant_names(args):
        _, overrides = VARIANTS[name]
        if overrides is not None:  # the baseline has no parts to time
            log(f"loading {name}")
            config = PseudoLabelConfig(batch_size=args.batch_size, **overrides)
            labelers[name] = make_labeler(inputs.teacher, config)
    reader = AudioReader(inputs.data)
    batch_ids = reader.utt_ids[: args.batch_size]  # dataset order: short clips, 2-6 s
    batch = [reader(u) for u in batch_ids]
    log("warming up")
    for labeler in labelers.values():
        labeler.label(batch_ids[:4], batch[:4])
    out["breakdown"] = measure_breakdown(labelers, batch_ids, batch, args.repeats)
    out["breakdown_clip_seconds"] = clips = [round(len(a) / SAMPLE_RATE, 2) for a in batch]
    out["load_average"]["after_breakdown"] = load_average()
    parts = header(out, args, "pseudo-label breakdown")
    parts += [
        "",
        f"One batch of {len(clips)} short clips ({min(clips):.1f}-{max(clips):.1f} s), "
        "seconds (medians)",
        breakdown_table(out["breakdown"]),
    ]
    diffs = [
        b["features_window_only_max_abs_diff"]
        for b in out["breakdown"].values()
        if "features_window_only_max_abs_diff" in b
    ]
    if diffs:
        parts.append(
            f"log-mel of the window only vs the first frames of the 30 s log-mel: "
            f"max |diff| = {max(diffs):g}"
        )
    finish(out, "\n".join(parts), args.work, "pseudo_label_breakdown", t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
