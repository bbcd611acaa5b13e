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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from speechdistill.cache import rskd_sample, utt_generator
from speechdistill.pseudo_label.config import PseudoLabelConfig, UttLabel, check_window
from speechdistill.pseudo_label.stats import token_stats
from speechdistill.utils import PathLike
from speechdistill.whisper.tokens import (
    MAX_TARGET_POSITIONS,
    SAMPLE_RATE,
    WINDOW_SECONDS,
    check_language,
    is_multilingual,
    language_token,
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
        check_window(utt_ids, durations)
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
        else:  # one pass per window, as without timestamps: transformers would otherwise seek
            # back to the last complete segment and decode again, which it cannot from states
            kwargs["force_unique_generate_call"] = True
        if self.multilingual:
            kwargs["task"] = cfg.task
            kwargs["language"] = langs
        out = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=states), **kwargs)
        limit = cfg.max_new_tokens or (self.gen.max_length or MAX_TARGET_POSITIONS) - len(
            prompts[0]
        )
        rows = out.tolist()
        if cfg.return_timestamps:  # that single call returns the prompt too
            rows = [
                r[len(p) :] if r[: len(p)] == p else r for r, p in zip(rows, prompts, strict=True)
            ]
        hyps = [self._cut(row, limit) for row in rows]

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
            label = UttLabel.from_tokens(
                utt, h, stats, self.processor.decode, durations[i], cfg.return_timestamps
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
