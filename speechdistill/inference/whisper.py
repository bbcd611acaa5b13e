"""Whisper (transformers) transcription: log-mel features in the 30 s window or long-form,
``generate`` with greedy or beam search, and Whisper's temperature fallback."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from speechdistill.utils import PathLike
from speechdistill.whisper.language import resolve_language
from speechdistill.whisper.tokens import (
    SAMPLE_RATE,
    WINDOW_SECONDS,
    is_multilingual,
)

__all__ = ["FALLBACK", "FALLBACK_SEED", "DecodeConfig", "WhisperTranscriber", "whisper_features"]


@dataclass
class DecodeConfig:
    """Decoding options (the flags of ``speechdistill decode``; ``batch_size`` and ``skip_bad``
    are read by the loop over a data dir)."""

    batch_size: int = 16
    num_beams: int = 1
    language: str | None = None
    task: str = "transcribe"
    max_new_tokens: int | None = None
    return_timestamps: bool = False
    device: str = "cpu"
    dtype: str | None = None
    skip_bad: bool = False
    #: Whisper's temperature fallback: an output whose token compression ratio exceeds 1.35 (a
    #: repetition loop) or whose mean log-probability is below -1 is decoded again at
    #: temperature 0.2, 0.4, … 1.0 (sampling, seeded per batch).
    temperature_fallback: bool = False


#: Whisper's fallback schedule and thresholds (the paper's; the ratio is transformers' token one)
FALLBACK = {
    "temperature": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    "compression_ratio_threshold": 1.35,
    "logprob_threshold": -1.0,
}
#: The seed set before each batch decoded with the fallback (the same batch, the same output).
FALLBACK_SEED = 0


def whisper_features(
    feature_extractor, audios: Sequence[np.ndarray], *, long_form: bool = True
) -> dict[str, torch.Tensor]:
    """Log-mel ``input_features``, padded (or cut) to Whisper's 30 s window; with ``long_form``
    and an utterance longer than the window, padded to the longest instead, with the
    ``attention_mask`` that marks long-form input."""
    longest = max(len(a) for a in audios) / SAMPLE_RATE
    if not long_form or longest <= WINDOW_SECONDS:
        feats = feature_extractor(audios, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        return {"input_features": feats.input_features}
    feats = feature_extractor(
        audios,
        sampling_rate=SAMPLE_RATE,
        return_tensors="pt",
        truncation=False,
        padding="longest",
        return_attention_mask=True,
    )
    return {"input_features": feats.input_features, "attention_mask": feats.attention_mask}


class WhisperTranscriber:
    """A Whisper model and processor that turn 16 kHz waveforms into token ids and text.

    With ``long_form=False`` an utterance longer than 30 s is cut to the window (as the dev
    evaluation in training and ``speed`` do) instead of being decoded long-form.
    """

    def __init__(self, model, processor, config: DecodeConfig, *, long_form: bool = True):
        self.model = model.eval()
        self.processor = processor
        self.config = config
        self.long_form = long_form
        self.multilingual = is_multilingual(model.generation_config)
        lang_to_id = model.generation_config.lang_to_id if self.multilingual else None
        #: the forced language token (``<|pt|>``); None: detected, or an English-only model
        self.language = resolve_language(config.language, lang_to_id)

    @classmethod
    def from_pretrained(
        cls, model_dir: PathLike, config: DecodeConfig, *, long_form: bool = True
    ) -> WhisperTranscriber:
        """Load the model (:func:`~speechdistill.teachers.whisper.load_teacher`) on
        ``config.device`` in ``config.dtype``."""
        from speechdistill.teachers.whisper import load_teacher

        model, processor = load_teacher(str(model_dir), device=config.device, dtype=config.dtype)
        return cls(model, processor, config, long_form=long_form)

    def features(self, audios: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """:func:`whisper_features` on the model's device, in its dtype."""
        feats = whisper_features(self.processor.feature_extractor, audios, long_form=self.long_form)
        out = {"input_features": feats["input_features"].to(self.model.device, self.model.dtype)}
        if "attention_mask" in feats:
            out["attention_mask"] = feats["attention_mask"].to(self.model.device)
        return out

    def generate_kwargs(self, long_form: bool) -> dict:
        """``generate``'s options for the config (timestamps are required long-form)."""
        cfg = self.config
        kwargs: dict = {"num_beams": cfg.num_beams, "do_sample": False}
        if cfg.max_new_tokens is not None:
            kwargs["max_new_tokens"] = cfg.max_new_tokens
        if self.multilingual:
            kwargs["task"] = cfg.task
            if self.language is not None:
                kwargs["language"] = self.language
        kwargs["return_timestamps"] = cfg.return_timestamps or long_form
        if cfg.temperature_fallback:
            del kwargs["do_sample"]  # generate samples at each temperature above 0
            kwargs.update(FALLBACK)
        return kwargs

    @torch.inference_mode()
    def generate(self, audios: Sequence[np.ndarray], **extra) -> torch.Tensor:
        """Token ids (prompt removed) for a batch of waveforms; ``extra`` goes to ``generate``
        (e.g. ``assistant_model``)."""
        inputs = self.features(audios)
        return self._generate(inputs, long_form="attention_mask" in inputs, **extra)

    @torch.inference_mode()
    def generate_from_states(self, states: torch.Tensor) -> torch.Tensor:
        """Token ids for a batch of encoder outputs ``(B, frames, d)`` (a frozen encoder's,
        computed once); not with the temperature fallback, which needs the features."""
        from transformers.modeling_outputs import BaseModelOutput

        if self.config.temperature_fallback:
            raise ValueError("the temperature fallback decodes from features, not encoder states")
        inputs = {"encoder_outputs": BaseModelOutput(last_hidden_state=states)}
        return self._generate(inputs, long_form=False)

    def _generate(self, inputs: dict, *, long_form: bool, **extra) -> torch.Tensor:
        if self.config.temperature_fallback:
            torch.manual_seed(FALLBACK_SEED)  # the same batch gives the same output
        out = self.model.generate(**inputs, **self.generate_kwargs(long_form), **extra)
        return out if isinstance(out, torch.Tensor) else out["sequences"]

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Texts of token ids, special tokens dropped, whitespace collapsed."""
        texts = self.processor.batch_decode(ids, skip_special_tokens=True)
        return [" ".join(t.split()) for t in texts]

    def transcribe(self, audios: Sequence[np.ndarray]) -> list[str]:
        """One text per waveform."""
        return self.decode(self.generate(audios))
