"""Length-sorted batching of a data dir's utterances, with audio read ahead in a thread, and the
padding of a batch of waveforms into tensors (for inference and training alike)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from speechdistill.audio import SAMPLE_RATE, AudioError, AudioReader

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def length_sorted_batches(
    durations: Mapping[str, float], batch_size: int, *, longest_first: bool = True
) -> list[list[str]]:
    """Group utterances of similar length: sort by duration (ties by id), cut into batches.

    Longest first, so that a batch too big for memory fails at once rather than at the end.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    order = sorted(durations, key=lambda u: (-durations[u] if longest_first else durations[u], u))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@dataclass
class AudioBatch:
    """Utterances of one batch that could be read, and those that could not."""

    utt_ids: list[str]
    audios: list[np.ndarray]
    bad: dict[str, str] = field(default_factory=dict)


def _read_batch(reader: AudioReader, utt_ids: Sequence[str], skip_bad: bool) -> AudioBatch:
    batch = AudioBatch([], [])
    for utt in utt_ids:
        try:
            audio = reader(utt)
        except AudioError as e:
            if not skip_bad:
                raise
            log.warning("skipping %s: %s", utt, e)
            batch.bad[utt] = str(e)
            continue
        batch.utt_ids.append(utt)
        batch.audios.append(audio)
    return batch


def iter_audio_batches(
    reader: AudioReader, batches: Sequence[Sequence[str]], *, skip_bad: bool = False
) -> Iterator[AudioBatch]:
    """Yield the audio of each batch, reading the next batch while the caller computes.

    Unreadable audio raises :class:`AudioError` naming the utterance, or with ``skip_bad`` is
    logged and reported in :attr:`AudioBatch.bad`.
    """
    if not batches:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(_read_batch, reader, batches[0], skip_bad)
        for nxt in batches[1:]:
            current = future.result()
            future = pool.submit(_read_batch, reader, nxt, skip_bad)
            yield current
        yield future.result()


def pad_waveforms(audios: Sequence[np.ndarray], feature_extractor) -> dict[str, torch.Tensor]:
    """``input_values`` (B, N) as the feature extractor prepares them (normalised per utterance
    when it normalises), ``attention_mask`` (B, N) and ``num_samples`` (B,)."""
    feats = feature_extractor(
        list(audios),
        sampling_rate=SAMPLE_RATE,
        return_tensors="pt",
        padding=True,
        return_attention_mask=True,
    )
    mask = feats.attention_mask.long()
    return {
        "input_values": feats.input_values.float(),
        "attention_mask": mask,
        "num_samples": mask.sum(-1),
    }
