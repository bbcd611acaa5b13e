"""The models behind the model-based scores: proxy ASR (Whisper, CTC, CTranslate2), the teacher on
perturbed audio, and a causal LM. Transcripts are cached in the score cache dir.

- Proxy and teacher are any model directory :func:`speechdistill.inference.load_transcriber`
  recognises (transformers or CTranslate2 Whisper, a CTC encoder), loaded once per context.
- Perturbations: ``noise:SNR`` adds white Gaussian noise at SNR dB (relative to the utterance's
  mean power; seeded per utterance, so batching does not change it); ``speed:F`` plays the audio F
  times faster (resampled with soxr, pitch changes as with Kaldi/sox speed perturbation).
- Caches: ``<cache>/text.<tag>`` plus ``text.<tag>.json`` (the model's identity and the options).
  A rerun with the same identity decodes only the utterances not in the cache (the cache is
  saved every :data:`SAVE_EVERY` batches, so an interrupted run resumes).
- Weights are loaded from safetensors only and remote code is never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speechdistill.audio import SAMPLE_RATE, AudioReader
from speechdistill.batching import iter_audio_batches, length_sorted_batches
from speechdistill.datadir import read_kv, write_kv
from speechdistill.inference import Transcriber, load_transcriber
from speechdistill.utils import PathLike, atomic_write_text

if TYPE_CHECKING:
    from speechdistill.filter.context import ScoreContext

log = logging.getLogger(__name__)

#: Batches between two writes of a transcript cache.
SAVE_EVERY = 50


# --------------------------------------------------------------------------------------------------
# perturbations


def parse_perturbation(spec: str) -> tuple[str, float]:
    """``"noise:20"`` → ("noise", 20.0); ``"speed:0.9"`` → ("speed", 0.9); errors explain."""
    kind, sep, value = spec.strip().partition(":")
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not sep or kind not in ("noise", "speed") or not math.isfinite(x):
        raise ValueError(f"bad perturbation {spec!r}: expected noise:SNR_DB or speed:FACTOR")
    if kind == "speed" and not 0.25 <= x <= 4:
        raise ValueError(f"bad perturbation {spec!r}: speed factor must be in [0.25, 4]")
    return kind, x


def perturb(audio: np.ndarray, spec: str, *, utt: str, seed: int = 0) -> np.ndarray:
    """The audio perturbed as ``spec`` says (see :func:`parse_perturbation`); deterministic."""
    kind, x = parse_perturbation(spec)
    audio = np.asarray(audio, dtype=np.float32)
    if kind == "speed":
        if x == 1.0:
            return audio
        import soxr

        return soxr.resample(audio, SAMPLE_RATE * x, SAMPLE_RATE, quality="HQ").astype(np.float32)
    power = float(np.mean(np.square(audio, dtype=np.float64)))
    if power == 0.0:
        return audio
    rng = np.random.default_rng([seed, zlib.crc32(utt.encode("utf-8"))])
    noise = rng.standard_normal(len(audio)) * math.sqrt(power / 10 ** (x / 10))
    return (audio + noise).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# transcribers


def shared_transcriber(model_dir: PathLike, ctx: ScoreContext, language: str | None) -> Transcriber:
    """The transcriber of a model directory with ``ctx``'s options, loaded once per ``ctx``."""
    key = f"transcriber:{Path(model_dir).resolve()}:{language}"
    if key not in ctx.memo:
        opts = ctx.options
        ctx.memo[key] = load_transcriber(
            model_dir,
            device=opts.device,
            dtype=opts.dtype,
            language=language,
            max_new_tokens=opts.max_new_tokens,
        )
    return ctx.memo[key]


# --------------------------------------------------------------------------------------------------
# cached transcription of a data dir


def model_identity(model_dir: PathLike) -> dict[str, Any]:
    """What identifies a model directory for the caches: its path and its files' sizes/mtimes."""
    path = Path(model_dir).resolve()
    files = {
        p.name: [p.stat().st_size, p.stat().st_mtime_ns]
        for p in sorted(path.iterdir())
        if p.is_file()
    }
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    return {"path": str(path), "files": digest}


def cached_transcripts(
    ctx: ScoreContext,
    tag: str,
    identity: dict[str, Any],
    make: Callable[[], Transcriber],
    *,
    audio_fn: Callable[[np.ndarray, str], np.ndarray] | None = None,
) -> dict[str, str]:
    """Transcripts of every utterance of ``ctx`` by ``make()``'s transcriber, cached under ``tag``.

    Unreadable audio is skipped (logged, counted): those utterances get no transcript.
    """
    cache = ctx.cache_dir
    text_path = meta_path = None
    done: dict[str, str] = {}
    if cache is not None:
        text_path, meta_path = cache / f"text.{tag}", cache / f"text.{tag}.json"
        if text_path.is_file() and meta_path.is_file():
            if json.loads(meta_path.read_text(encoding="utf-8")) == identity:
                done = read_kv(text_path)
            else:
                log.info("%s: cached for another model or options: decoding again", text_path)
    todo = [u for u in ctx.utts if u not in done]
    if not todo:
        log.info("%s: all %d transcripts cached", text_path, len(done))
        return {u: done[u] for u in ctx.utts}
    reader = AudioReader(ctx.data)
    durations = ctx.durations()
    batches = length_sorted_batches(
        {u: durations.get(u, 0.0) for u in todo}, ctx.options.batch_size
    )
    transcriber = make()
    from tqdm.auto import tqdm

    def save() -> None:
        if text_path is not None and meta_path is not None:
            write_kv(text_path, done)
            atomic_write_text(meta_path, json.dumps(identity, indent=1, sort_keys=True) + "\n")

    bad = 0
    bar = tqdm(total=len(todo), desc=f"transcribe ({tag})", unit="utt")
    for i, batch in enumerate(iter_audio_batches(reader, batches, skip_bad=True), 1):
        if i % SAVE_EVERY == 0:
            save()  # a killed run resumes from here
        bad += len(batch.bad)
        bar.update(len(batch.bad))
        if not batch.audios:
            continue
        audios = batch.audios
        if audio_fn is not None:
            audios = [audio_fn(a, u) for a, u in zip(audios, batch.utt_ids, strict=True)]
        for utt, text in zip(batch.utt_ids, transcriber.transcribe(audios), strict=True):
            done[utt] = text
        bar.update(len(batch.utt_ids))
    bar.close()
    if bad:
        log.warning("%s: skipped %d utterances with unreadable audio (no transcript)", tag, bad)
    save()
    return {u: done[u] for u in ctx.utts if u in done}


def proxy_transcripts(ctx: ScoreContext) -> dict[str, str]:
    """The proxy model's transcript of every utterance (cached as ``text.proxy``)."""
    opts = ctx.options
    assert opts.proxy is not None
    language = opts.proxy_language or opts.language
    identity = {
        **model_identity(opts.proxy),
        "language": language,
        "max_new_tokens": opts.max_new_tokens,
    }
    return cached_transcripts(
        ctx, "proxy", identity, lambda: shared_transcriber(opts.proxy, ctx, language)
    )


def perturbed_transcripts(ctx: ScoreContext, spec: str) -> dict[str, str]:
    """The teacher's transcript of perturbed audio (cached as ``text.self_<kind><value>``)."""
    opts = ctx.options
    assert opts.teacher is not None
    kind, value = parse_perturbation(spec)
    identity = {
        **model_identity(opts.teacher),
        "perturbation": [kind, value],
        "seed": opts.seed,
        "language": opts.language,
        "max_new_tokens": opts.max_new_tokens,
    }
    tag = f"self_{kind}{value:g}"
    return cached_transcripts(
        ctx,
        tag,
        identity,
        lambda: shared_transcriber(opts.teacher, ctx, opts.language),
        audio_fn=lambda a, u: perturb(a, spec, utt=u, seed=opts.seed),
    )


# --------------------------------------------------------------------------------------------------
# language model


def lm_nll(ctx: ScoreContext) -> dict[str, float]:
    """Mean per-token NLL (nats) of each label under the causal LM ``ctx.options.lm``.

    The label is tokenised as written (no special tokens); the tokenizer's BOS token, when it has
    one, is prepended so that the first token is scored too. NaN for a label with nothing to score
    (empty, or a single token without BOS).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    opts = ctx.options
    assert opts.lm is not None
    tok = AutoTokenizer.from_pretrained(opts.lm, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(
        opts.lm, use_safetensors=True, trust_remote_code=False
    )
    model.to(opts.device).eval()
    bos = tok.bos_token_id
    seqs: dict[str, list[int]] = {}
    for u in ctx.utts:
        text = " ".join(ctx.labels.get(u, "").split())
        ids = tok(text, add_special_tokens=False)["input_ids"] if text else []
        seqs[u] = ([bos] if bos is not None else []) + list(ids)
    out = {u: math.nan for u in ctx.utts}
    scorable = [u for u in ctx.utts if len(seqs[u]) >= 2]
    order = sorted(scorable, key=lambda u: (-len(seqs[u]), u))
    max_len = getattr(model.config, "max_position_embeddings", None) or getattr(
        model.config, "n_positions", None
    )
    from tqdm.auto import tqdm

    for i in tqdm(range(0, len(order), opts.batch_size), desc="lm_nll", unit="batch"):
        batch = order[i : i + opts.batch_size]
        rows = [seqs[u][:max_len] if max_len else seqs[u] for u in batch]
        width = max(len(r) for r in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = torch.tensor(r)
            mask[j, : len(r)] = 1
        ids, mask = ids.to(opts.device), mask.to(opts.device)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = ids[:, 1:]
        nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        valid = mask[:, 1:].bool()
        per = (nll * valid).sum(-1) / valid.sum(-1)
        for u, v in zip(batch, per.tolist(), strict=True):
            out[u] = float(v)
    return out
