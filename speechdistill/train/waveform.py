"""Waveform examples for the encoder students (DistilHuBERT distillation, CTC fine-tuning)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

from speechdistill.audio import AudioReader
from speechdistill.utils import PathLike

log = logging.getLogger(__name__)


class WaveformDataset(torch.utils.data.Dataset):
    """The utterances of a data dir as 16 kHz mono float32 waveforms (C-sorted ids).

    Utterances longer than ``max_duration`` seconds (0: no limit) or missing from ``labels``
    (when given) are skipped and counted in the log. Items: ``{"utt", "audio"[, "label"]}``.
    """

    def __init__(
        self,
        data_dir: PathLike,
        *,
        max_duration: float = 0.0,
        labels: dict[str, Any] | None = None,
        max_utts: int = 0,
    ):
        self.reader = AudioReader(data_dir)
        utts = list(self.reader.utt_ids)
        if labels is not None:
            unlabelled = [u for u in utts if u not in labels]
            if unlabelled:
                log.warning("%s: %d utterances without a label skipped", data_dir, len(unlabelled))
            utts = [u for u in utts if u in labels]
        if max_duration:
            long = [u for u in utts if self.reader.duration(u) > max_duration]
            if long:
                log.warning(
                    "%s: %d utterances longer than %.1f s skipped",
                    data_dir,
                    len(long),
                    max_duration,
                )
            utts = [u for u in utts if u not in set(long)]
        if max_utts:
            utts = utts[:max_utts]
        if not utts:
            raise ValueError(f"{data_dir}: no usable utterances")
        self.utts = utts
        self.labels = labels

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> dict[str, Any]:
        utt = self.utts[i]
        item: dict[str, Any] = {"utt": utt, "audio": self.reader(utt)}
        if self.labels is not None:
            item["label"] = self.labels[utt]
        return item

    def duration(self, utt: str) -> float:
        return self.reader.duration(utt)


def stack_targets(per_utt: list[list[torch.Tensor]], total: int) -> list[torch.Tensor]:
    """Cached per-utterance targets (per layer ``(T_u, D)``) as one ``(B, total, D)`` tensor per
    layer, zero beyond each utterance's frames."""
    stacked = []
    for layer in range(len(per_utt[0])):
        t = torch.zeros(len(per_utt), total, per_utt[0][layer].shape[-1])
        for b, states in enumerate(per_utt):
            t[b, : states[layer].shape[0]] = states[layer]
        stacked.append(t)
    return stacked


def length_batches(dataset: WaveformDataset, batch_size: int) -> list[list[int]]:
    """Indices of ``dataset`` in batches of similar duration (longest first; for inference)."""
    order = sorted(range(len(dataset)), key=lambda i: (-dataset.duration(dataset.utts[i]), i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def cache_targets(
    dataset: WaveformDataset,
    collator: Callable[[list[dict[str, Any]]], dict[str, Any]],
    batch_size: int,
    states: Callable[[dict[str, Any]], list[torch.Tensor]],
    desc: str = "teacher targets",
) -> dict[str, list[torch.Tensor]]:
    """A frozen teacher's targets for every utterance of ``dataset``: ``states(batch)`` (per layer
    ``(B, T, D)``, batches with ``frame_mask`` and ``utts``) cut to each utterance's own frames
    (CPU), computed in length-sorted batches."""
    out: dict[str, list[torch.Tensor]] = {}
    with torch.inference_mode():
        for idx in tqdm(length_batches(dataset, batch_size), desc=desc, unit="batch", leave=False):
            batch = collator([dataset[i] for i in idx])
            layers = states(batch)
            frames = batch["frame_mask"].sum(-1).tolist()
            for b, utt in enumerate(batch["utts"]):
                out[utt] = [h[b, : frames[b]].cpu().clone() for h in layers]
    return out
