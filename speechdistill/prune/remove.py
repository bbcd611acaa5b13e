"""Physical removal of gated units: the pruned model computes what the masked model did.

Units whose deterministic mask is 0 are removed; the remaining mask values are folded into the
weights that read the masked activations (``out_proj``'s columns for heads, ``fc2``'s for FFN
neurons, the next conv's or the feature projection's input channels for CNN channels). The
modules stay the transformers ones, resized in place; an attention block left without heads
becomes :class:`EmptyAttention` (its output is ``out_proj``'s bias, what the masked block gave),
an FFN without neurons keeps zero-width linears (output: ``fc2``'s bias). A block whose block
gate (``attlayer`` / ``ffnlayer``) is 0 loses that bias too: its output is 0, the layer is its
residual connection there; a block gate's value in (0, 1) scales ``out_proj`` / ``fc2``.

The resulting per-layer sizes are recorded in ``model.config.pruning`` (``num_heads``,
``ffn_dim`` per layer, ``conv_channels`` of Whisper's ``conv1``, and the layers whose
attention / FFN block is removed whole, ``no_attention`` / ``no_ffn``), which
:func:`apply_structure` replays on a freshly built model (what :mod:`.io` does on load). Where
every layer keeps all its heads and the same FFN size (and Whisper's ``conv1`` all its channels)
the config is a plain transformers one instead: the new sizes in ``encoder_ffn_dim`` /
``intermediate_size`` (and HuBERT's ``conv_dim``), no ``pruning`` record.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from speechdistill.prune.gates import (
    PruningGates,
    attlayer_key,
    conv_key,
    ffnlayer_key,
    head_key,
    interm_key,
)
from speechdistill.prune.layout import EncoderLayout

log = logging.getLogger(__name__)

__all__ = ["PRUNING_KEY", "EmptyAttention", "apply_structure", "prune_model"]

PRUNING_KEY = "pruning"


class EmptyAttention(nn.Module):
    """An attention block without heads: its output is ``out_proj``'s bias (zero-width
    ``out_proj``, kept so the state dict keeps its keys)."""

    def __init__(self, out_proj: nn.Linear):
        super().__init__()
        self.out_proj = out_proj
        self.num_heads = 0

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any):
        return self.out_proj(hidden_states[..., :0]), None


def _select_out(module: nn.Module, idx: torch.Tensor) -> None:
    """Keep output units ``idx`` of a Linear / Conv1d (weight rows, bias)."""
    module.weight = nn.Parameter(module.weight.data[idx].clone())
    if module.bias is not None:
        module.bias = nn.Parameter(module.bias.data[idx].clone())
    if isinstance(module, nn.Linear):
        module.out_features = len(idx)
    else:
        module.out_channels = len(idx)


def _select_in(module: nn.Module, idx: torch.Tensor, scale: torch.Tensor | None = None) -> None:
    """Keep input units ``idx`` of a Linear / Conv1d, their columns times ``scale``."""
    w = module.weight.data[:, idx]
    if scale is not None:
        shape = [1, -1] + [1] * (w.dim() - 2)
        w = w * scale.to(w.dtype).view(shape)
    module.weight = nn.Parameter(w.clone())
    if isinstance(module, nn.Linear):
        module.in_features = len(idx)
    else:
        module.in_channels = len(idx)


def _select_norm(norm: nn.GroupNorm, idx: torch.Tensor) -> None:
    """Keep channels ``idx`` of a per-channel GroupNorm."""
    norm.weight = nn.Parameter(norm.weight.data[idx].clone())
    norm.bias = nn.Parameter(norm.bias.data[idx].clone())
    norm.num_groups = norm.num_channels = len(idx)


def _scale_out(module: nn.Linear, value: float) -> None:
    """Multiply a Linear's output by ``value`` (weight and bias); at 0 it is removed: zero
    rows and no bias."""
    if value == 0.0:
        module.weight = nn.Parameter(module.weight.data[:, :0].clone())
        module.in_features = 0
        module.bias = None
        return
    module.weight = nn.Parameter(module.weight.data * value)
    if module.bias is not None:
        module.bias = nn.Parameter(module.bias.data * value)


def _keep_heads(layout: EncoderLayout, i: int, heads: torch.Tensor, scale=None) -> None:
    attn = layout.attention(i)
    hd = layout.head_dim
    rows = (heads[:, None] * hd + torch.arange(hd, device=heads.device)).flatten()
    for lin in (attn.q_proj, attn.k_proj, attn.v_proj):
        _select_out(lin, rows)
    _select_in(attn.out_proj, rows, None if scale is None else scale.repeat_interleave(hd))
    if len(heads) == 0:
        layout.set_attention(i, EmptyAttention(attn.out_proj))
    else:
        attn.num_heads = len(heads)


def _keep_neurons(layout: EncoderLayout, i: int, idx: torch.Tensor, scale=None) -> None:
    fc_in, fc_out = layout.ffn(i)
    _select_out(fc_in, idx)
    _select_in(fc_out, idx, scale)


def _keep_channels(layout: EncoderLayout, j: int, idx: torch.Tensor, scale=None) -> None:
    chain = layout.conv_chain()
    _select_out(chain.convs[j], idx)
    if chain.norms[j] is not None:
        _select_norm(chain.norms[j], idx)
    nxt = chain.convs[j + 1] if j + 1 < len(chain.convs) else chain.trailing_module
    _select_in(nxt, idx, scale)
    if layout.kind == "hubert":
        conv_layer = layout.model.feature_extractor.conv_layers[j]
        conv_layer.out_conv_dim = len(idx)
        if j + 1 < len(chain.convs):
            layout.model.feature_extractor.conv_layers[j + 1].in_conv_dim = len(idx)


def _kept(keep, masks, key: str, n: int, block_gate: float, module: nn.Module):
    """The units of a block that stay (all ``n`` without a gate, none when its block gate is 0)
    and their mask values (None without a gate)."""
    idx = keep[key] if key in keep else torch.arange(n, device=module.weight.device)
    if block_gate == 0.0:
        idx = idx[:0]
    return idx, masks[key][idx] if key in masks else None


@torch.no_grad()
def prune_model(model: nn.Module, gates: PruningGates) -> dict[str, Any]:
    """Remove the units whose deterministic mask is 0, fold the other mask values into the
    weights and detach the gates' hooks; ``model`` is changed in place (its config too).
    Returns the new structure (the ``pruning`` record, also where the config is plain)."""
    layout = EncoderLayout(model)
    masks = gates.deterministic_masks()
    keep = {key: mask.nonzero().flatten() for key, mask in masks.items()}
    for key, idx in keep.items():
        if key.startswith("conv_") and len(idx) == 0:
            raise ValueError(
                f"conv layer {key.split('_')[1]} would lose all its channels: "
                "train with less sparsity"
            )
    gates.remove_hooks()
    for j in range(len(layout.conv_chain().convs)):
        if conv_key(j) in keep:
            idx = keep[conv_key(j)]
            _keep_channels(layout, j, idx, masks[conv_key(j)][idx])
    for i in range(len(layout.layers)):
        attn_gate = float(masks[attlayer_key(i)][0]) if attlayer_key(i) in masks else 1.0
        ffn_gate = float(masks[ffnlayer_key(i)][0]) if ffnlayer_key(i) in masks else 1.0
        out_proj, (fc_in, fc_out) = layout.attention(i).out_proj, layout.ffn(i)
        if head_key(i) in keep or (attn_gate == 0.0 and layout.num_heads(i) > 0):
            n = layout.num_heads(i)
            _keep_heads(layout, i, *_kept(keep, masks, head_key(i), n, attn_gate, out_proj))
        if attn_gate != 1.0:
            _scale_out(layout.attention(i).out_proj, attn_gate)
        if interm_key(i) in keep or ffn_gate == 0.0:
            n = fc_in.out_features
            _keep_neurons(layout, i, *_kept(keep, masks, interm_key(i), n, ffn_gate, fc_in))
        if ffn_gate != 1.0:
            _scale_out(fc_out, ffn_gate)
    structure = _structure(layout)
    _record(layout, structure)
    log.info(
        "pruned %s: heads %s, FFN %s, conv %s, attention blocks removed %s, FFN blocks removed %s",
        layout.kind,
        structure["num_heads"],
        structure["ffn_dim"],
        structure["conv_channels"],
        structure["no_attention"],
        structure["no_ffn"],
    )
    return structure


def _structure(layout: EncoderLayout) -> dict[str, Any]:
    chain = layout.conv_chain()
    return {
        "num_heads": [layout.num_heads(i) for i in range(len(layout.layers))],
        "ffn_dim": [layout.ffn(i)[0].out_features for i in range(len(layout.layers))],
        "conv_channels": [conv.out_channels for conv in chain.convs],
        "head_dim": layout.head_dim,
        "no_attention": [i for i in range(len(layout.layers)) if not layout.has_attention(i)],
        "no_ffn": [i for i in range(len(layout.layers)) if not layout.has_ffn(i)],
    }


def _record(layout: EncoderLayout, structure: dict[str, Any]) -> None:
    """Write the structure into the model's config: plain sizes where transformers can build it,
    else the ``pruning`` record."""
    config = layout.model.config
    ffn_name = "encoder_ffn_dim" if layout.kind == "whisper" else "intermediate_size"
    heads_name = "encoder_attention_heads" if layout.kind == "whisper" else "num_attention_heads"
    if layout.kind == "hubert":
        config.conv_dim = list(structure["conv_channels"])
    full_heads = getattr(config, heads_name)
    plain = (
        all(h == full_heads for h in structure["num_heads"])
        and len(set(structure["ffn_dim"])) == 1
        and not structure["no_attention"]
        and not structure["no_ffn"]
    )
    if layout.kind == "whisper":
        plain = plain and structure["conv_channels"][0] == layout.hidden_size
    if plain:
        setattr(config, ffn_name, structure["ffn_dim"][0])
        if hasattr(config, PRUNING_KEY):
            delattr(config, PRUNING_KEY)
    else:
        record = {k: structure[k] for k in ("num_heads", "ffn_dim", "head_dim")}
        record.update({k: structure[k] for k in ("no_attention", "no_ffn") if structure[k]})
        if layout.kind == "whisper":
            record["conv_channels"] = structure["conv_channels"][:1]
        setattr(config, PRUNING_KEY, record)


def apply_structure(model: nn.Module, record: dict[str, Any]) -> None:
    """Resize a freshly built model to a ``pruning`` record (the weights are then loaded)."""
    layout = EncoderLayout(model)
    n = len(layout.layers)
    heads, ffn = record.get("num_heads", []), record.get("ffn_dim", [])
    if len(heads) != n or len(ffn) != n:
        raise ValueError(
            f"the pruning record lists {len(heads)} head counts and {len(ffn)} FFN sizes "
            f"for {n} layers"
        )
    if record.get("head_dim", layout.head_dim) != layout.head_dim:
        raise ValueError(
            f"the pruning record's head_dim {record['head_dim']} is not the config's "
            f"{layout.head_dim}"
        )
    for i in range(n):
        full_heads, full_ffn = layout.num_heads(i), layout.ffn(i)[0].out_features
        if not (0 <= int(heads[i]) <= full_heads and 0 <= int(ffn[i]) <= full_ffn):
            raise ValueError(
                f"the pruning record gives layer {i} {heads[i]} heads and {ffn[i]} FFN neurons; "
                f"its config has {full_heads} and {full_ffn}"
            )
    removed = {}
    for key, sizes, what in (("no_attention", heads, "heads"), ("no_ffn", ffn, "FFN neurons")):
        removed[key] = [int(i) for i in record.get(key, [])]
        for i in removed[key]:
            if not 0 <= i < n or int(sizes[i]) != 0:
                raise ValueError(
                    f"the pruning record removes layer {i}'s whole block in {key} but "
                    f"gives it {sizes[i] if 0 <= i < n else '?'} {what}"
                )
    with torch.no_grad():
        if layout.kind == "whisper" and "conv_channels" in record:
            (c,) = record["conv_channels"]
            if not 0 < int(c) <= layout.model.conv1.out_channels:
                raise ValueError(f"the pruning record gives conv1 {c} channels")
            device = layout.model.conv1.weight.device
            _keep_channels(layout, 0, torch.arange(c, device=device))
        for i in range(n):
            device = layout.attention(i).out_proj.weight.device
            _keep_heads(layout, i, torch.arange(int(heads[i]), device=device))
            _keep_neurons(layout, i, torch.arange(int(ffn[i]), device=device))
            if i in removed["no_attention"]:
                _scale_out(layout.attention(i).out_proj, 0.0)
            if i in removed["no_ffn"]:
                _scale_out(layout.ffn(i)[1], 0.0)
    model.config.pruning = dict(record)
