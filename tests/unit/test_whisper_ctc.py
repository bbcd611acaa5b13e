"""CTC on a Whisper encoder (speechdistill.inference.ctc): clip-length input, the batch a CTC
model reads, and CTC fine-tuning of a pruned tiny.en-shaped encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hubert_helpers import noise_data_dir
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from speechdistill.inference.ctc import encoder_batch, whisper_clip_input


def _encoder(positions: int = 1500, seed: int = 0) -> WhisperEncoder:
    torch.manual_seed(seed)
    config = WhisperConfig(d_model=64, encoder_layers=2, encoder_attention_heads=4,
                           encoder_ffn_dim=128, num_mel_bins=80,
                           max_source_positions=positions)  # fmt: skip
    return WhisperEncoder(config).eval()


@torch.inference_mode()
def test_clip_input_is_an_encoder_whose_window_is_the_clip():
    enc = _encoder()
    feats = torch.randn(2, 80, 2 * 37)
    with whisper_clip_input(enc, 37):
        short = enc(feats).last_hidden_state
    # the same weights in an encoder built for a 37-frame window (the first 37 positions)
    ref = _encoder(37)
    state = enc.state_dict()
    state["embed_positions.weight"] = state["embed_positions.weight"][:37]
    ref.load_state_dict(state)
    torch.testing.assert_close(short, ref(feats).last_hidden_state)
    # the window is back afterwards: a full window is read, a short one refused
    assert enc(torch.randn(1, 80, 3000)).last_hidden_state.shape == (1, 1500, 64)
    with pytest.raises(ValueError, match="3000"):
        enc(feats)
    with pytest.raises(ValueError, match="1 to 1500 frames"), whisper_clip_input(enc, 1501):
        pass


def test_encoder_batch_cuts_the_window_to_the_longest_clip():
    fe = WhisperFeatureExtractor()
    rng = np.random.default_rng(0)
    audios = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (8000, 16321)]
    batch = encoder_batch(audios, fe)
    assert batch["num_frames"].tolist() == [25, 52]  # ceil(n / 320)
    assert batch["input_features"].shape == (2, 80, 104)
    window = fe(audios, sampling_rate=16000, return_tensors="pt").input_features
    torch.testing.assert_close(batch["input_features"], window[..., :104])


def test_ctc_finetuning_of_a_pruned_whisper_encoder(tmp_path):
    from prune_helpers import scramble_gates

    from speechdistill.inference import load_transcriber
    from speechdistill.inference.ctc import CTCTranscriber, load_ctc_model
    from speechdistill.prune.gates import PruningGates
    from speechdistill.prune.io import save_pruned
    from speechdistill.prune.remove import prune_model
    from speechdistill.train.config import CTCTrainConfig
    from speechdistill.train.ctc_finetune import ctc_finetune

    torch.set_num_threads(1)
    model = _encoder()
    gates = PruningGates(model, ("head", "interm"))
    scramble_gates(gates)  # layer 1 loses its heads: layers differ, a `pruning` record
    gates.eval()
    prune_model(model, gates)
    pruned = save_pruned(model, tmp_path / "pruned")
    WhisperFeatureExtractor().save_pretrained(pruned)
    assert "pruning" in json.loads((pruned / "config.json").read_text())
    train = noise_data_dir(tmp_path / "train", 8)
    dev = noise_data_dir(tmp_path / "dev", 2, seed=1, prefix="dev")
    config = CTCTrainConfig(max_steps=3, batch_size=4, eval_steps=3, save_steps=3,
                            eval_batch_size=2, warmup_steps=0, mask_time_prob=0.0,
                            freeze_encoder_steps=1)  # fmt: skip
    out = tmp_path / "ctc"
    summary = ctc_finetune(pruned, train, dev, out, config)
    assert summary["best_dev_cer"] is not None
    ctc, processor = load_ctc_model(out)
    assert type(ctc).__name__ == "WhisperEncoderForCTC"
    n_params = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in ctc.encoder.parameters()) == n_params
    # loaded (the frozen convolutions are the pruned model's), then trained (layer 0 kept heads,
    # layer 1 FFN neurons), the positions fixed
    before, after = model.state_dict(), ctc.encoder.state_dict()
    for name in ("conv1.weight", "conv2.bias", "embed_positions.weight"):
        assert torch.equal(before[name], after[name]), name
    for name in ("layers.0.self_attn.q_proj.weight", "layers.1.fc1.weight", "layer_norm.weight"):
        assert before[name].numel() and not torch.equal(before[name], after[name]), name
    audio = (0.1 * np.random.default_rng(2).standard_normal(12000)).astype(np.float32)
    text = CTCTranscriber(ctc, processor).transcribe([audio])[0]
    assert load_transcriber(out).transcribe([audio])[0] == text
