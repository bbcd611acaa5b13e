"""Tiny random encoders for the pruning tests: a Whisper encoder and HuBERT models with every
tensor random (biases and norms too)."""

from __future__ import annotations

import torch


def _randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return model.eval()


def tiny_whisper_encoder(seed: int = 0):
    """2 layers, width 64, 4 heads, FFN 128, 80 mel bins, 50 output frames."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig(
        d_model=64,
        encoder_layers=2,
        encoder_attention_heads=4,
        encoder_ffn_dim=128,
        num_mel_bins=80,
        max_source_positions=50,
    )
    return _randomise(WhisperEncoder(config), seed)


def whisper_input(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 80, 100, generator=torch.Generator().manual_seed(seed))


def tiny_hubert(seed: int = 0, **overrides):
    """2 layers, width 32, 2 heads, FFN 48, a 7-layer CNN of 16 channels (group norm)."""
    from transformers import HubertConfig, HubertModel

    config = HubertConfig(
        **{
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 48,
            "conv_dim": (16,) * 7,
            "num_conv_pos_embeddings": 16,
            "num_conv_pos_embedding_groups": 2,
            "feat_extract_norm": "group",
            "feat_proj_layer_norm": False,
            **overrides,
        }
    )
    return _randomise(HubertModel(config), seed)


def hubert_input(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 4000, generator=torch.Generator().manual_seed(seed))


def scramble_gates(gates, seed: int = 0) -> None:
    """Random ``log_alpha`` (some units dropped, the others kept with mask values in (0, 1));
    layer 1 loses every head and layer 0 every FFN neuron."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for gate in gates.gates.values():
            gate.log_alpha.copy_(torch.randn(gate.n, generator=g) * 3)
        for key in ("layer_1_head", "layer_0_interm"):
            if key in gates.gates:
                gates.gates[key].log_alpha.fill_(-10.0)
