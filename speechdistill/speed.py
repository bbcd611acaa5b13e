"""Speed and size of a Whisper model on a data dir: parameters, latency at batch 1, throughput
(RTFx) at a larger batch, and speculative decoding with a student's decoder as the assistant.

Speculative decoding (Leviathan et al. 2023; distil-whisper's "assistant" mode): the student's
decoder (loaded as ``WhisperForCausalLM``, reading the teacher's encoder output) proposes tokens
and the teacher verifies them in one forward, so the output is exactly the teacher's greedy
transcript, only faster when the student agrees often enough.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from speechdistill.audio import SAMPLE_RATE, AudioReader
from speechdistill.inference.whisper import DecodeConfig, WhisperTranscriber
from speechdistill.utils import PathLike, atomic_write_text
from speechdistill.whisper.language import check_model_language

log = logging.getLogger(__name__)


@dataclass
class SpeedReport:
    """What ``speed.json`` holds (seconds are wall time on ``device``)."""

    model: str
    data: str
    device: str
    threads: int
    params: dict[str, int]
    num_utts: int
    audio_seconds: float
    latency_b1: float  # mean seconds per utterance at batch 1
    latency_b1_median: float
    batch_size: int
    rtfx: float  # audio seconds per wall second at ``batch_size``
    speculative: dict[str, Any] = field(default_factory=dict)


def param_counts(model) -> dict[str, int]:
    """Total, encoder and decoder parameters (the tied output projection counted once)."""
    total = sum(p.numel() for p in model.parameters())
    enc = sum(p.numel() for p in model.model.encoder.parameters())
    return {"total": total, "encoder": enc, "decoder": total - enc}


@torch.inference_mode()
def _decode(transcriber: WhisperTranscriber, audios, **kwargs) -> tuple[list[list[int]], float]:
    """Token ids and the wall time of features + ``generate`` (``kwargs``: e.g. the assistant)."""
    t0 = time.perf_counter()
    ids = transcriber.generate(audios, **kwargs)
    elapsed = time.perf_counter() - t0
    return ids.tolist(), elapsed


def measure_speed(
    model_dir: PathLike,
    data_dir: PathLike,
    *,
    batch_size: int = 16,
    max_utts: int = 32,
    assistant: PathLike | None = None,
    device: str = "cpu",
    warmup: int = 1,
    language: str | None = None,
) -> SpeedReport:
    """Greedy decoding of the first ``max_utts`` utterances of ``data_dir`` (C order), at batch 1
    and at ``batch_size``; with ``assistant`` also speculative decoding at batch 1, checking that
    its transcripts equal the plain greedy ones; ``language``: forced for a multilingual model."""
    check_model_language(model_dir, language)
    # greedy, each utterance cut to the 30 s window
    config = DecodeConfig(device=device, language=language)
    transcriber = WhisperTranscriber.from_pretrained(model_dir, config, long_form=False)
    reader = AudioReader(data_dir)
    utts = reader.utt_ids[:max_utts]
    audios = [reader(u) for u in utts]
    audio_seconds = sum(len(a) for a in audios) / SAMPLE_RATE
    for a in audios[:warmup]:
        _decode(transcriber, [a])

    plain: list[list[int]] = []
    times: list[float] = []
    for a in audios:
        ids, t = _decode(transcriber, [a])
        plain.append(ids[0])
        times.append(t)
    wall = 0.0
    for i in range(0, len(audios), batch_size):
        wall += _decode(transcriber, audios[i : i + batch_size])[1]

    report = SpeedReport(
        model=str(model_dir),
        data=str(data_dir),
        device=device,
        threads=torch.get_num_threads(),
        params=param_counts(transcriber.model),
        num_utts=len(utts),
        audio_seconds=round(audio_seconds, 3),
        latency_b1=round(statistics.mean(times), 4),
        latency_b1_median=round(statistics.median(times), 4),
        batch_size=batch_size,
        rtfx=round(audio_seconds / wall, 3),
    )
    if assistant is not None:
        report.speculative = _speculative(transcriber, audios, plain, times, assistant)
    return report


def _speculative(transcriber, audios, plain, plain_times, assistant_dir) -> dict[str, Any]:
    from transformers import WhisperForCausalLM
    from transformers.utils import logging as hf_logging

    model = transcriber.model
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the student's encoder weights are (rightly) unused
    try:
        helper = WhisperForCausalLM.from_pretrained(
            str(assistant_dir), use_safetensors=True, dtype=model.dtype
        ).to(model.device)
    finally:
        hf_logging.set_verbosity(level)
    helper.eval()
    _decode(transcriber, audios[:1], assistant_model=helper)  # warm-up
    same, times = 0, []
    for a, ref in zip(audios, plain, strict=True):
        ids, t = _decode(transcriber, [a], assistant_model=helper)
        times.append(t)
        same += _strip(ids[0], model) == _strip(ref, model)
    return {
        "assistant": str(assistant_dir),
        "latency_b1": round(statistics.mean(times), 4),
        "speedup": round(sum(plain_times) / sum(times), 3),
        "identical": same,
        "num_utts": len(audios),
    }


def _strip(ids: list[int], model) -> list[int]:
    eos = model.generation_config.eos_token_id
    while ids and ids[-1] == eos:
        ids = ids[:-1]
    return ids


def save_report(report: SpeedReport, path: PathLike) -> None:
    atomic_write_text(path, json.dumps(asdict(report), indent=2) + "\n")


def format_speed_md(reports: list[tuple[str, dict[str, Any]]]) -> str:
    """A RESULTS.md section: size and speed of each model, side by side."""
    lines = [
        "## Size and speed",
        "",
        "|model|params|encoder|decoder|latency b1 (s/utt)|RTFx b{bs}|speculative speed-up|identical|",
        "|---|---|---|---|---|---|---|---|",
    ]
    bs = "?"
    for name, r in reports:
        bs = r["batch_size"]
        spec = r.get("speculative") or {}
        lines.append(
            f"|{name}|{r['params']['total'] / 1e6:.2f}M|{r['params']['encoder'] / 1e6:.2f}M|"
            f"{r['params']['decoder'] / 1e6:.2f}M|{r['latency_b1']:.3f}|{r['rtfx']:.2f}|"
            + (
                f"{spec['speedup']:.2f}×|{spec['identical']}/{spec['num_utts']}|"
                if spec
                else "-|-|"
            )
        )
    lines[2] = lines[2].format(bs=bs)
    if reports:
        r = reports[0][1]
        lines += ["", f"Greedy decoding of {r['num_utts']} utterances of `{r['data']}` on "
                  f"{r['device']} ({r['threads']} threads); speculative: the student's decoder "
                  "as the teacher's assistant (batch 1)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def load_reports(paths: list[PathLike]) -> list[tuple[str, dict[str, Any]]]:
    """``(model name, report)`` for each speed.json (the name is its parent directory)."""
    return [(Path(p).parent.name, json.loads(Path(p).read_text(encoding="utf-8"))) for p in paths]
