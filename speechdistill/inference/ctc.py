"""CTC models on speech encoders (HuBERT, wav2vec 2.0, WavLM, …): character vocabulary,
processor, loading, and greedy (best-path) transcription.

- :func:`build_vocab` makes the character vocabulary of a set of (normalised) transcripts in
  transformers' ``Wav2Vec2CTCTokenizer`` layout: ``<pad>`` (id 0, the CTC blank), ``<unk>``,
  ``|`` (the word delimiter that stands for spaces), then the characters in code-point order.
- :func:`make_processor` wraps it with a feature extractor in a ``Wav2Vec2Processor``; tokenising
  and decoding are transformers' (CTC collapsing of repeats and blanks included).
- :class:`CTCTranscriber` decodes by argmax, each utterance over its own frames only; ``<unk>``
  is dropped from the text.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from speechdistill.batching import pad_waveforms
from speechdistill.utils import PathLike

__all__ = [
    "CTC_CLASSES",
    "PAD",
    "UNK",
    "WORD_DELIMITER",
    "CTCTranscriber",
    "build_vocab",
    "ctc_class",
    "load_ctc_model",
    "make_processor",
]

PAD, UNK, WORD_DELIMITER = "<pad>", "<unk>", "|"
#: The CTC head class of each encoder type (transformers ``model_type``).
CTC_CLASSES = {"hubert": "HubertForCTC", "wav2vec2": "Wav2Vec2ForCTC", "wavlm": "WavLMForCTC"}


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
    return getattr(transformers, CTC_CLASSES[model_type])


def load_ctc_model(model_dir: PathLike, *, device: str = "cpu"):
    """A CTC model of any ``…ForCTC`` architecture (eval mode, float32) and its processor;
    safetensors only. A pruned HuBERT (a ``pruning`` record in its config) loads as
    :class:`~speechdistill.prune.io.PrunedHubertForCTC`."""
    from transformers import AutoConfig, AutoModelForCTC, Wav2Vec2Processor

    from speechdistill.prune.io import PrunedHubertForCTC, is_pruned

    config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=False)
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
        fe = self.processor.feature_extractor
        batch = pad_waveforms(audios, fe)
        device = next(self.model.parameters()).device
        mask = batch["attention_mask"].to(device) if fe.return_attention_mask else None
        logits = self.model(batch["input_values"].to(device), attention_mask=mask).logits
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
