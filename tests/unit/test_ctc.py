"""CTC without training: the vocabulary and tokenizer, greedy decoding (collapsing of repeats and
blanks), the fine-tuning config. Fine-tuning on mini_en speech: integration/test_ctc_mini_en.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speechdistill.inference.ctc import CTCTranscriber, build_vocab, make_processor
from speechdistill.train.config import CTCTrainConfig


def _processor(texts):
    from transformers import Wav2Vec2FeatureExtractor

    fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    return make_processor(build_vocab(texts), fe)


def test_vocabulary_and_tokenizer():
    vocab = build_vocab(["hello world", "it's 20"])
    assert list(vocab)[:3] == ["<pad>", "<unk>", "|"] and vocab["<pad>"] == 0
    assert list(vocab)[3:] == ["'", "0", "2", "d", "e", "h", "i", "l", "o", "r", "s", "t", "w"]
    proc = _processor(["hello world", "it's 20"])
    ids = proc.tokenizer("hello world").input_ids
    assert ids[5] == vocab["|"] and proc.tokenizer.decode(ids, group_tokens=False) == "hello world"
    assert proc.tokenizer("hex").input_ids[-1] == vocab["<unk>"]  # unseen characters
    with pytest.raises(ValueError, match="reserved"):
        build_vocab(["a|b"])


def test_greedy_decoding_collapses_repeats_and_blanks():
    proc = _processor(["hello world"])
    v = proc.tokenizer.get_vocab()
    frames = [
        "h",
        "h",
        "<pad>",
        "e",
        "l",
        "<pad>",
        "l",
        "l",
        "o",
        "|",
        "|",
        "w",
        "<unk>",
        "o",
        "r",
        "l",
        "d",
        "<pad>",
        "<pad>",
        "<pad>",
    ]

    class Stub(torch.nn.Module):  # logits that put all mass on the frames above
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_values, attention_mask=None):
            logits = torch.full((input_values.shape[0], len(frames), len(v)), -10.0)
            for t, tok in enumerate(frames):
                logits[:, t, v[tok]] = 10.0
            return type("Out", (), {"logits": logits})

        def _get_feat_extract_output_lengths(self, n):
            return torch.div(n, 100, rounding_mode="floor")

    import numpy as np

    texts = CTCTranscriber(Stub(), proc).transcribe(
        [np.zeros(2000, np.float32), np.zeros(900, np.float32)]
    )
    assert texts[0] == "hello world"  # "l <pad> l" keeps both l's; <unk> is dropped
    assert texts[1] == "hello"  # frames beyond the clip's own 9 are ignored


def test_config_checks(tmp_path: Path):
    with pytest.raises(ValueError, match="normaliser"):
        CTCTrainConfig(normalizer="klingon")
    with pytest.raises(ValueError, match="select_metric"):
        CTCTrainConfig(select_metric="ser")
    path = tmp_path / "ctc.yaml"
    path.write_text("max_steps: 5\nfrom_scratch: true\n")
    cfg = CTCTrainConfig.from_sources(path, {"lr": 0.01})
    assert (cfg.max_steps, cfg.from_scratch, cfg.lr) == (5, True, 0.01)
