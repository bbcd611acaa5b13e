"""Stage 8, decode: transcribe a data dir with a Whisper model (``speechdistill decode``: batched
greedy or beam search) or a CTC model (``speechdistill ctc-decode``: greedy), length-sorted.

Writes ``text`` (Kaldi format), ``utt2decode_time`` (seconds of wall time attributed to each
utterance: its batch's time split evenly), ``decode.json`` (speed summary: RTFx, utterances/s)
and ``bad_utts`` when ``skip_bad`` dropped unreadable audio. The transcribers are
:mod:`speechdistill.inference`'s; ``merge_decode_dirs`` joins the outputs of parallel jobs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from speechdistill.audio import AudioError, AudioReader
from speechdistill.batching import iter_audio_batches, length_sorted_batches
from speechdistill.datadir import check_stage_input, read_kv, write_kv
from speechdistill.datadir.ops import merge_split
from speechdistill.inference import Transcriber
from speechdistill.inference.ctc import CTCTranscriber
from speechdistill.inference.whisper import DecodeConfig, WhisperTranscriber
from speechdistill.utils import PathLike, atomic_write_text, locks_run

log = logging.getLogger(__name__)


@dataclass
class CTCDecodeConfig:
    """Options of ``speechdistill ctc-decode``."""

    batch_size: int = 16
    device: str = "cpu"
    skip_bad: bool = False


@dataclass
class DecodeSummary:
    """What a decode run did and how fast (written as ``decode.json``)."""

    model: str
    data: str
    num_utts: int
    num_skipped: int
    audio_seconds: float
    wall_seconds: float
    config: dict = field(default_factory=dict)

    @property
    def rtfx(self) -> float:
        """Inverse real-time factor: seconds of audio decoded per second of wall time."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else float("inf")

    def to_json(self) -> dict:
        d = asdict(self)
        d["rtfx"] = round(self.rtfx, 3)
        d["utts_per_second"] = (
            round(self.num_utts / self.wall_seconds, 3) if self.wall_seconds else None
        )
        return d


def _durations(reader: AudioReader, bad: dict[str, str], *, skip_bad: bool) -> dict[str, float]:
    """Duration of every readable utterance; unreadable ones go to ``bad`` (with ``skip_bad``)."""
    durations: dict[str, float] = {}
    for utt in reader.utt_ids:
        try:
            durations[utt] = reader.duration(utt)
        except AudioError as e:
            if not skip_bad:
                raise
            log.warning("skipping %s: %s", utt, e)
            bad[utt] = str(e)
    return durations


def decode_data_dir(
    model_dir: PathLike,
    data_dir: PathLike,
    out_dir: PathLike,
    config: DecodeConfig | None = None,
    *,
    transcriber: WhisperTranscriber | None = None,
) -> DecodeSummary:
    """Whisper decoding of ``data_dir`` into ``out_dir/text`` (see the module docstring)."""
    config = config or DecodeConfig()
    return transcribe_data_dir(
        lambda: transcriber or WhisperTranscriber.from_pretrained(model_dir, config),
        model_dir,
        data_dir,
        out_dir,
        batch_size=config.batch_size,
        skip_bad=config.skip_bad,
        config=asdict(config),
    )


def decode_ctc_data_dir(
    model_dir: PathLike,
    data_dir: PathLike,
    out_dir: PathLike,
    config: CTCDecodeConfig | None = None,
    *,
    transcriber: CTCTranscriber | None = None,
) -> DecodeSummary:
    """Greedy CTC decoding of ``data_dir`` into ``out_dir/text`` (see the module docstring)."""
    config = config or CTCDecodeConfig()
    return transcribe_data_dir(
        lambda: transcriber or CTCTranscriber.from_pretrained(model_dir, device=config.device),
        model_dir,
        data_dir,
        out_dir,
        batch_size=config.batch_size,
        skip_bad=config.skip_bad,
        config={**asdict(config), "decoding": "ctc_greedy"},
        desc="ctc-decode",
    )


@locks_run("out_dir")
def transcribe_data_dir(
    load: Callable[[], Transcriber],
    model_dir: PathLike,
    data_dir: PathLike,
    out_dir: PathLike,
    *,
    batch_size: int,
    skip_bad: bool,
    config: dict[str, Any],
    desc: str = "decode",
) -> DecodeSummary:
    """The decoding loop of every model type: ``load()`` gives the transcriber; utterances go in
    length-sorted batches and the outputs of the module docstring are written to ``out_dir``."""
    out_dir = Path(out_dir)
    check_stage_input(data_dir, desc)
    _check_out_dir(out_dir)
    reader = AudioReader(data_dir)
    bad: dict[str, str] = {}
    durations = _durations(reader, bad, skip_bad=skip_bad)
    batches = length_sorted_batches(durations, batch_size)
    transcriber = load()

    hyps: dict[str, str] = {}
    times: dict[str, float] = {}
    wall = 0.0
    bar = tqdm(total=len(durations), desc=f"{desc} {Path(data_dir).name}", unit="utt")
    for batch in iter_audio_batches(reader, batches, skip_bad=skip_bad):
        bad.update(batch.bad)
        bar.update(len(batch.bad))
        if not batch.audios:
            continue
        t0 = time.perf_counter()
        texts = transcriber.transcribe(batch.audios)
        elapsed = time.perf_counter() - t0
        wall += elapsed
        for utt, text in zip(batch.utt_ids, texts, strict=True):
            hyps[utt] = text
            times[utt] = elapsed / len(batch.utt_ids)
        bar.update(len(batch.utt_ids))
    bar.close()

    write_kv(out_dir / "text", hyps)
    write_kv(out_dir / "utt2decode_time", {u: f"{t:.4f}" for u, t in times.items()})
    if bad:
        write_kv(out_dir / "bad_utts", bad)
        log.warning(
            "skipped %d unreadable utterances (listed in %s)", len(bad), out_dir / "bad_utts"
        )
    summary = DecodeSummary(
        model=str(model_dir),
        data=str(data_dir),
        num_utts=len(hyps),
        num_skipped=len(bad),
        audio_seconds=round(sum(durations[u] for u in hyps), 3),
        wall_seconds=round(wall, 3),
        config=config,
    )
    atomic_write_text(out_dir / "decode.json", json.dumps(summary.to_json(), indent=2) + "\n")
    log.info(
        "decoded %d utterances (%.1f s of audio) in %.1f s: RTFx %.2f",
        summary.num_utts,
        summary.audio_seconds,
        summary.wall_seconds,
        summary.rtfx,
    )
    return summary


def _check_out_dir(out_dir: Path) -> None:
    """Refuse an output dir that is a data dir: its ``text`` (the references) would be replaced."""
    if (out_dir / "wav.scp").exists():
        raise ValueError(
            f"{out_dir}: holds wav.scp, a data dir whose text the hypotheses would replace; "
            "choose another --out"
        )


@locks_run("out_dir")
def merge_decode_dirs(out_dir: PathLike, parts: list[PathLike]) -> DecodeSummary:
    """Merge the outputs of decode jobs (``--nj``) into ``out_dir``.

    ``text`` and ``utt2decode_time`` are merged in C order (a key in two parts is an error);
    the speed summary adds the parts' audio and wall seconds, so its RTFx is per process.
    """
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    parts = [Path(p) for p in parts]
    merge_split([p / "text" for p in parts], out_dir / "text")
    merge_split([p / "utt2decode_time" for p in parts], out_dir / "utt2decode_time")
    bad = {
        k: v
        for p in parts
        if (p / "bad_utts").is_file()
        for k, v in read_kv(p / "bad_utts").items()
    }
    if bad:
        write_kv(out_dir / "bad_utts", bad)
    infos = [json.loads((p / "decode.json").read_text(encoding="utf-8")) for p in parts]
    summary = DecodeSummary(
        model=infos[0]["model"],
        data=",".join(i["data"] for i in infos),
        num_utts=sum(i["num_utts"] for i in infos),
        num_skipped=sum(i["num_skipped"] for i in infos),
        audio_seconds=round(sum(i["audio_seconds"] for i in infos), 3),
        wall_seconds=round(sum(i["wall_seconds"] for i in infos), 3),
        config={**infos[0]["config"], "nj": len(parts)},
    )
    atomic_write_text(out_dir / "decode.json", json.dumps(summary.to_json(), indent=2) + "\n")
    return summary
