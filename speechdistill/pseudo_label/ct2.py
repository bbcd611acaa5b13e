"""The ``ct2`` backend of the pseudo-label stage: the teacher in CTranslate2, for CPU throughput.

Same output as the ``hf`` backend (:class:`~speechdistill.pseudo_label.hf.HFLabeler`): the
text, the timestamped text, the generated token ids (EOS included) and every statistic of
:data:`~speechdistill.pseudo_label.stats.STATS`, none left NaN, computed from the teacher's
**raw** logits with the same code (:func:`~speechdistill.pseudo_label.stats.token_stats`).
Per batch:

1. the HF feature extractor of the teacher makes the log-mel features (padded to 30 s);
2. CTranslate2 encodes them once and ``generate`` decodes (greedy or beam search) with Whisper's
   usual suppression (``suppress_tokens`` and, at the first step, blank and EOS), as the ``hf``
   backend does;
3. a second, greedy ``generate`` whose prompt is the hypothesis (prompt + tokens, EOS excluded)
   with no suppression at all returns the logits of every step (``return_logits_vocab``): these
   are the raw logits that predicted each generated token, EOS included, and
   ``return_no_speech_prob`` gives the no-speech probability at the start-of-transcript position,
   both as the ``hf`` backend's teacher-forced pass computes them;
4. with timestamps, the decoding pass runs without ``<|notimestamps|>`` and the plain label is
   the timestamped one without its timestamp tokens, or, where that decode is incomplete, a
   decode after ``<|notimestamps|>`` (as the ``hf`` backend; ``plain_labels``).

Why the second pass: CTranslate2's ``scores`` and ``logits`` of the decoding pass itself come
after suppression (suppressed tokens are set to -inf and the log-softmax is taken over the rest),
and the scores are divided by the hypothesis length without EOS. On tiny.en that shifts
``avg_logprob`` by ~0.005 and ``entropy_max`` by up to ~0.1 nats; the forced pass reproduces the
``hf`` backend's statistics to ~1e-6 (float32). It steps the decoder once per token like the
decoding pass (CTranslate2 has no parallel teacher-forced scoring of the full vocabulary), so it
costs about one more greedy decode, and no encoder.

Differences from the ``hf`` backend:

- beam search is CTranslate2's (length penalty 1, patience 1): hypotheses can differ slightly from
  transformers' beam search;
- features are computed in float32 and the ``compute_type`` decides the arithmetic: ``None`` is
  float32 on CPU and float16 on CUDA (the ``hf`` backend picks bfloat16 there); CTranslate2's
  quantised types (``int8``, ``int8_float32``, …) are accepted as ``dtype`` here only;
- encoder-state and RS-KD caches are not supported (construction fails).

Needs ``ctranslate2 >= 4.6`` (the first with per-step logits for Whisper):
``pip install 'speechdistill[ct2]'``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechdistill.pseudo_label.config import (
    PseudoLabelConfig,
    UttLabel,
    check_window,
    plain_labels,
)
from speechdistill.pseudo_label.stats import LANGUAGE_STAT, token_stats
from speechdistill.utils import PathLike
from speechdistill.whisper.ct2.binary import is_ct2_model_dir
from speechdistill.whisper.ct2.processor import read_processor
from speechdistill.whisper.ct2.runtime import (
    converted_teacher,
    import_ctranslate2,
    parse_device,
    resolve_compute_type,
)
from speechdistill.whisper.language import resolve_language
from speechdistill.whisper.tokens import (
    MAX_INITIAL_TIMESTAMP_INDEX,
    MAX_TARGET_POSITIONS,
    SAMPLE_RATE,
    WINDOW_SECONDS,
    is_multilingual,
)

log = logging.getLogger(__name__)

__all__ = ["FORCED_STEPS_PER_CALL", "CT2Labeler"]

#: Who needs ctranslate2 (named in the install message).
BACKEND = "the ct2 pseudo-label backend"
#: At most this many decoder steps × utterances per forced pass (bounds the logits in memory:
#: 1024 steps of a 51865-token vocabulary are ~200 MB in float32).
FORCED_STEPS_PER_CALL = 1024


def _check_config(config: PseudoLabelConfig) -> None:
    if config.cache_encoder or config.rskd_k:
        raise ValueError(
            "the ct2 backend cannot write the encoder or RS-KD caches "
            "(--cache-encoder/--rskd-k): use --backend hf"
        )
    if config.num_beams < 1:
        raise ValueError(f"num_beams must be ≥ 1, got {config.num_beams}")


class CT2Labeler:
    """Whisper in CTranslate2: encoder once, ``generate``, one forced pass for the raw logits.

    ``model``: a ``ctranslate2.models.Whisper``; ``tokenizer`` and ``feature_extractor``: the
    teacher's (transformers); ``lang_to_id``: language token → id (multilingual teachers);
    ``max_length``: the ``hf`` backend's ``generation_config.max_length`` (prompt + tokens).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        feature_extractor: Any,
        config: PseudoLabelConfig,
        *,
        lang_to_id: dict[str, int] | None = None,
        max_length: int = MAX_TARGET_POSITIONS,
        max_initial_timestamp_index: int = MAX_INITIAL_TIMESTAMP_INDEX,
    ):
        _check_config(config)
        self.ct2 = import_ctranslate2(BACKEND)
        self.model = model
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.config = config
        self.max_length = max_length
        self.max_initial_timestamp_index = max_initial_timestamp_index
        ids = tokenizer.convert_tokens_to_ids
        self.sot = ids("<|startoftranscript|>")
        self.eos = ids("<|endoftext|>")
        self.no_timestamps = ids("<|notimestamps|>")
        self.lang_to_id = dict(lang_to_id or {})
        self.multilingual = bool(self.lang_to_id)
        #: the forced language token (``<|pt|>``), None: detected (or an English-only teacher)
        self.language = resolve_language(config.language, self.lang_to_id, "the teacher")
        if self.multilingual:
            self.task_id = ids(f"<|{config.task}|>")
            if self.language is None and not model.is_multilingual:
                raise ValueError(
                    f"ctranslate2 {self.ct2.__version__} cannot detect the language with this "
                    "teacher (it does not see it as multilingual): set the language"
                )

    @classmethod
    def from_pretrained(cls, teacher: PathLike, config: PseudoLabelConfig) -> CT2Labeler:
        """Load ``teacher`` (a transformers dir, converted once, or a CTranslate2 dir)."""
        ct2 = import_ctranslate2(BACKEND)
        _check_config(config)  # before any conversion
        device, index = parse_device(config.device)
        compute_type = resolve_compute_type(config.dtype, device)
        supported = ct2.get_supported_compute_types(device, index)
        if compute_type not in supported:
            raise ValueError(
                f"CTranslate2 cannot compute in {compute_type} on {config.device} (supported "
                f"here: {', '.join(sorted(supported))}); choose another dtype"
            )
        path = Path(teacher)
        if not path.is_dir():
            raise ValueError(f"{teacher}: not a directory (the ct2 backend needs a local teacher)")
        native = is_ct2_model_dir(path) and not any(path.glob("*.safetensors"))
        model_dir = path if native else converted_teacher(path, compute_type)
        threads = torch.get_num_threads() if device == "cpu" else 1
        model = ct2.models.Whisper(
            str(model_dir),
            device=device,
            device_index=index,
            compute_type=compute_type,
            intra_threads=threads,
        )
        if native:
            tokenizer, feature_extractor, lang_to_id = read_processor(path, model.n_mels)
            max_length, max_initial = MAX_TARGET_POSITIONS, MAX_INITIAL_TIMESTAMP_INDEX
        else:
            from transformers import GenerationConfig, WhisperProcessor

            processor = WhisperProcessor.from_pretrained(str(path), trust_remote_code=False)
            tokenizer, feature_extractor = processor.tokenizer, processor.feature_extractor
            gen = GenerationConfig.from_pretrained(str(path))
            multilingual = is_multilingual(gen)
            lang_to_id = dict(getattr(gen, "lang_to_id", None) or {}) if multilingual else {}
            max_length = gen.max_length or MAX_TARGET_POSITIONS
            max_initial = getattr(gen, "max_initial_timestamp_index", None)
            max_initial = MAX_INITIAL_TIMESTAMP_INDEX if max_initial is None else max_initial
        log.info(
            "ct2 teacher %s on %s (%s compute, %d threads)",
            model_dir, config.device, model.compute_type, threads,
        )  # fmt: skip
        return cls(
            model,
            tokenizer,
            feature_extractor,
            config,
            lang_to_id=lang_to_id,
            max_length=max_length,
            max_initial_timestamp_index=max_initial,
        )

    # prompt -------------------------------------------------------------------------------
    def prompts(
        self, encoded: Any, n: int
    ) -> tuple[list[list[int]], list[tuple[str, float]] | None]:
        """The decoder prompt of each utterance, ``<|notimestamps|>`` included (detecting the
        language when not given), and, for a multilingual teacher, each one's most likely
        language and the probability of the prompt's language (CTranslate2's
        ``detect_language``: a softmax over the language tokens at the first step)."""
        tail = [self.no_timestamps]
        if not self.multilingual:
            return [[self.sot, *tail]] * n, None
        detected = self.model.detect_language(encoded) if self.model.is_multilingual else None
        if self.language is not None:
            langs = [self.language] * n
        else:
            langs = [best[0][0] for best in detected]
        prompts = [[self.sot, self.lang_to_id[lang], self.task_id, *tail] for lang in langs]
        if detected is None:
            return prompts, None
        info = [
            (d[0][0][2:-2], dict(d).get(lang, 0.0)) for d, lang in zip(detected, langs, strict=True)
        ]
        return prompts, info

    # one batch ----------------------------------------------------------------------------
    def label(self, utt_ids: Sequence[str], audios: Sequence[np.ndarray]) -> list[UttLabel]:
        """Label one batch: text, timestamped text (if asked) and every statistic."""
        cfg = self.config
        if not utt_ids:
            return []
        durations = [len(a) / SAMPLE_RATE for a in audios]
        check_window(utt_ids, durations)
        feats = self.feature_extractor(
            list(audios), sampling_rate=SAMPLE_RATE, return_tensors="np"
        ).input_features.astype(np.float32, copy=False)
        window = cfg.encoder_window
        if window < WINDOW_SECONDS and max(durations) + 2.0 <= window:
            feats = feats[..., : int(window * 100)]  # as the hf backend: 10 ms log-mel frames
        # StorageView.from_array shares the array's memory: keep the arrays referenced here.
        feats = np.ascontiguousarray(feats)
        encoded = self.model.encode(self._view(feats), to_cpu=True)
        encoded = np.asarray(self._to_host(encoded))  # on the host: sliced for the forced passes
        prompts, langs = self.prompts(self._view(encoded), len(utt_ids))
        start = max(len(prompts[0]) - 1, 0)  # tokens CTranslate2 runs before the decoding loop
        room = self.max_length - len(prompts[0])
        limit = cfg.max_new_tokens or room
        if not 1 <= limit <= room:
            raise ValueError(
                f"max_new_tokens {limit}: the teacher has room for 1..{room} tokens after a "
                f"{len(prompts[0])}-token prompt (max_length {self.max_length})"
            )

        ts_hyps: list[list[int]] = []
        if cfg.return_timestamps:
            ts_prompts = [p[:-1] for p in prompts]  # without <|notimestamps|>
            ts_limit = cfg.max_new_tokens or self.max_length - len(ts_prompts[0])
            ts_hyps = self._generate(encoded, ts_prompts, ts_limit, max(start - 1, 0))
            hyps = plain_labels(ts_hyps, self.no_timestamps + 1, self.eos)
            redo = [i for i, h in enumerate(hyps) if h is None]
            if redo:  # incomplete timestamped labels: the plain label from its own decode
                sub = np.ascontiguousarray(encoded[redo])
                again = self._generate(sub, [prompts[i] for i in redo], limit, start)
                for i, h in zip(redo, again, strict=True):
                    hyps[i] = h
        else:
            hyps = self._generate(encoded, prompts, limit, start)
        logits, no_speech = self._forced(encoded, prompts, hyps, start)
        labels = []
        for i, utt in enumerate(utt_ids):
            h = hyps[i]
            stats = token_stats(logits[i], torch.tensor(h, dtype=torch.long))
            stats["no_speech_prob"] = no_speech[i]
            if langs:
                stats[LANGUAGE_STAT] = langs[i][1]
            label = UttLabel.from_tokens(utt, h, stats, self.tokenizer.decode, durations[i])
            label.lang = langs[i][0] if langs else None
            if ts_hyps:
                label.add_timestamps(ts_hyps[i], self.tokenizer.decode)
            labels.append(label)
        return labels

    def _generate(
        self, encoded: np.ndarray, prompts: list[list[int]], limit: int, start: int
    ) -> list[list[int]]:
        """Decode every row (greedy or beam search): each hypothesis up to and including EOS."""
        cfg = self.config
        results = self.model.generate(
            self._view(encoded),
            prompts,
            beam_size=cfg.num_beams,
            patience=1.0,
            length_penalty=1.0,
            num_hypotheses=1,
            max_length=_ct2_max_length(limit, start),
            max_initial_timestamp_index=self.max_initial_timestamp_index,
        )
        # CTranslate2 drops EOS; a hypothesis shorter than the limit did end with it.
        hyps = []
        for r in results:
            seq = list(r.sequences_ids[0])
            hyps.append([*seq, self.eos] if len(seq) < limit else seq)
        return hyps

    def _forced(
        self, encoded: np.ndarray, prompts: list[list[int]], hyps: list[list[int]], start: int
    ) -> tuple[list[torch.Tensor], list[float]]:
        """Raw logits (T, V) of every hypothesis token and the no-speech probabilities.

        The hypothesis without its last token is the prompt's prefix: CTranslate2 forces it one
        step at a time and the free step after it predicts the last token (suppression off, so
        the logits are raw). Split into calls of at most :data:`FORCED_STEPS_PER_CALL` steps.
        """
        logits: list[torch.Tensor] = []
        no_speech: list[float] = []
        for lo, hi in _chunks([len(h) for h in hyps], FORCED_STEPS_PER_CALL):
            steps = max(len(h) for h in hyps[lo:hi])
            chunk = np.ascontiguousarray(encoded[lo:hi])  # alive while CTranslate2 reads it
            results = self.model.generate(
                self._view(chunk),
                [p + h[:-1] for p, h in zip(prompts[lo:hi], hyps[lo:hi], strict=True)],
                beam_size=1,
                max_length=_ct2_max_length(steps, start),
                return_logits_vocab=True,
                return_no_speech_prob=True,
                suppress_blank=False,
                suppress_tokens=[],
                max_initial_timestamp_index=self.max_initial_timestamp_index,
            )
            for r, h in zip(results, hyps[lo:hi], strict=True):
                rows = r.logits[0] if r.logits else []
                if len(rows) < len(h) or list(r.sequences_ids[0][: len(h) - 1]) != h[:-1]:
                    raise RuntimeError(
                        f"CTranslate2's forced pass returned {len(rows)} logit rows for a "
                        f"{len(h)}-token hypothesis (ctranslate2 {self.ct2.__version__})"
                    )
                steps_np = [np.asarray(self._to_host(x), dtype=np.float32) for x in rows[: len(h)]]
                logits.append(torch.from_numpy(np.stack(steps_np)))
                no_speech.append(float(r.no_speech_prob))
        return logits, no_speech

    def _view(self, array: np.ndarray) -> Any:
        return self.ct2.StorageView.from_array(array)

    def _to_host(self, x: Any) -> Any:
        """A CTranslate2 StorageView on the CPU, in a dtype numpy reads (bfloat16 → float32)."""
        if x.device != "cpu":
            x = x.to_device(self.ct2.Device.cpu)
        if str(x.dtype).endswith("bfloat16"):
            x = x.to(self.ct2.DataType.float32)
        return x


def _ct2_max_length(steps: int, start: int) -> int:
    """The ``max_length`` that lets CTranslate2's Whisper decode exactly ``steps`` tokens.

    It decodes min(max_length // 2, max_length - start) tokens (forced prefix included), where
    ``start`` is the number of prompt tokens it runs before the decoding loop.
    """
    return max(2 * steps, steps + start)


def _chunks(lengths: list[int], budget: int) -> list[tuple[int, int]]:
    """Consecutive [lo, hi) ranges whose rows × longest length stay within ``budget``."""
    out, lo, longest = [], 0, 0
    for i, n in enumerate(lengths):
        if i > lo and max(longest, n) * (i - lo + 1) > budget:
            out.append((lo, i))
            lo, longest = i, 0
        longest = max(longest, n)
    if lengths:
        out.append((lo, len(lengths)))
    return out
