"""CTC models on speech encoders (HuBERT, wav2vec 2.0, WavLM, …, and Whisper's encoder):
character vocabulary, processor, loading, and greedy (best-path) transcription.

- :func:`build_vocab` makes the character vocabulary of a set of (normalised) transcripts in
  transformers' ``Wav2Vec2CTCTokenizer`` layout: ``<pad>`` (id 0, the CTC blank), ``<unk>``,
  ``|`` (the word delimiter that stands for spaces), then the characters in code-point order.
- :func:`make_processor` wraps it with a feature extractor in a ``Wav2Vec2Processor``; tokenising
  and decoding are transformers' (CTC collapsing of repeats and blanks included).
- :class:`CTCTranscriber` decodes by argmax, each utterance over its own frames only; ``<unk>``
  is dropped from the text.
- :class:`WhisperEncoderForCTC` puts a CTC output layer on a Whisper encoder (a pruned one from
  ``speechdistill prune`` included). It reads the log-mel frames of the clip only, not a 30 s
  window (:func:`whisper_clip_input`): a 3 s clip costs a tenth of the window's compute, and
  attention far less. :func:`encoder_batch` prepares either kind of input.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.modeling_outputs import CausalLMOutput
from transformers.models.whisper.modeling_whisper import WhisperEncoder, WhisperPreTrainedModel

from speechdistill.batching import pad_waveforms
from speechdistill.prune.remove import PRUNING_KEY, apply_structure
from speechdistill.teachers.hubert import whisper_num_frames
from speechdistill.utils import PathLike

__all__ = [
    "CTC_CLASSES",
    "PAD",
    "UNK",
    "WORD_DELIMITER",
    "CTCTranscriber",
    "WhisperEncoderForCTC",
    "build_vocab",
    "ctc_class",
    "encoder_batch",
    "load_ctc_model",
    "make_processor",
    "model_inputs",
    "whisper_clip_input",
]

PAD, UNK, WORD_DELIMITER = "<pad>", "<unk>", "|"
#: The CTC head class of each encoder type (transformers ``model_type``).
CTC_CLASSES = {
    "hubert": "HubertForCTC",
    "wav2vec2": "Wav2Vec2ForCTC",
    "wavlm": "WavLMForCTC",
    "whisper": "WhisperEncoderForCTC",
}


def build_vocab(texts: Iterable[str]) -> dict[str, int]:
    """Character vocabulary of ``texts``: ``<pad>`` 0 (blank), ``<unk>`` 1, ``|`` 2, characters."""
    chars = sorted({ch for t in texts for ch in t if not ch.isspace()})
    reserved = (PAD, UNK, WORD_DELIMITER)
    clash = [c for c in chars if c in reserved]
    if clash:
        raise ValueError(f"the transcripts contain reserved vocabulary symbols {clash}")
    vocab = {PAD: 0, UNK: 1, WORD_DELIMITER: 2}
    vocab.update((ch, i + 3) for i, ch in enumerate(chars))
    return vocab


def make_processor(vocab: dict[str, int], feature_extractor):
    """A ``Wav2Vec2Processor`` with ``Wav2Vec2CTCTokenizer`` over ``vocab``."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2Processor

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vocab.json"
        path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        tokenizer = Wav2Vec2CTCTokenizer(
            str(path),
            unk_token=UNK,
            pad_token=PAD,
            word_delimiter_token=WORD_DELIMITER,
            bos_token=None,
            eos_token=None,
        )
    return Wav2Vec2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer)


def ctc_class(model_type: str):
    """The ``…ForCTC`` class for an encoder type."""
    import transformers

    if model_type not in CTC_CLASSES:
        raise ValueError(f"no CTC model for {model_type!r} (known: {', '.join(CTC_CLASSES)})")
    if model_type == "whisper":
        return WhisperEncoderForCTC
    return getattr(transformers, CTC_CLASSES[model_type])


@contextmanager
def whisper_clip_input(encoder: WhisperEncoder, frames: int) -> Iterator[None]:
    """Let ``encoder`` read ``2 * frames`` log-mel frames instead of a whole 30 s window (3000):
    its states are then those of positions ``0 … frames − 1``. transformers' encoder insists on
    the window; for the duration of the block it is told that its window is ``frames`` long."""
    full = encoder.config.max_source_positions
    if not 0 < frames <= full:
        raise ValueError(f"a Whisper encoder reads 1 to {full} frames, not {frames}")
    table = encoder.embed_positions
    encoder.config.max_source_positions, table.num_embeddings = frames, frames
    try:
        yield
    finally:
        encoder.config.max_source_positions, table.num_embeddings = full, full


class WhisperEncoderForCTC(WhisperPreTrainedModel):
    """A Whisper encoder (resized to the config's ``pruning`` record when it has one) with a
    CTC output layer over ``config.vocab_size`` symbols (``pad_token_id`` is the blank).

    ``input_features`` are a batch's log-mel frames cut to its longest clip (an even number:
    :func:`encoder_batch`); ``num_frames`` are each clip's encoder frames (``ceil(n / 320)``).
    Loads the weights of a saved ``WhisperEncoder`` (a pruned one included) with a new output
    layer, as ``HubertForCTC`` loads a ``HubertModel``."""

    config_class = WhisperConfig
    base_model_prefix = "encoder"
    main_input_name = "input_features"

    def __init__(self, config: WhisperConfig):
        super().__init__(config)
        self.encoder = WhisperEncoder(config)
        record = getattr(config, PRUNING_KEY, None)
        if record is not None:
            apply_structure(self.encoder, record)
        self.dropout = nn.Dropout(getattr(config, "final_dropout", 0.0))
        self.lm_head = nn.Linear(config.d_model, config.vocab_size)
        self.post_init()

    def freeze_feature_encoder(self) -> None:
        """No gradient to the two convolutions (HuBERT's CNN feature encoder counterpart)."""
        for conv in (self.encoder.conv1, self.encoder.conv2):
            conv.requires_grad_(False)

    def _get_feat_extract_output_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Encoder frames of clips of ``num_samples`` samples (as ``HubertForCTC``'s)."""
        n = torch.as_tensor(num_samples)
        return torch.clamp(torch.div(n + 319, 320, rounding_mode="floor"),
                           max=self.config.max_source_positions)  # fmt: skip

    def forward(
        self,
        input_features: torch.Tensor,
        num_frames: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> CausalLMOutput:
        """Logits ``(B, T, V)`` for ``T = ceil(input_features.shape[-1] / 2)`` frames; the mean
        CTC loss per target symbol with ``labels`` (``-100`` beyond each label)."""
        frames = (input_features.shape[-1] + 1) // 2
        with whisper_clip_input(self.encoder, frames):
            hidden = self.encoder(input_features).last_hidden_state
        logits = self.lm_head(self.dropout(hidden))
        loss = None
        if labels is not None:
            if num_frames is None:
                num_frames = torch.full((logits.shape[0],), frames, dtype=torch.long)
            keep = labels >= 0
            log_probs = nn.functional.log_softmax(logits, dim=-1, dtype=torch.float32)
            loss = nn.functional.ctc_loss(
                log_probs.transpose(0, 1),
                labels.masked_select(keep),
                num_frames.to(logits.device),
                keep.sum(-1),
                blank=self.config.pad_token_id,
                reduction=getattr(self.config, "ctc_loss_reduction", "mean"),
                zero_infinity=getattr(self.config, "ctc_zero_infinity", True),
            )
        return CausalLMOutput(loss=loss, logits=logits)


def encoder_batch(audios: Sequence[np.ndarray], feature_extractor) -> dict[str, torch.Tensor]:
    """A batch of 16 kHz waveforms as a CTC model reads it, and ``num_samples`` (B,).

    Whisper's feature extractor: ``input_features`` cut to the longest clip's frames and
    ``num_frames`` (B,); any other: ``input_values`` and, when the extractor returns one,
    ``attention_mask`` (:func:`~speechdistill.batching.pad_waveforms`)."""
    if isinstance(feature_extractor, WhisperFeatureExtractor):
        num_samples = torch.tensor([len(a) for a in audios])
        cap = feature_extractor.nb_max_frames // 2  # the window's encoder frames (1500)
        frames = torch.tensor([min(whisper_num_frames(len(a)), cap) for a in audios])
        feats = feature_extractor(list(audios), sampling_rate=16000, return_tensors="pt")
        longest = int(frames.max())
        return {"input_features": feats.input_features[..., : 2 * longest], "num_frames": frames,
                "num_samples": num_samples}  # fmt: skip
    batch = pad_waveforms(audios, feature_extractor)
    if not feature_extractor.return_attention_mask:
        del batch["attention_mask"]
    return batch


def model_inputs(batch: dict[str, torch.Tensor], device: Any = None) -> dict[str, torch.Tensor]:
    """The model's keyword arguments in a batch of :func:`encoder_batch` (on ``device``)."""
    names = ("input_features", "num_frames", "input_values", "attention_mask")
    return {k: (batch[k].to(device) if device is not None else batch[k])
            for k in names if k in batch}  # fmt: skip


def load_ctc_model(model_dir: PathLike, *, device: str = "cpu"):
    """A CTC model of any ``…ForCTC`` architecture (eval mode, float32) and its processor;
    safetensors only. A pruned HuBERT (a ``pruning`` record in its config) loads as
    :class:`~speechdistill.prune.io.PrunedHubertForCTC`, a Whisper encoder's as
    :class:`WhisperEncoderForCTC`."""
    from transformers import AutoConfig, AutoModelForCTC, Wav2Vec2Processor

    from speechdistill.prune.io import PrunedHubertForCTC, is_pruned

    config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=False)
    if config.model_type == "whisper":
        cls = WhisperEncoderForCTC
    else:
        cls = PrunedHubertForCTC if is_pruned(config) else AutoModelForCTC
    model = cls.from_pretrained(
        str(model_dir), use_safetensors=True, trust_remote_code=False, dtype=torch.float32
    )
    processor = Wav2Vec2Processor.from_pretrained(str(model_dir), trust_remote_code=False)
    return model.to(device).eval(), processor


class CTCTranscriber:
    """Greedy (argmax) CTC transcription of 16 kHz waveforms."""

    def __init__(self, model, processor):
        self.model = model
        self.processor = processor

    @classmethod
    def from_pretrained(cls, model_dir: PathLike, *, device: str = "cpu") -> CTCTranscriber:
        """Load with :func:`load_ctc_model`."""
        return cls(*load_ctc_model(model_dir, device=device))

    @torch.inference_mode()
    def transcribe(self, audios: Sequence[np.ndarray]) -> list[str]:
        """One text per waveform."""
        batch = encoder_batch(audios, self.processor.feature_extractor)
        device = next(self.model.parameters()).device
        logits = self.model(**model_inputs(batch, device)).logits
        ids = logits.argmax(-1)
        # frames beyond each utterance's own length decode to nothing
        lengths = self.model._get_feat_extract_output_lengths(batch["num_samples"]).tolist()
        pad = self.processor.tokenizer.pad_token_id
        for b, n in enumerate(lengths):
            ids[b, n:] = pad
        # no skip_special_tokens: it drops the blanks before repeats are merged ("l<pad>l" → "l")
        texts = self.processor.batch_decode(ids.cpu().tolist())
        unk = self.processor.tokenizer.unk_token
        return [" ".join((t.replace(unk, "") if unk else t).split()) for t in texts]
