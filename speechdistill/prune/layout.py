"""Where the prunable units of a transformers speech encoder are, and how many parameters
depend on them.

Two encoders are supported, both as transformers builds them:

- :class:`~transformers.WhisperEncoder`: attention heads (``layers[i].self_attn``), FFN neurons
  (``layers[i].fc1`` / ``fc2``) and the output channels of ``conv1`` (masked after its GELU,
  folded into ``conv2``'s input). ``conv2``'s output channels are the residual width
  (``d_model``) and are not prunable without changing every layer, so they stay.
- :class:`~transformers.HubertModel` (HuBERT and DistilHuBERT students): attention heads
  (``encoder.layers[i].attention``), FFN neurons (``feed_forward.intermediate_dense`` /
  ``output_dense``) and the CNN feature extractor's output channels (masked after each conv
  layer's activation, folded into the next layer). A channel can only be removed exactly where
  nothing mixes channels before the mask: the CNN of ``feat_extract_norm="group"`` (HuBERT Base's;
  its group norm is per channel), not the per-frame layer-norm CNN of ``"layer"``; and the last
  conv layer only without the feature projection's layer norm (``feat_proj_layer_norm=False``).
  DPHuBERT removes those too, changing the normalisation; here they stay, so that the pruned model
  computes exactly what the masked one did.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ConvChain", "EncoderLayout"]


@dataclass
class ConvChain:
    """The CNN front end as a chain: ``convs[j]`` feeds ``convs[j + 1]``; the last one feeds a
    module with ``trailing`` parameters per input channel. ``norm_per_channel[j]`` counts the
    norm parameters per output channel of ``convs[j]``; ``gated`` lists the prunable ones."""

    convs: list[nn.Conv1d]
    norms: list[nn.Module | None]
    norm_per_channel: list[int]
    trailing: int
    trailing_module: nn.Module | None
    gated: list[int]


class EncoderLayout:
    """Access to the layers, attention, FFN and CNN of a Whisper encoder or HuBERT model."""

    def __init__(self, model: nn.Module):
        from transformers import HubertModel
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        if isinstance(model, WhisperEncoder):
            self.kind = "whisper"
            self.layers = list(model.layers)
            self._attn_name = "self_attn"
        elif isinstance(model, HubertModel):
            self.kind = "hubert"
            self.layers = list(model.encoder.layers)
            self._attn_name = "attention"
        else:
            raise ValueError(
                f"cannot prune a {type(model).__name__}: a transformers WhisperEncoder or "
                "HubertModel is needed"
            )
        self.model = model
        c = model.config
        if self.kind == "whisper":
            self.hidden_size, full_heads = c.d_model, c.encoder_attention_heads
        else:
            self.hidden_size, full_heads = c.hidden_size, c.num_attention_heads
        self.head_dim = self.hidden_size // full_heads

    # --- transformer layers
    def attention(self, i: int) -> nn.Module:
        return getattr(self.layers[i], self._attn_name)

    def set_attention(self, i: int, module: nn.Module) -> None:
        setattr(self.layers[i], self._attn_name, module)

    def ffn(self, i: int) -> tuple[nn.Linear, nn.Linear]:
        layer = self.layers[i]
        if self.kind == "whisper":
            return layer.fc1, layer.fc2
        return layer.feed_forward.intermediate_dense, layer.feed_forward.output_dense

    def num_heads(self, i: int) -> int:
        attn = self.attention(i)
        return getattr(attn, "num_heads", 0)

    def has_attention(self, i: int) -> bool:
        """Whether layer ``i`` still has an attention block (heads, or ``out_proj``'s bias);
        a block removed whole has neither."""
        return self.num_heads(i) > 0 or self.attention(i).out_proj.bias is not None

    def has_ffn(self, i: int) -> bool:
        """Whether layer ``i`` still has an FFN block (neurons, or the output linear's bias)."""
        fc_in, fc_out = self.ffn(i)
        return fc_in.out_features > 0 or fc_out.bias is not None

    def params_per_head(self, i: int) -> int:
        """q, k, v rows of one head (with their biases) and its out_proj columns (0 in a block
        without heads: there is none to count)."""
        attn = self.attention(i)
        if self.num_heads(i) == 0:
            return 0
        hd = self.head_dim
        n = 0
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj):
            n += hd * lin.in_features + (hd if lin.bias is not None else 0)
        return n + hd * attn.out_proj.out_features

    def params_per_neuron(self, i: int) -> int:
        """fc1's row (with its bias) and fc2's column of one FFN neuron."""
        fc_in, fc_out = self.ffn(i)
        return fc_in.in_features + (1 if fc_in.bias is not None else 0) + fc_out.out_features

    # --- CNN front end
    def conv_chain(self) -> ConvChain:
        m = self.model
        if self.kind == "whisper":
            return ConvChain(
                convs=[m.conv1, m.conv2],
                norms=[None, None],
                norm_per_channel=[0, 0],
                trailing=0,
                trailing_module=None,
                gated=[0],
            )
        c = m.config
        layers = list(m.feature_extractor.conv_layers)
        norms = [getattr(layer, "layer_norm", None) for layer in layers]
        per_channel = [_affine_params(n) for n in norms]
        proj = m.feature_projection
        ln = proj.layer_norm if c.feat_proj_layer_norm else None
        trailing = proj.projection.out_features + _affine_params(ln)
        gated: list[int] = []
        if c.feat_extract_norm == "group":
            last = len(layers) - (1 if c.feat_proj_layer_norm else 0)
            gated = [j for j in range(last) if norms[j] is None or _per_channel(norms[j])]
        return ConvChain(
            convs=[layer.conv for layer in layers],
            norms=norms,
            norm_per_channel=per_channel,
            trailing=trailing,
            trailing_module=proj.projection,
            gated=gated,
        )

    def conv_site(self, j: int) -> tuple[nn.Module, str]:
        """The module whose input (``"pre"``) or output (``"post"``) carries conv ``j``'s
        activated channels on dim 1."""
        if self.kind == "whisper":
            return self.model.conv2, "pre"
        return self.model.feature_extractor.conv_layers[j], "post"

    def conv_chain_params(self, counts: list[torch.Tensor | int]) -> torch.Tensor | int:
        """Parameters of the CNN chain (and the trailing module's input-dependent part) with
        ``counts[j]`` output channels in conv ``j``: consecutive layers' counts multiply."""
        chain = self.conv_chain()
        if any(conv.groups != 1 for conv in chain.convs):
            raise ValueError("grouped convolutions in the CNN front end are not supported")
        total: torch.Tensor | int = 0
        prev: torch.Tensor | int = chain.convs[0].in_channels
        for conv, per_ch, c in zip(chain.convs, chain.norm_per_channel, counts, strict=True):
            k = conv.kernel_size[0]
            total = total + c * prev * k + c * ((1 if conv.bias is not None else 0) + per_ch)
            prev = c
        return total + prev * chain.trailing


def _affine_params(norm: nn.Module | None) -> int:
    """A norm's parameters per channel (weight and bias where it has them)."""
    if norm is None:
        return 0
    channels = norm.num_channels if isinstance(norm, nn.GroupNorm) else norm.normalized_shape[0]
    return sum(p.numel() for p in norm.parameters(recurse=False)) // channels


def _per_channel(norm: nn.Module) -> bool:
    return isinstance(norm, nn.GroupNorm) and norm.num_groups == norm.num_channels
