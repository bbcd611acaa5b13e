"""Long-form Whisper transcription (transformers' sequential algorithm): audio of any length
decoded window by window with timestamps, conditioned on the previous window's text, with
Whisper's temperature fallback and no-speech skipping; segments and word timestamps from the
cross-attention alignment heads (dynamic time warping, ``return_token_timestamps``).

The settings are the ones of Whisper's ``transcribe()`` and of the published Distil-Whisper
evaluations (:data:`LONG_FORM_DEFAULTS`); the compression ratio is transformers' (gzip ratio of
the generated tokens' text).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from speechdistill.inference.whisper import FALLBACK_SEED, WhisperTranscriber
from speechdistill.whisper.tokens import SAMPLE_RATE, WINDOW_SECONDS

log = logging.getLogger(__name__)

__all__ = ["LongFormConfig", "LongFormResult", "LongFormTranscriber", "Segment", "Word"]


@dataclass
class LongFormConfig:
    """The long-form settings given to ``generate`` (``None`` turns a threshold off)."""

    #: temperatures tried in turn until a window passes the thresholds (0.0: greedy/beam)
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    #: a window whose gzip compression ratio exceeds this (a repetition loop) is redone hotter
    compression_ratio_threshold: float | None = 1.35
    #: a window whose mean token log-probability is below this is redone hotter
    logprob_threshold: float | None = -1.0
    #: a window with P(no speech) above this and a log-probability below the threshold is silence
    no_speech_threshold: float | None = 0.6
    #: prompt each window with the previous window's text (reset after a hot fallback)
    condition_on_prev_tokens: bool = True
    #: word timestamps from the alignment heads (needs ``generation_config.alignment_heads``)
    word_timestamps: bool = True

    def generate_kwargs(self) -> dict:
        """``generate``'s arguments for these settings."""
        kwargs: dict = {
            "return_timestamps": True,
            "return_segments": True,
            "condition_on_prev_tokens": self.condition_on_prev_tokens,
            "return_token_timestamps": self.word_timestamps,
        }
        if len(self.temperatures) == 1:
            kwargs["temperature"] = self.temperatures[0]
        else:
            kwargs["temperature"] = tuple(self.temperatures)
        for name in ("compression_ratio_threshold", "logprob_threshold", "no_speech_threshold"):
            if getattr(self, name) is not None:
                kwargs[name] = getattr(self, name)
        return kwargs

    def to_json(self) -> dict:
        return {**asdict(self), "temperatures": list(self.temperatures)}


@dataclass
class Word:
    """A word and its times in seconds from the start of the recording."""

    start: float
    end: float
    text: str


@dataclass
class Segment:
    """A hypothesised segment: its timestamps (from the timestamp tokens), text and words."""

    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)


@dataclass
class LongFormResult:
    """The transcription of one recording."""

    text: str
    segments: list[Segment]

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]


class LongFormTranscriber:
    """Transcribes whole recordings with a :class:`WhisperTranscriber`'s model and processor
    (its ``num_beams``, ``language``, ``task`` and ``max_new_tokens`` are kept)."""

    def __init__(self, transcriber: WhisperTranscriber, config: LongFormConfig | None = None):
        self.transcriber = transcriber
        self.config = config or LongFormConfig()
        gen = transcriber.model.generation_config
        if self.config.word_timestamps and not getattr(gen, "alignment_heads", None):
            raise ValueError(
                "word timestamps need the model's generation_config.alignment_heads, which this "
                "model lacks (init-student keeps the teacher's): turn word timestamps off"
            )
        tokenizer = transcriber.processor.tokenizer
        eot = gen.eos_token_id
        self._eot = min(eot) if isinstance(eot, list) else eot  # ids below it are text tokens
        self._pieces = tokenizer.convert_ids_to_tokens(list(range(self._eot)))

    def features(self, audios: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """Log-mel features of the whole recordings (padded to the longest, at least 30 s) and
        the ``attention_mask`` that marks each one's length."""
        model = self.transcriber.model
        fe = self.transcriber.processor.feature_extractor
        longest = max(len(a) for a in audios)
        feats = fe(
            list(audios),
            sampling_rate=SAMPLE_RATE,
            return_tensors="pt",
            truncation=False,
            padding="longest" if longest > WINDOW_SECONDS * SAMPLE_RATE else "max_length",
            return_attention_mask=True,
        )
        return {
            "input_features": feats.input_features.to(model.device, model.dtype),
            "attention_mask": feats.attention_mask.to(model.device),
        }

    @torch.inference_mode()
    def transcribe_long(self, audios: Sequence[np.ndarray]) -> list[LongFormResult]:
        """One :class:`LongFormResult` per 16 kHz waveform (any length); seeded, so the same
        batch gives the same output."""
        t = self.transcriber
        kwargs = t.generate_kwargs(long_form=True)
        kwargs.pop("do_sample", None)  # generate samples at each temperature above 0
        kwargs.update(self.config.generate_kwargs())
        if self.config.word_timestamps and len(audios) > 1:
            if t.config.num_beams > 1:
                # with beams, transformers' batched word timestamps fail (as below), and a
                # failed batch is decoded twice: one recording at a time from the start
                return self._one_by_one(audios, kwargs)
            try:
                return self._generate(audios, kwargs)
            except IndexError as err:
                # transformers' Whisper generate, with word timestamps, indexes the recordings'
                # frame counts with the whole batch's map once the temperature fallback has
                # reduced the batch to the windows that failed (an empty array when their
                # lengths differ): such a batch is decoded again one recording at a time
                log.warning(
                    "word timestamps failed for a batch of %d recordings in transformers' "
                    "generate (%s): decoding them one at a time", len(audios), err,
                )  # fmt: skip
                return self._one_by_one(audios, kwargs)
        return self._generate(audios, kwargs)

    def _one_by_one(self, audios: Sequence[np.ndarray], kwargs: dict) -> list[LongFormResult]:
        return [r for a in audios for r in self._generate([a], kwargs)]

    def _generate(self, audios: Sequence[np.ndarray], kwargs: dict) -> list[LongFormResult]:
        torch.manual_seed(FALLBACK_SEED)
        out = self.transcriber.model.generate(**self.features(audios), **kwargs)
        durations = [len(a) / SAMPLE_RATE for a in audios]
        return [
            self._result(segs, dur) for segs, dur in zip(out["segments"], durations, strict=True)
        ]

    def _result(self, raw_segments: list[dict], duration: float) -> LongFormResult:
        segments = []
        for raw in raw_segments:
            tokens = raw["tokens"].tolist()
            text_ids = [i for i in tokens if i < self._eot]
            text = " ".join(self.transcriber.decode(torch.tensor([text_ids]))[0].split())
            if not text:
                continue
            start, end = _clip(float(raw["start"]), duration), _clip(float(raw["end"]), duration)
            seg = Segment(start=start, end=max(start, end), text=text)
            if "token_timestamps" in raw:
                seg.words = self._words(tokens, raw["token_timestamps"].tolist(), seg, duration)
            segments.append(seg)
        return LongFormResult(text=" ".join(s.text for s in segments), segments=segments)

    def _words(
        self, tokens: list[int], times: list[float], seg: Segment, duration: float
    ) -> list[Word]:
        """Group text tokens into words (a byte-level BPE piece starting with ``Ġ``, a space,
        begins one); a word spans from its first token's time to the next token's."""
        groups: list[list[int]] = []  # token positions of each word
        for pos, tok in enumerate(tokens):
            if tok >= self._eot:
                continue
            if not groups or self._pieces[tok].startswith("Ġ"):
                groups.append([])
            groups[-1].append(pos)
        decode = self.transcriber.processor.tokenizer.decode
        words = []
        for group in groups:
            text = decode([tokens[p] for p in group]).strip()
            if not text:
                continue
            start = _clip(times[group[0]], duration)
            nxt = group[-1] + 1
            end = _clip(times[nxt], duration) if nxt < len(times) else seg.end
            words.append(Word(start=round(start, 3), end=round(max(start, end), 3), text=text))
        return words


def _clip(t: float, duration: float) -> float:
    return min(max(t, 0.0), duration)
