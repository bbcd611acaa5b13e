"""The ``hf`` backend of the pseudo-label stage: the teacher in transformers.

Per batch of length-sorted utterances:

1. the encoder runs once (its states can be cached for training);
2. ``generate`` decodes (greedy or beam search) from those encoder states;
3. one teacher-forced decoder forward over prompt + hypothesis gives the raw logits of every
   generated token: the statistics, the no-speech probability (at the start-of-transcript
   position, as Whisper computes it) and the sparse RS-KD cache all come from it. This parallel
   forward costs a fraction of the sequential decode and, unlike ``generate``'s returned logits,
   is exact for beam search too and does not copy every sample's KV cache to the host (which
   transformers' Whisper ``generate`` does for ``return_dict_in_generate``).

With timestamps, ``generate`` runs without ``<|notimestamps|>`` and the plain label is the
timestamped one without its timestamp tokens, unless the window's decode is incomplete (it ends
with a lone timestamp, handing the rest to the next window as Whisper's sequential decoding
does, or at the length limit): then a decode after ``<|notimestamps|>`` gives that window's plain
label (:func:`~speechdistill.pseudo_label.config.plain_labels`). A second forced pass gives the
RS-KD samples of the timestamped labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from speechdistill.cache import rskd_sample, utt_generator
from speechdistill.pseudo_label.config import (
    PseudoLabelConfig,
    UttLabel,
    check_window,
    plain_labels,
)
from speechdistill.pseudo_label.stats import LANGUAGE_STAT, language_probs, token_stats
from speechdistill.utils import PathLike
from speechdistill.whisper.language import resolve_language
from speechdistill.whisper.tokens import (
    MAX_TARGET_POSITIONS,
    SAMPLE_RATE,
    WINDOW_SECONDS,
    is_multilingual,
)

__all__ = ["HFLabeler"]


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
        self.lang_to_id = dict(gen.lang_to_id) if self.multilingual else {}
        #: the forced language token (``<|pt|>``), None: detected (or an English-only teacher)
        self.language = resolve_language(config.language, self.lang_to_id, "the teacher")
        self.lang_ids = sorted(self.lang_to_id.values())
        self.id_to_lang = {i: t[2:-2] for t, i in self.lang_to_id.items()}

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
        """The decoder prompt of each utterance up to the task (without
        ``<|notimestamps|>``), and the language of each (multilingual)."""
        gen = self.gen
        head = [gen.decoder_start_token_id]
        n = encoder_states.shape[0]
        if not self.multilingual:
            return [head] * n, None
        task = gen.task_to_id[self.config.task]
        if self.language is not None:
            langs = [self.language] * n
        else:
            from transformers.modeling_outputs import BaseModelOutput

            ids = self.model.detect_language(
                encoder_outputs=BaseModelOutput(last_hidden_state=encoder_states),
                generation_config=gen,
            )
            id_to_lang = {v: k for k, v in gen.lang_to_id.items()}
            langs = [id_to_lang[int(i)] for i in ids.view(-1)]
        return [[*head, gen.lang_to_id[lang], task] for lang in langs], langs

    # one batch ----------------------------------------------------------------------------
    @torch.inference_mode()
    def label(self, utt_ids: Sequence[str], audios: Sequence[np.ndarray]) -> list[UttLabel]:
        cfg = self.config
        model = self.model
        durations = [len(a) / SAMPLE_RATE for a in audios]
        check_window(utt_ids, durations)
        feats = self.processor.feature_extractor(
            list(audios), sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_features.to(model.device, model.dtype)
        states = self.encode(feats, max(durations))
        base, langs = self.prompts(states)
        prompts = [[*p, self.gen.no_timestamps_token_id] for p in base]
        ts_hyps: list[list[int]] = []
        if cfg.return_timestamps:
            ts_hyps = self._generate(states, base, langs, timestamps=True)
            hyps = plain_labels(ts_hyps, self.gen.no_timestamps_token_id + 1, self.eos)
            redo = [i for i, h in enumerate(hyps) if h is None]
            if redo:  # incomplete timestamped labels: the plain label from its own decode
                sub = [langs[i] for i in redo] if langs else None
                again = self._generate(states[redo], [prompts[i] for i in redo], sub,
                                       timestamps=False)  # fmt: skip
                for i, h in zip(redo, again, strict=True):
                    hyps[i] = h
        else:
            hyps = self._generate(states, prompts, langs, timestamps=False)
        hidden = self._forced(prompts, hyps, states)
        labels = []
        for i, utt in enumerate(utt_ids):
            p, h = len(prompts[i]), hyps[i]
            logits = self._logits(hidden[i], p, len(h), with_start=True)
            tokens = torch.tensor(h, dtype=torch.long, device=logits.device)
            stats = token_stats(logits[1:], tokens)
            stats["no_speech_prob"] = torch.softmax(logits[0], -1)[self.no_speech_id].item()
            lang = None
            if langs:  # the first step's language probabilities (language identification)
                probs = language_probs(logits[0], self.lang_ids)
                lang = self.id_to_lang[self.lang_ids[int(probs.argmax())]]
                expected = self.lang_ids.index(self.lang_to_id[langs[i]])
                stats[LANGUAGE_STAT] = probs[expected].item()
            label = UttLabel.from_tokens(utt, h, stats, self.processor.decode, durations[i])
            label.lang = lang
            if cfg.cache_encoder:
                label.encoder = states[i].to(torch.float16).cpu()
            if cfg.rskd_k:
                label.rskd = self._sampler(utt, False)(logits[1:])
            if ts_hyps:
                label.add_timestamps(ts_hyps[i], self.processor.decode)
            labels.append(label)
        if ts_hyps and cfg.rskd_k:  # the RS-KD samples of the timestamped labels
            hidden = self._forced(base, ts_hyps, states)
            for i, lb in enumerate(labels):
                logits = self._logits(hidden[i], len(base[i]), len(ts_hyps[i]), with_start=False)
                lb.rskd_ts = self._sampler(lb.utt, True)(logits)
        return labels

    def _generate(
        self,
        states: torch.Tensor,
        prompts: list[list[int]],
        langs: list[str] | None,
        *,
        timestamps: bool,
    ) -> list[list[int]]:
        """``generate`` from the encoder states: each hypothesis up to and including EOS."""
        from transformers.modeling_outputs import BaseModelOutput

        cfg = self.config
        kwargs: dict[str, Any] = {"num_beams": cfg.num_beams, "do_sample": False}
        kwargs["return_timestamps"] = timestamps
        if timestamps:
            # one decode of the window, as Whisper's short-form transcription: without this,
            # transformers seeks to the last timestamp and decodes again (a sequence that cannot
            # be teacher-forced on these encoder states; with encoder states alone it fails
            # when the rows of a batch need different numbers of passes)
            kwargs["force_unique_generate_call"] = True
        else:
            kwargs["suppress_tokens"] = self.suppress_timestamps
        if cfg.max_new_tokens is not None:
            kwargs["max_new_tokens"] = cfg.max_new_tokens
        if self.multilingual:
            kwargs["task"] = cfg.task
            kwargs["language"] = langs
        out = self.model.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=states), **kwargs
        )
        limit = cfg.max_new_tokens or (self.gen.max_length or MAX_TARGET_POSITIONS) - len(
            prompts[0]
        )
        rows = out.tolist()
        if timestamps:  # the single call's output starts with the prompt
            rows = [
                r[len(p) :] if r[: len(p)] == p else r for r, p in zip(rows, prompts, strict=True)
            ]
        return [self._cut(row, limit) for row in rows]

    def _logits(
        self, hidden: torch.Tensor, prompt_len: int, n: int, *, with_start: bool
    ) -> torch.Tensor:
        """Raw logits of the ``n`` hypothesis tokens of one row of a forced pass (after a
        ``prompt_len``-token prompt); ``with_start`` puts the start-of-transcript position's
        first (whence the no-speech probability)."""
        rows = hidden[prompt_len - 1 : prompt_len - 1 + n]
        if with_start:
            rows = torch.cat([hidden[:1], rows])
        return self.model.proj_out(rows).float()

    def _forced(
        self, prompts: list[list[int]], hyps: list[list[int]], states: torch.Tensor
    ) -> torch.Tensor:
        """Decoder hidden states of one teacher-forced pass over prompt + hypothesis
        (right-padded; the decoder is causal)."""
        inputs = [p + h[:-1] if h else p for p, h in zip(prompts, hyps, strict=True)]
        width = max(len(x) for x in inputs)
        ids = torch.full((len(inputs), width), self.eos, dtype=torch.long)
        for i, x in enumerate(inputs):
            ids[i, : len(x)] = torch.tensor(x)
        return self.model.model.decoder(
            input_ids=ids.to(self.model.device), encoder_hidden_states=states
        ).last_hidden_state

    def _sampler(self, utt: str, timestamped: bool):
        """RS-KD sampling of one utterance's logits; the timestamped label draws from its own
        stream (``"<utt> ts"``: ids hold no space), the plain one from the stream of a run
        without timestamps."""
        cfg = self.config
        gen = utt_generator(cfg.seed, f"{utt} ts" if timestamped else utt)
        return lambda logits: rskd_sample(logits.cpu(), cfg.rskd_k, cfg.rskd_temperature, gen)

    def _cut(self, row: list[int], limit: int) -> list[int]:
        """Generated tokens up to and including the first EOS.

        transformers drops the final EOS when every hypothesis of a batch ends at the same step;
        a hypothesis shorter than the length limit did end with EOS, so it is put back.
        """
        if self.eos in row:
            return row[: row.index(self.eos) + 1]
        return [*row, self.eos] if len(row) < limit else row
