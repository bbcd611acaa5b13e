"""Stage 8, decode: transcribe a data dir with a Whisper model (``speechdistill decode``: batched
greedy or beam search) or a CTC model (``speechdistill ctc-decode``: greedy), length-sorted.

Writes ``text`` (Kaldi format), ``utt2decode_time`` (seconds of wall time attributed to each
utterance: its batch's time split evenly), ``decode.json`` (speed summary: RTFx, utterances/s)
and ``bad_utts`` when ``skip_bad`` dropped unreadable audio. The transcribers are
:mod:`speechdistill.inference`'s; ``merge_decode_dirs`` joins the outputs of parallel jobs.

``decode_long_form`` (``speechdistill decode --long-form``) transcribes *recordings* instead:
every entry of ``wav.scp``, whole, whatever its length (``segments`` only define the
reference, see :mod:`speechdistill.datadir.reco`), with transformers' sequential long-form
generation. It writes ``text`` and ``reco2decode_time`` keyed by recording, ``segments_hyp``
(``<reco>-<nnnn> <reco> <start> <end> <text>``), ``ctm`` (Kaldi/sclite CTM of the word
timestamps, ``<reco> 1 <start> <dur> <word>``, sorted by recording and time), ``decode.json``
and ``bad_utts`` (unreadable recordings, with ``skip_bad``). Finished batches are kept in
``.decode_long/`` so that a killed run resumes with the same settings.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from speechdistill.audio import AudioError, AudioReader, audio_duration, read_audio
from speechdistill.batching import iter_audio_batches, length_sorted_batches
from speechdistill.datadir import check_stage_input, read_kv, write_kv
from speechdistill.datadir.ops import merge_split
from speechdistill.inference import Transcriber
from speechdistill.inference.ctc import CTCTranscriber
from speechdistill.inference.long_form import LongFormConfig, LongFormResult, LongFormTranscriber
from speechdistill.inference.whisper import DecodeConfig, WhisperTranscriber
from speechdistill.utils import PathLike, atomic_open, atomic_write_text, locks_run
from speechdistill.whisper.language import check_model_language

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
    if transcriber is None:
        check_model_language(model_dir, config.language)  # before the output dir is made
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
    check_out_dir(out_dir)
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
    _write_bad(out_dir, bad, "utterances")
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


def _write_bad(out_dir: Path, bad: dict[str, str], unit: str) -> None:
    """``out_dir/bad_utts`` (id → reason) of the skipped inputs, with a warning; none: nothing."""
    if bad:
        write_kv(out_dir / "bad_utts", bad)
        log.warning("skipped %d unreadable %s (listed in %s)", len(bad), unit, out_dir / "bad_utts")


def check_out_dir(out_dir: Path) -> None:
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
    check_out_dir(out_dir)
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


# long-form ------------------------------------------------------------------------------------

#: Where a long-form run keeps its finished batches (removed when the run completes).
PROGRESS_DIR = ".decode_long"


def _recording_durations(
    wav_scp: dict[str, str], bad: dict[str, str], *, skip_bad: bool
) -> dict[str, float]:
    """Duration of every readable recording (headers; pipes are run); unreadable ones go to
    ``bad`` with ``skip_bad``, else raise naming the recording."""
    out: dict[str, float] = {}
    for reco, source in wav_scp.items():
        try:
            out[reco] = audio_duration(source, utt_id=reco)
        except AudioError as e:
            if not skip_bad:
                raise
            log.warning("skipping recording %s: %s", reco, e)
            bad[reco] = str(e)
    return out


def _read_progress(path: Path, header: dict) -> dict[str, dict]:
    """Results of a previous run's finished batches, when it had the same ``header`` (a torn
    last line, from a kill, is dropped)."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        same = bool(lines) and json.loads(lines[0]) == header
    except json.JSONDecodeError:
        same = False
    if not same:
        log.info("%s: from a run with other settings or data: decoding from the start", path)
        return {}
    done = {}
    for line in lines[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break
        done[rec["reco"]] = rec
    return done


def _result_record(reco: str, result: LongFormResult, seconds: float) -> dict:
    return {
        "reco": reco,
        "text": result.text,
        "seconds": round(seconds, 4),
        "segments": [
            {
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "words": [[w.start, w.end, w.text] for w in s.words],
            }
            for s in result.segments
        ],
    }


def _write_long_form_outputs(out_dir: Path, records: dict[str, dict]) -> None:
    write_kv(out_dir / "text", {r: rec["text"] for r, rec in records.items()})
    write_kv(
        out_dir / "reco2decode_time", {r: f"{rec['seconds']:.4f}" for r, rec in records.items()}
    )
    segs: dict[str, str] = {}
    ctm: list[tuple[str, float, float, str]] = []
    for reco, rec in records.items():
        for i, s in enumerate(rec["segments"], 1):
            segs[f"{reco}-{i:04d}"] = f"{reco} {s['start']:.2f} {s['end']:.2f} {s['text']}"
            ctm += [(reco, start, end, word) for start, end, word in s["words"]]
    write_kv(out_dir / "segments_hyp", segs)
    ctm.sort(key=lambda w: (w[0].encode(), w[1], w[2]))  # C order of ids, then time
    with atomic_open(out_dir / "ctm") as f:
        for reco, start, end, word in ctm:
            f.write(f"{reco} 1 {start:.2f} {max(end - start, 0.0):.2f} {word}\n")


def decode_long_form(
    model_dir: PathLike,
    data_dir: PathLike,
    out_dir: PathLike,
    config: DecodeConfig | None = None,
    long_form: LongFormConfig | None = None,
    *,
    transcriber: WhisperTranscriber | None = None,
) -> DecodeSummary:
    """Long-form Whisper decoding of the recordings of ``data_dir`` (see the module docstring):
    ``config.batch_size`` recordings per ``generate`` call, longest first."""
    config = config or DecodeConfig()
    if transcriber is None:
        check_model_language(model_dir, config.language)  # before the output dir is made
    return _decode_long_form(model_dir, data_dir, out_dir, config, long_form, transcriber)


@locks_run("out_dir")
def _decode_long_form(
    model_dir: PathLike,
    data_dir: PathLike,
    out_dir: PathLike,
    config: DecodeConfig,
    long_form: LongFormConfig | None,
    transcriber: WhisperTranscriber | None,
) -> DecodeSummary:
    long_form = long_form or LongFormConfig()
    out_dir = Path(out_dir)
    check_stage_input(data_dir, "decode --long-form")
    check_out_dir(out_dir)
    wav_scp = read_kv(Path(data_dir) / "wav.scp")
    bad: dict[str, str] = {}
    durations = _recording_durations(wav_scp, bad, skip_bad=config.skip_bad)
    settings = {**asdict(config), "long_form": long_form.to_json()}
    del settings["skip_bad"], settings["device"]
    header = {"model": str(model_dir), "data": str(Path(data_dir).resolve()), "settings": settings}
    weights = Path(model_dir) / "model.safetensors"
    if weights.is_file():  # a model retrained in place is another model
        header["weights"] = [weights.stat().st_size, weights.stat().st_mtime_ns]
    header["durations"] = {r: round(d, 3) for r, d in sorted(durations.items())}
    progress = out_dir / PROGRESS_DIR / "done.jsonl"
    records = _read_progress(progress, header)
    if records:
        log.info("resuming: %d of %d recordings already decoded", len(records), len(durations))
    todo = {r: d for r, d in durations.items() if r not in records}
    lf = LongFormTranscriber(
        transcriber or WhisperTranscriber.from_pretrained(model_dir, config), long_form
    )

    progress.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(header)] + [json.dumps(rec) for rec in records.values()]
    atomic_write_text(progress, "\n".join(lines) + "\n")
    bar = tqdm(total=len(durations), initial=len(records), desc="decode --long-form", unit="reco")
    with open(progress, "a", encoding="utf-8") as log_file:
        for batch in length_sorted_batches(todo, config.batch_size):
            ids, audios = [], []
            for reco in batch:
                try:
                    audios.append(read_audio(wav_scp[reco], utt_id=reco))
                    ids.append(reco)
                except AudioError as e:
                    if not config.skip_bad:
                        raise
                    log.warning("skipping recording %s: %s", reco, e)
                    bad[reco] = str(e)
            bar.update(len(batch) - len(ids))
            if not ids:
                continue
            t0 = time.perf_counter()
            results = lf.transcribe_long(audios)
            share = (time.perf_counter() - t0) / len(ids)
            for reco, result in zip(ids, results, strict=True):
                records[reco] = _result_record(reco, result, share)
                log_file.write(json.dumps(records[reco]) + "\n")
            log_file.flush()
            os.fsync(log_file.fileno())
            bar.update(len(ids))
    bar.close()

    _write_long_form_outputs(out_dir, records)
    _write_bad(out_dir, bad, "recordings")
    summary = DecodeSummary(
        model=str(model_dir),
        data=str(data_dir),
        num_utts=len(records),
        num_skipped=len(bad),
        audio_seconds=round(sum(durations[r] for r in records), 3),
        wall_seconds=round(sum(rec["seconds"] for rec in records.values()), 3),
        config={**asdict(config), "long_form": long_form.to_json(), "unit": "recording"},
    )
    atomic_write_text(out_dir / "decode.json", json.dumps(summary.to_json(), indent=2) + "\n")
    shutil.rmtree(out_dir / PROGRESS_DIR)
    log.info(
        "decoded %d recordings long-form (%.1f s of audio) in %.1f s: RTFx %.2f",
        summary.num_utts,
        summary.audio_seconds,
        summary.wall_seconds,
        summary.rtfx,
    )
    return summary
