"""The DistilHuBERT loss as the trainer uses it: L1 + λ·(−log σ(cos)) per predicted layer, summed,
masked on padded frames (which s3prl's version averages in)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from speechdistill.train.hubert_kd import DistilCollator
from speechdistill.train.losses import layerwise_distill_loss


def _padded_batch():
    """Two clips of 1.0 s and 0.45 s through the trainer's collator (HuBERT frames)."""
    from transformers import Wav2Vec2FeatureExtractor

    fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    collate = DistilCollator(fe, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))
    rng = np.random.default_rng(0)
    items = [
        {"utt": f"u{i}", "audio": rng.standard_normal(n).astype(np.float32)}
        for i, n in enumerate((16000, 7200))
    ]
    return collate(items)


def test_identical_features_give_zero_l1_and_log_sigmoid_of_one():
    g = torch.Generator().manual_seed(0)
    h = [torch.randn(2, 7, 5, generator=g) for _ in range(3)]
    out = layerwise_distill_loss(h, [x.clone() for x in h])
    assert out.l1.tolist() == [0.0, 0.0, 0.0]
    cos_term = -math.log(1 / (1 + math.exp(-1.0)))  # −log σ(cos = 1) = log(1 + e^−1) ≈ 0.3133
    assert out.cos.tolist() == pytest.approx([cos_term] * 3, abs=1e-6)
    assert out.loss.item() == pytest.approx(3 * cos_term, abs=1e-5)  # summed over the layers
    half = layerwise_distill_loss(h, [x.clone() for x in h], lambda_cos=0.5)
    assert half.loss.item() == pytest.approx(1.5 * cos_term, abs=1e-5)
    # a hand-checked pair: ĥ = (1, 0), h = (0, 1): L1 = 1, cos = 0 → −log σ(0) = log 2
    one = layerwise_distill_loss([torch.tensor([[[1.0, 0.0]]])], [torch.tensor([[[0.0, 1.0]]])])
    assert one.l1.item() == pytest.approx(1.0) and one.cos.item() == pytest.approx(math.log(2))


def test_padded_frames_do_not_count():
    batch = _padded_batch()
    mask = batch["frame_mask"]
    assert mask.shape == (2, 49) and mask.sum(-1).tolist() == [49, 22]
    g = torch.Generator().manual_seed(1)
    preds = [torch.randn(2, 49, 6, generator=g, requires_grad=True) for _ in range(2)]
    targets = [torch.randn(2, 49, 6, generator=g) for _ in range(2)]
    base = layerwise_distill_loss(preds, targets, mask)
    base.loss.backward()
    for p in preds:
        assert torch.count_nonzero(p.grad[~mask]) == 0  # no gradient from padding
        assert torch.count_nonzero(p.grad[mask]) > 0

    def s3prl_style(ps, ts):  # the same loss averaged over every frame, padding included
        p, t = torch.stack(ps, 1), torch.stack(ts, 1)
        return (p - t).abs().mean() + (-F.logsigmoid(F.cosine_similarity(p, t, dim=-1))).mean()

    unmasked = s3prl_style([p.detach() for p in preds], targets)
    dirty_p = [p.detach().clone() for p in preds]
    dirty_t = [t.clone() for t in targets]
    for x in dirty_p + dirty_t:
        x[1, 22:] = torch.randn(27, 6, generator=g) * 50.0
    dirty = layerwise_distill_loss(dirty_p, dirty_t, mask)
    assert dirty.loss.item() == pytest.approx(base.loss.item(), abs=1e-6)
    assert s3prl_style(dirty_p, dirty_t).item() != pytest.approx(unmasked.item(), rel=1e-3)
    # the masked loss equals the loss over the valid frames alone
    flat = layerwise_distill_loss(
        [p.detach()[mask][None] for p in preds], [t[mask][None] for t in targets]
    )
    assert flat.loss.item() == pytest.approx(base.loss.item(), abs=1e-6)


def test_utterance_target_normalisation_ignores_padding():
    from speechdistill.train.config import HubertTrainConfig
    from speechdistill.train.hubert_kd import normalize_targets

    batch = _padded_batch()
    mask = batch["frame_mask"]
    g = torch.Generator().manual_seed(3)
    # a large shared offset (as in Whisper's states) plus a little content
    targets = [50.0 + 0.1 * torch.randn(2, 49, 6, generator=g) for _ in range(2)]
    assert normalize_targets(targets, mask, "none") is targets
    norm = normalize_targets(targets, mask, "utterance")
    for x in norm:
        for b, n in enumerate(mask.sum(-1).tolist()):
            valid = x[b, :n]
            assert torch.allclose(valid.mean(0), torch.zeros(6), atol=1e-4)
            assert torch.allclose(valid.std(0, unbiased=False), torch.ones(6), atol=1e-2)
            assert torch.count_nonzero(x[b, n:]) == 0
    dirty = [t.clone() for t in targets]
    for x in dirty:
        x[1, 22:] = 1e6
    again = normalize_targets(dirty, mask, "utterance")
    assert all(torch.equal(a, b) for a, b in zip(again, norm, strict=True))
    with pytest.raises(ValueError, match="target_norm"):
        HubertTrainConfig(target_norm="batch")
