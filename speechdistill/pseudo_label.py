"""Stage ``pseudo_label``: the teacher transcribes a data dir, with the statistics filtering needs.

Input: any data dir (``text`` optional). Output: a data dir with the input's files (restricted
to the labelled utterances), ``text.teacher`` (and ``text.teacher_ts`` with timestamp tokens
when asked), ``utt2teacher_tokens`` (the generated token ids, EOS included, so that training
and the RS-KD cache use exactly the teacher's tokens), one ``utt2<stat>`` file per statistic of :data:`speechdistill.label_stats.STATS`,
``utt2dur``, ``bad_utts`` (unreadable audio, skipped) and ``pseudo_label.json`` (counts, speed).

How it works, per batch of length-sorted utterances:

1. the encoder runs once (its states can be cached for training);
2. ``generate`` decodes (greedy or beam search) from those encoder states;
3. one teacher-forced decoder forward over prompt + hypothesis gives the raw logits of every
   generated token: the statistics, the no-speech probability (at the start-of-transcript
   position, as Whisper computes it) and the sparse RS-KD cache all come from it. This parallel
   forward costs a fraction of the sequential decode and, unlike ``generate``'s returned logits,
   is exact for beam search too and does not copy every sample's KV cache to the host (which
   transformers' Whisper ``generate`` does for ``return_dict_in_generate``).

Resumable: the batch plan is fixed by the data and the settings (``.pseudo_label/plan.json``);
each finished batch is appended to a per-shard JSON-lines file and fsynced, so after a kill a
rerun skips finished batches and, because every batch is recomputed with the same members, the
final output equals an uninterrupted run. Shards (``--num-jobs``/``--job`` for recipe jobs,
times the processes of ``accelerate launch``) take every S-th batch of the same plan, so the
result does not depend on how the work was split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from speechdistill.audio import SAMPLE_RATE, AudioError, AudioReader
from speechdistill.batching import length_sorted_batches
from speechdistill.cache import CACHE_DIR, CacheIndex, rskd_sample, save_shard, utt_generator
from speechdistill.datadir import write_kv
from speechdistill.datadir.fix import load_tables, restrict, write_tables
from speechdistill.label_stats import STATS, text_stats, token_stats
from speechdistill.teachers.identity import teacher_identity
from speechdistill.utils import PathLike, atomic_write_text
from speechdistill.whisper.tokens import (
    WINDOW_SECONDS,
    check_language,
    is_multilingual,
    language_token,
)

log = logging.getLogger(__name__)

WORK_DIR = ".pseudo_label"
#: Whisper's input window in seconds.


@dataclass
class PseudoLabelConfig:
    """Settings of the stage. All but ``device`` decide the output, and are checked on resume."""

    batch_size: int = 16
    num_beams: int = 1
    language: str | None = None
    task: str = "transcribe"
    return_timestamps: bool = False
    max_new_tokens: int | None = None
    dtype: str | None = None
    backend: str = "hf"
    #: Encoder input in seconds: 30 = Whisper's window (exact). Shorter windows (used only when
    #: every clip of the batch is at least 2 s shorter) are faster but change the labels.
    encoder_window: float = WINDOW_SECONDS
    cache_encoder: bool = False
    rskd_k: int = 0
    rskd_temperature: float = 1.0
    seed: int = 0
    device: str = "cpu"

    def identity(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("device")
        return d


@dataclass
class UttLabel:
    """The teacher's label of one utterance and what came with it."""

    utt: str
    text: str
    stats: dict[str, float]
    tokens: list[int] = field(default_factory=list)
    text_ts: str | None = None
    encoder: torch.Tensor | None = None
    rskd: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None


# --------------------------------------------------------------------------------------------
# the transformers backend


class HFLabeler:
    """Whisper in transformers: encoder once, ``generate``, one teacher-forced decoder pass."""

    def __init__(self, model, processor, config: PseudoLabelConfig):
        self.model = model.eval()
        self.processor = processor
        self.config = config
        gen = model.generation_config
        self.gen = gen
        self.multilingual = is_multilingual(gen)
        self.eos = gen.eos_token_id
        # Without timestamps, a timestamp token would be taken by ``generate`` for a segment
        # boundary (and fail with encoder states alone): Whisper never emits one after
        # <|notimestamps|>, a weak or fine-tuned teacher might, so they are suppressed.
        first_ts = gen.no_timestamps_token_id + 1
        self.suppress_timestamps = [
            *(gen.suppress_tokens or []),
            *range(first_ts, model.config.vocab_size),
        ]
        tok = processor.tokenizer
        nospeech = [t for t in ("<|nospeech|>", "<|nocaptions|>") if t in tok.get_vocab()]
        self.no_speech_id = (
            tok.convert_tokens_to_ids(nospeech[0]) if nospeech else gen.no_timestamps_token_id - 1
        )
        check_language(config.language, self.multilingual, "the teacher")

    @classmethod
    def from_pretrained(cls, teacher: PathLike, config: PseudoLabelConfig) -> HFLabeler:
        from speechdistill.teachers.whisper import load_teacher

        model, processor = load_teacher(str(teacher), device=config.device, dtype=config.dtype)
        return cls(model, processor, config)

    # encoder ------------------------------------------------------------------------------
    def encode(self, features: torch.Tensor, longest: float) -> torch.Tensor:
        enc = self.model.model.encoder
        window = self.config.encoder_window
        if window >= WINDOW_SECONDS or longest + 2.0 > window:
            return enc(features).last_hidden_state
        frames = int(window * 100)  # 10 ms log-mel frames; the convolutions halve them
        x = torch.nn.functional.gelu(enc.conv1(features[..., :frames]))
        x = torch.nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = x + enc.embed_positions.weight[: x.shape[1]]
        for layer in enc.layers:
            x = layer(x, None)
        return enc.layer_norm(x)

    # prompt -------------------------------------------------------------------------------
    def prompts(self, encoder_states: torch.Tensor) -> tuple[list[list[int]], list[str] | None]:
        """The decoder prompt of each utterance, and the language of each (multilingual)."""
        gen = self.gen
        head = [gen.decoder_start_token_id]
        tail = [] if self.config.return_timestamps else [gen.no_timestamps_token_id]
        n = encoder_states.shape[0]
        if not self.multilingual:
            return [head + tail] * n, None
        task = gen.task_to_id[self.config.task]
        if self.config.language is not None:
            lang = language_token(self.config.language, gen.lang_to_id)
            langs = [lang] * n
        else:
            from transformers.modeling_outputs import BaseModelOutput

            ids = self.model.detect_language(
                encoder_outputs=BaseModelOutput(last_hidden_state=encoder_states),
                generation_config=gen,
            )
            id_to_lang = {v: k for k, v in gen.lang_to_id.items()}
            langs = [id_to_lang[int(i)] for i in ids.view(-1)]
        return [[*head, gen.lang_to_id[lang], task, *tail] for lang in langs], langs

    # one batch ----------------------------------------------------------------------------
    @torch.inference_mode()
    def label(self, utt_ids: Sequence[str], audios: Sequence[np.ndarray]) -> list[UttLabel]:
        from transformers.modeling_outputs import BaseModelOutput

        cfg = self.config
        model = self.model
        durations = [len(a) / SAMPLE_RATE for a in audios]
        feats = self.processor.feature_extractor(
            list(audios), sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_features.to(model.device, model.dtype)
        states = self.encode(feats, max(durations))
        prompts, langs = self.prompts(states)
        kwargs: dict[str, Any] = {"num_beams": cfg.num_beams, "do_sample": False}
        kwargs["return_timestamps"] = cfg.return_timestamps
        if cfg.max_new_tokens is not None:
            kwargs["max_new_tokens"] = cfg.max_new_tokens
        if not cfg.return_timestamps:
            kwargs["suppress_tokens"] = self.suppress_timestamps
        if self.multilingual:
            kwargs["task"] = cfg.task
            kwargs["language"] = langs
        out = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=states), **kwargs)
        limit = cfg.max_new_tokens or (self.gen.max_length or 448) - len(prompts[0])
        hyps = [self._cut(row, limit) for row in out.tolist()]

        # Teacher-forced pass over prompt + hypothesis (right-padded; the decoder is causal).
        inputs = [p + h[:-1] if h else p for p, h in zip(prompts, hyps, strict=True)]
        width = max(len(x) for x in inputs)
        ids = torch.full((len(inputs), width), self.eos, dtype=torch.long)
        for i, x in enumerate(inputs):
            ids[i, : len(x)] = torch.tensor(x)
        hidden = model.model.decoder(
            input_ids=ids.to(model.device), encoder_hidden_states=states
        ).last_hidden_state

        labels = []
        for i, utt in enumerate(utt_ids):
            p, h = len(prompts[i]), hyps[i]
            rows = hidden[i, p - 1 : p - 1 + len(h)]
            logits = model.proj_out(torch.cat([hidden[i, :1], rows])).float()
            tokens = torch.tensor(h, dtype=torch.long, device=logits.device)
            stats = token_stats(logits[1:], tokens)
            stats["no_speech_prob"] = torch.softmax(logits[0], -1)[self.no_speech_id].item()
            text = " ".join(self.processor.decode(h, skip_special_tokens=True).split())
            stats.update(text_stats(text, durations[i]))
            label = UttLabel(utt, text, stats, tokens=h)
            if cfg.return_timestamps:
                label.text_ts = " ".join(
                    self.processor.decode(
                        h, skip_special_tokens=True, decode_with_timestamps=True
                    ).split()
                )
            if cfg.cache_encoder:
                label.encoder = states[i].to(torch.float16).cpu()
            if cfg.rskd_k:
                gen = utt_generator(cfg.seed, utt)
                label.rskd = rskd_sample(logits[1:].cpu(), cfg.rskd_k, cfg.rskd_temperature, gen)
            labels.append(label)
        return labels

    def _cut(self, row: list[int], limit: int) -> list[int]:
        """Generated tokens up to and including the first EOS.

        transformers drops the final EOS when every hypothesis of a batch ends at the same step;
        a hypothesis shorter than the length limit did end with EOS, so it is put back.
        """
        if self.eos in row:
            return row[: row.index(self.eos) + 1]
        return [*row, self.eos] if len(row) < limit else row


def make_labeler(teacher: PathLike, config: PseudoLabelConfig):
    """The labeler of ``config.backend`` (``hf`` or ``ct2``)."""
    if config.backend == "hf":
        return HFLabeler.from_pretrained(teacher, config)
    if config.backend == "ct2":
        from speechdistill.pseudo_label_ct2 import CT2Labeler

        return CT2Labeler.from_pretrained(teacher, config)
    raise ValueError(f"unknown backend {config.backend!r} (hf or ct2)")


# --------------------------------------------------------------------------------------------
# plan, shards, resume


@dataclass
class Plan:
    """The fixed batches of a run and what they were made from."""

    identity: dict[str, Any]
    batches: list[list[str]]
    durations: dict[str, float]
    unreadable: dict[str, str] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> Plan:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def make_plan(data: PathLike, teacher: PathLike, config: PseudoLabelConfig) -> Plan:
    """Read every duration (unreadable audio is recorded, not fatal) and cut length-sorted batches."""
    reader = AudioReader(data)
    durations: dict[str, float] = {}
    unreadable: dict[str, str] = {}
    for utt in reader.utt_ids:
        try:
            durations[utt] = round(reader.duration(utt), 4)
        except AudioError as e:
            unreadable[utt] = str(e)
    if unreadable:
        log.warning("%d utterances have unreadable audio and are skipped", len(unreadable))
    digest = hashlib.sha256(json.dumps(durations, sort_keys=True).encode()).hexdigest()
    identity = {
        "config": config.identity(),
        "teacher": teacher_identity(teacher),
        "utterances_sha256": digest,
    }
    batches = length_sorted_batches(durations, config.batch_size)
    return Plan(identity, batches, durations, unreadable)


def _load_or_write_plan(work: Path, plan: Plan) -> Plan:
    path = work / "plan.json"
    if path.is_file():
        old = Plan.load(path)
        if old.identity != plan.identity:
            raise ValueError(
                f"{work.parent} holds pseudo-labels made with other settings, teacher or data "
                f"({path}); remove {work.parent} or choose another --out"
            )
        return old
    work.mkdir(parents=True, exist_ok=True)
    plan.save(path)
    return plan


def _read_results(work: Path) -> dict[int, dict[str, Any]]:
    """Finished batches from every shard's JSON-lines file (a torn last line is ignored)."""
    done: dict[int, dict[str, Any]] = {}
    for path in sorted(work.glob("results.*.jsonl")):
        for line in path.read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s: ignoring a torn line (the run was killed while writing)", path)
                continue
            done[rec["batch"]] = rec
    return done


def _open_results(path: Path) -> IO[str]:
    """Open a results file for appending, dropping a torn last line left by a kill."""
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
    return open(path, "a", encoding="utf-8")


def _dist() -> tuple[int, int, Any]:
    """(rank, world size, accelerate state or None) of this process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())  # CPU: gloo process group
        return state.process_index, state.num_processes, state
    return 0, 1, None


def _fmt(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return "nan" if math.isnan(value) else f"{value:.6g}"


# --------------------------------------------------------------------------------------------
# the stage


@dataclass
class PseudoLabelSummary:
    """Counts and speed of a run (``pseudo_label.json``)."""

    num_utts: int
    num_unreadable: int
    audio_seconds: float
    wall_seconds: float
    num_shards: int
    config: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["utts_per_second"] = (
            round(self.num_utts / self.wall_seconds, 3) if self.wall_seconds else None
        )
        d["rtfx"] = round(self.audio_seconds / self.wall_seconds, 3) if self.wall_seconds else None
        return d


def pseudo_label(
    teacher: PathLike,
    data: PathLike,
    out: PathLike,
    config: PseudoLabelConfig | None = None,
    *,
    num_jobs: int = 1,
    job: int = 1,
    labeler: Any = None,
) -> PseudoLabelSummary | None:
    """Label this process's share of ``data`` into ``out``; finalise when the run is whole.

    With ``num_jobs > 1`` (recipe jobs on one output dir) call :func:`finalize` once every job
    has finished. Under ``accelerate launch`` each process takes a shard and the main process
    finalises after all are done. Returns the summary when this call finalised.
    """
    config = config or PseudoLabelConfig()
    if config.cache_encoder and config.encoder_window < WINDOW_SECONDS:
        raise ValueError("--cache-encoder needs the full 30 s encoder window (the student's)")
    if not 1 <= job <= num_jobs:
        raise ValueError(f"job {job} is not in 1..{num_jobs}")
    out = Path(out)
    work = out / WORK_DIR
    rank, world, state = _dist()
    if state is not None and state.device.type == "cuda":
        config.device = str(state.device)
    plan = make_plan(data, teacher, config)
    if rank == 0:
        plan = _load_or_write_plan(work, plan)
    if state is not None:
        state.wait_for_everyone()
        plan = _load_or_write_plan(work, plan)
    shards = num_jobs * world
    shard = (job - 1) * world + rank
    done = _read_results(work)
    mine = [i for i in range(len(plan.batches)) if i % shards == shard and i not in done]
    if done:
        log.info("resuming: %d of %d batches already done", len(done), len(plan.batches))

    if mine:
        labeler = labeler or make_labeler(teacher, config)
        _run_batches(labeler, data, out, plan, mine, shard, shards, config)
    if state is not None:
        state.wait_for_everyone()
    if num_jobs == 1 and rank == 0:
        return finalize(data, out)
    return None


def _run_batches(
    labeler, data: PathLike, out: Path, plan: Plan, batches: list[int], shard: int, shards: int,
    config: PseudoLabelConfig,
) -> None:  # fmt: skip
    reader = AudioReader(data)
    work = out / WORK_DIR
    results = _open_results(work / f"results.{shard:03d}-of-{shards:03d}.jsonl")
    total = sum(len(plan.batches[i]) for i in batches)
    bar = tqdm(total=total, desc=f"pseudo-label {Path(data).name}", unit="utt")
    try:
        for index in batches:
            ids, audios, bad = [], [], {}
            for utt in plan.batches[index]:
                try:
                    audios.append(reader(utt))
                    ids.append(utt)
                except AudioError as e:
                    log.warning("skipping %s: %s", utt, e)
                    bad[utt] = str(e)
            t0 = time.perf_counter()
            labels = labeler.label(ids, audios) if ids else []
            elapsed = time.perf_counter() - t0
            _write_caches(out, index, labels, config)
            record = {
                "batch": index,
                "seconds": round(elapsed, 4),
                "labels": [
                    {
                        "utt": lb.utt,
                        "text": lb.text,
                        "text_ts": lb.text_ts,
                        "stats": lb.stats,
                        "tokens": lb.tokens,
                    }
                    for lb in labels
                ],
                "bad": bad,
            }
            results.write(json.dumps(record, ensure_ascii=False) + "\n")
            results.flush()
            os.fsync(results.fileno())
            bar.update(len(plan.batches[index]))
    finally:
        bar.close()
        results.close()


def _write_caches(out: Path, index: int, labels: list[UttLabel], config: PseudoLabelConfig) -> None:
    meta = {"batch": str(index)}
    if config.cache_encoder and labels:
        tensors = {lb.utt: lb.encoder for lb in labels}
        save_shard(out / CACHE_DIR / "encoder" / f"{index:06d}.safetensors", tensors, meta)
    if config.rskd_k and labels:
        tensors = {}
        for lb in labels:
            ids, counts, offsets = lb.rskd
            tensors.update({f"{lb.utt}/ids": ids, f"{lb.utt}/counts": counts,
                            f"{lb.utt}/offsets": offsets})  # fmt: skip
        save_shard(out / CACHE_DIR / "rskd" / f"{index:06d}.safetensors", tensors, meta)


def finalize(data: PathLike, out: PathLike) -> PseudoLabelSummary:
    """Merge every shard's results into the output data dir (fails if a batch is missing)."""
    out = Path(out)
    work = out / WORK_DIR
    plan = Plan.load(work / "plan.json")
    done = _read_results(work)
    missing = [i for i in range(len(plan.batches)) if i not in done]
    if missing:
        raise RuntimeError(
            f"{len(missing)} of {len(plan.batches)} batches not labelled yet in {work} "
            f"(e.g. {missing[:5]}): rerun the jobs that did not finish"
        )
    labels: dict[str, dict[str, Any]] = {}
    bad = dict(plan.unreadable)
    wall = 0.0
    for rec in done.values():
        wall += rec["seconds"]
        bad.update(rec["bad"])
        for lb in rec["labels"]:
            labels[lb["utt"]] = lb
    if not labels:
        raise RuntimeError(f"no utterance of {data} could be labelled (see {out / 'bad_utts'})")

    tables, kinds = load_tables(data)
    outputs = ("text.teacher", "text.teacher_ts", "utt2teacher_tokens", "bad_utts")
    for name in (*outputs, *(f"utt2{s}" for s in STATS)):
        tables.pop(name, None)
    write_tables(out, restrict(tables, kinds, labels))
    write_kv(out / "text.teacher", {u: lb["text"] for u, lb in labels.items()})
    tokens = {u: " ".join(map(str, lb["tokens"])) for u, lb in labels.items() if lb["tokens"]}
    write_kv(out / "utt2teacher_tokens", tokens)
    if any(lb["text_ts"] is not None for lb in labels.values()):
        write_kv(out / "text.teacher_ts", {u: lb["text_ts"] or "" for u, lb in labels.items()})
    for stat in STATS:
        write_kv(out / f"utt2{stat}", {u: _fmt(lb["stats"][stat]) for u, lb in labels.items()})
    write_kv(out / "utt2dur", {u: _fmt(plan.durations[u]) for u in labels})
    if bad:
        write_kv(out / "bad_utts", {u: " ".join(r.split()) for u, r in bad.items()})
        log.warning(
            "%d utterances skipped (unreadable audio), listed in %s", len(bad), out / "bad_utts"
        )
    elif (out / "bad_utts").exists():
        (out / "bad_utts").unlink()
    _write_cache_index(out, plan, done)

    config = plan.identity["config"]
    shards = len(list(work.glob("results.*.jsonl")))
    summary = PseudoLabelSummary(
        num_utts=len(labels),
        num_unreadable=len(bad),
        audio_seconds=round(sum(plan.durations[u] for u in labels), 3),
        wall_seconds=round(wall, 3),
        num_shards=shards,
        config=config,
    )
    atomic_write_text(out / "pseudo_label.json", json.dumps(summary.to_json(), indent=2) + "\n")
    log.info(
        "pseudo-labelled %d utterances (%.2f h), %d skipped; %.2f utt/s of model time",
        summary.num_utts, summary.audio_seconds / 3600, summary.num_unreadable,
        summary.num_utts / max(wall, 1e-9),
    )  # fmt: skip
    return summary


def _write_cache_index(out: Path, plan: Plan, done: dict[int, dict[str, Any]]) -> None:
    config = plan.identity["config"]
    shards: dict[str, dict[str, str]] = {}
    for kind, enabled in (("encoder", config["cache_encoder"]), ("rskd", config["rskd_k"])):
        if not enabled:
            continue
        shards[kind] = {
            lb["utt"]: f"{kind}/{index:06d}.safetensors"
            for index, rec in done.items()
            for lb in rec["labels"]
        }
    if shards:
        settings = {k: config[k] for k in ("rskd_k", "rskd_temperature", "seed", "encoder_window")}
        settings["encoder_dtype"] = "float16"
        CacheIndex(plan.identity["teacher"], settings, shards).save(out / CACHE_DIR)
