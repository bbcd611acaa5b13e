"""CTC models on speech encoders: character vocabulary, processor, greedy decoding of a data dir.

- :func:`build_vocab` makes the character vocabulary of a set of (normalised) transcripts in
  transformers' ``Wav2Vec2CTCTokenizer`` layout: ``<pad>`` (id 0, the CTC blank), ``<unk>``,
  ``|`` (the word delimiter that stands for spaces), then the characters in code-point order.
- :func:`make_processor` wraps it with a feature extractor in a ``Wav2Vec2Processor``; tokenising
  and decoding are transformers' (CTC collapsing of repeats and blanks included).
- :func:`decode_ctc_data_dir` transcribes every utterance of a Kaldi data dir by greedy argmax
  and writes what ``speechdistill decode`` writes: ``text``, ``utt2decode_time`` and
  ``decode.json`` (speed), so that ``speechdistill score`` and ``decode --merge`` apply unchanged.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from speechdistill.decode import DecodeSummary, transcribe_data_dir
from speechdistill.utils import PathLike

log = logging.getLogger(__name__)

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
    """A fine-tuned CTC model (eval mode, fp32) and its processor; safetensors only."""
    from transformers import AutoConfig, Wav2Vec2Processor

    config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=False)
    model = ctc_class(config.model_type).from_pretrained(
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
        return cls(*load_ctc_model(model_dir, device=device))

    @torch.inference_mode()
    def transcribe(self, audios: Sequence[np.ndarray]) -> list[str]:
        from speechdistill.train.waveform import pad_waveforms

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


@dataclass
class CTCDecodeConfig:
    """Options of ``speechdistill ctc-decode``."""

    batch_size: int = 16
    device: str = "cpu"
    skip_bad: bool = False


def decode_ctc_data_dir(
    model_dir: PathLike,
    data_dir: PathLike,
    out_dir: PathLike,
    config: CTCDecodeConfig | None = None,
    *,
    transcriber: CTCTranscriber | None = None,
) -> DecodeSummary:
    """Greedy CTC decoding of ``data_dir`` into ``out_dir/text`` (+ ``utt2decode_time``,
    ``decode.json``, ``bad_utts``), in length-sorted batches."""
    config = config or CTCDecodeConfig()
    return transcribe_data_dir(
        lambda: transcriber or CTCTranscriber.from_pretrained(model_dir, device=config.device),
        model_dir,
        data_dir,
        out_dir,
        batch_size=config.batch_size,
        skip_bad=config.skip_bad,
        config={**asdict(config), "decoding": "ctc_greedy"},
        desc="ctc-decode",
    )
