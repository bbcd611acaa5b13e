"""The pseudo-label stage without the real teacher: the RS-KD estimate, timestamp tokens
suppressed in a tiny random teacher's labels. With tiny.en: test_pseudo_label_tiny_en.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechdistill.cache import rskd_sample, utt_generator
from speechdistill.pseudo_label import HFLabeler, PseudoLabelConfig


def test_rskd_estimate_is_unbiased_and_reproducible():
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = torch.log(p).repeat(4000, 1)
    ids, counts, _offsets = rskd_sample(logits, 10, 1.0, utt_generator(0, "u"))
    freq = torch.zeros(4)
    freq.index_add_(0, ids.long(), counts.float())
    np.testing.assert_allclose((freq / freq.sum()).numpy(), p.numpy(), atol=0.01)
    again = rskd_sample(logits[:50], 10, 1.0, utt_generator(0, "u"))
    first = rskd_sample(logits[:50], 10, 1.0, utt_generator(0, "u"))
    assert all(torch.equal(a, b) for a, b in zip(again, first, strict=True))
    with pytest.raises(ValueError):
        rskd_sample(logits[:2], 0, 1.0, utt_generator(0, "u"))


def test_timestamp_tokens_are_suppressed_without_timestamps(tmp_path):
    """A teacher that would emit a timestamp token after <|notimestamps|> (here: every step)
    still gives a plain transcript; ``generate`` alone would take it for a segment boundary."""
    from speechdistill.testing import english_tokenizer, save_random_whisper

    model_dir = save_random_whisper(tmp_path / "ts", english_tokenizer(), multilingual=False,
                                    max_source_positions=1500)  # fmt: skip
    from speechdistill.teachers.whisper import load_teacher

    model, processor = load_teacher(model_dir)
    gen = model.generation_config
    stamp = gen.no_timestamps_token_id + 7
    with torch.no_grad():  # the final hidden state is a constant v whose best token is <|0.12|>
        v = torch.randn(model.config.d_model)
        model.model.decoder.layer_norm.weight.zero_()
        model.model.decoder.layer_norm.bias.copy_(v)
        model.model.decoder.embed_tokens.weight[stamp] = 10 * v
    rng = np.random.default_rng(0)
    audios = [rng.standard_normal(16000 * s).astype(np.float32) * 0.1 for s in (1, 2)]
    ml = HFLabeler(model, processor, PseudoLabelConfig(max_new_tokens=6))
    assert [t for t in ml.suppress_timestamps if t > gen.no_timestamps_token_id] == list(
        range(gen.no_timestamps_token_id + 1, model.config.vocab_size)
    )
    for lb in ml.label(["a", "b"], audios):
        assert lb.tokens and max(lb.tokens) <= gen.no_timestamps_token_id
    ts = HFLabeler(model, processor, PseudoLabelConfig(max_new_tokens=6, return_timestamps=True))
    (lb,) = ts.label(["a"], audios[:1])
    assert "<|0.12|>" in lb.text_ts  # with timestamps it is still emitted
