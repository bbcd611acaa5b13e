"""Hard-Concrete gates on a Whisper encoder's or HuBERT model's prunable units, applied with
forward hooks (the transformers modules are used as they are), and the expected parameter count
as a differentiable function of the gates.

Units (DPHuBERT's names; its released setting is ``conv,head,interm``):

- ``head``: one gate per attention head, multiplying the head's output before ``out_proj``;
- ``interm``: one gate per FFN intermediate neuron, after the activation (before ``fc2``);
- ``conv``: one gate per CNN output channel, after the activation (see :mod:`.layout` for which
  conv layers can have them);
- ``attlayer`` / ``ffnlayer``: one gate per layer on the whole attention / FFN block, multiplying
  its output (``out_proj``'s / ``fc2``'s, bias included): at 0 the block is removed and the
  layer is its residual connection there.

The masks follow the model's mode: sampled while the model is in training mode, the
deterministic mask (:meth:`HardConcrete.deterministic_mask`) in eval mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from speechdistill.prune.hardconcrete import HardConcrete
from speechdistill.prune.layout import EncoderLayout

__all__ = [
    "DEFAULT_UNITS",
    "INIT_MEAN",
    "UNIT_KINDS",
    "PruningGates",
    "calibrate_sparsity",
    "expected_params",
]

UNIT_KINDS = ("conv", "head", "interm", "attlayer", "ffnlayer")
#: DPHuBERT's released setting.
DEFAULT_UNITS = ("conv", "head", "interm")
#: DPHuBERT's initial ``init_mean`` per unit kind (small: the gate starts open).
INIT_MEAN = {"conv": 0.01, "head": 0.01, "interm": 0.5, "attlayer": 0.01, "ffnlayer": 0.01}


def conv_key(j: int) -> str:
    return f"conv_{j}"


def head_key(i: int) -> str:
    return f"layer_{i}_head"


def interm_key(i: int) -> str:
    return f"layer_{i}_interm"


def attlayer_key(i: int) -> str:
    return f"layer_{i}_attlayer"


def ffnlayer_key(i: int) -> str:
    return f"layer_{i}_ffnlayer"


class PruningGates(nn.Module):
    """The gates of one model, keyed ``conv_<j>``, ``layer_<i>_head``, ``layer_<i>_interm``,
    ``layer_<i>_attlayer``, ``layer_<i>_ffnlayer`` (a block already removed gets no gate).

    ``PruningGates(model, units)`` builds the gates and hooks them into ``model``; train their
    ``log_alpha`` with the model (DPHuBERT: a separate learning rate, no weight decay) and add
    :func:`~speechdistill.prune.sparsity.sparsity_loss` of :meth:`expected_sparsity`.
    ``remove_hooks()`` detaches them (``prune_model`` does).
    """

    def __init__(self, model: nn.Module, units: Iterable[str] = DEFAULT_UNITS):
        super().__init__()
        units = tuple(units)
        bad = [u for u in units if u not in UNIT_KINDS]
        if bad:
            raise ValueError(f"unknown prunable unit {bad[0]!r} (known: {', '.join(UNIT_KINDS)})")
        layout = EncoderLayout(model)
        self.units = units
        self.kind = layout.kind
        self.gates = nn.ModuleDict()
        if "conv" in units:
            chain = layout.conv_chain()
            if not chain.gated:
                raise ValueError(
                    "this model's CNN has no channel that can be removed exactly (a HuBERT CNN "
                    "with feat_extract_norm='layer'): prune heads and FFN neurons only "
                    "(units head,interm)"
                )
            for j in chain.gated:
                self.gates[conv_key(j)] = HardConcrete(
                    chain.convs[j].out_channels, INIT_MEAN["conv"]
                )
        for i in range(len(layout.layers)):
            if "head" in units and layout.num_heads(i) > 0:
                self.gates[head_key(i)] = HardConcrete(layout.num_heads(i), INIT_MEAN["head"])
            if "interm" in units and layout.ffn(i)[0].out_features > 0:
                self.gates[interm_key(i)] = HardConcrete(
                    layout.ffn(i)[0].out_features, INIT_MEAN["interm"]
                )
            if "attlayer" in units and layout.has_attention(i):
                self.gates[attlayer_key(i)] = HardConcrete(1, INIT_MEAN["attlayer"])
            if "ffnlayer" in units and layout.has_ffn(i):
                self.gates[ffnlayer_key(i)] = HardConcrete(1, INIT_MEAN["ffnlayer"])
        self.original_params = sum(p.numel() for p in model.parameters())
        self._handles: list = []
        self._attach(layout)

    def _attach(self, layout: EncoderLayout) -> None:
        for key, gate in self.gates.items():
            if key.startswith("conv_"):
                module, where = layout.conv_site(int(key.split("_")[1]))
                if where == "pre":
                    self._handles.append(module.register_forward_pre_hook(_pre_hook(gate, 1)))
                else:
                    self._handles.append(module.register_forward_hook(_post_hook(gate, 1)))
            elif key.endswith("_head"):
                attn = layout.attention(int(key.split("_")[1]))
                hook = _head_hook(gate, layout.head_dim)
                self._handles.append(attn.out_proj.register_forward_pre_hook(hook))
            elif key.endswith("_attlayer"):
                out_proj = layout.attention(int(key.split("_")[1])).out_proj
                self._handles.append(out_proj.register_forward_hook(_post_hook(gate, -1)))
            elif key.endswith("_ffnlayer"):
                fc_out = layout.ffn(int(key.split("_")[1]))[1]
                self._handles.append(fc_out.register_forward_hook(_post_hook(gate, -1)))
            else:
                fc_out = layout.ffn(int(key.split("_")[1]))[1]
                self._handles.append(fc_out.register_forward_pre_hook(_pre_hook(gate, -1)))

    def remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def l0_norms(self) -> dict[str, torch.Tensor]:
        """The expected number of kept units per gate (differentiable)."""
        return {k: g.l0_norm() for k, g in self.gates.items()}

    def deterministic_masks(self) -> dict[str, torch.Tensor]:
        return {k: g.deterministic_mask() for k, g in self.gates.items()}

    def kept_counts(self) -> dict[str, int]:
        """Units the deterministic masks keep, per gate."""
        return {k: int((m != 0).sum()) for k, m in self.deterministic_masks().items()}

    def set_count_offset(self, offset: float) -> None:
        """Every gate's ``count_offset`` (see :meth:`HardConcrete.deterministic_mask`)."""
        for gate in self.gates.values():
            gate.count_offset = float(offset)


def _mask_like(gate: HardConcrete, x: torch.Tensor, training: bool) -> torch.Tensor:
    mask = gate.sample() if training else gate.deterministic_mask()
    return mask.to(dtype=x.dtype, device=x.device)


def _pre_hook(gate: HardConcrete, dim: int):
    def hook(module, args):
        x = args[0]
        mask = _mask_like(gate, x, module.training)
        shape = [1] * x.dim()
        shape[dim] = -1
        return (x * mask.view(shape), *args[1:])

    return hook


def _post_hook(gate: HardConcrete, dim: int):
    def hook(module, args, out):
        mask = _mask_like(gate, out, module.training)
        shape = [1] * out.dim()
        shape[dim] = -1
        return out * mask.view(shape)

    return hook


def _head_hook(gate: HardConcrete, head_dim: int):
    def hook(module, args):
        x = args[0]
        mask = _mask_like(gate, x, module.training)
        return ((x.unflatten(-1, (-1, head_dim)) * mask[:, None]).flatten(-2), *args[1:])

    return hook


def expected_params(
    model: nn.Module,
    gates: PruningGates,
    kept: Mapping[str, torch.Tensor | float] | None = None,
) -> torch.Tensor:
    """The model's expected number of parameters under ``gates`` (differentiable in their
    ``log_alpha``): the unprunable parameters as a constant, plus per head its q/k/v rows and
    out_proj columns, per FFN neuron its fc1 row and fc2 column, and for the CNN each conv's
    ``channels × in-channels × kernel`` (+ bias, norm) with the previous layer's expected channels
    as in-channels, as DPHuBERT counts. A block gate multiplies its block's count (heads or
    neurons, and ``out_proj``'s / ``fc2``'s bias) by its expected L0.

    ``kept`` overrides a gate's expected count (e.g. the counts of hard masks: then the result is
    the parameter count of the pruned model).
    """
    layout = EncoderLayout(model)
    counts: dict[str, torch.Tensor | float] = dict(gates.l0_norms())
    counts.update(kept or {})
    device = next(iter(gates.parameters())).device if len(gates.gates) else None
    full = sum(p.numel() for p in model.parameters())
    total = torch.tensor(float(full), dtype=torch.float64, device=device)
    for i in range(len(layout.layers)):
        blocks = (
            (head_key(i), attlayer_key(i), layout.params_per_head(i), layout.num_heads(i),
             layout.attention(i).out_proj.bias),
            (interm_key(i), ffnlayer_key(i), layout.params_per_neuron(i),
             layout.ffn(i)[0].out_features, layout.ffn(i)[1].bias),
        )  # fmt: skip
        for unit, block, per, now, bias in blocks:
            if unit not in counts and block not in counts:
                continue
            fixed = bias.numel() if bias is not None else 0
            gated = per * counts.get(unit, now) + fixed
            if block in counts:
                gated = counts[block] * gated
            total = total + gated - (per * now + fixed)
    chain = layout.conv_chain()
    if any(conv_key(j) in counts for j in range(len(chain.convs))):
        now = [conv.out_channels for conv in chain.convs]
        expected = [counts.get(conv_key(j), c) for j, c in enumerate(now)]
        total = total + layout.conv_chain_params(expected) - layout.conv_chain_params(now)
    return total


def calibrate_sparsity(
    model: nn.Module, gates: PruningGates, target: float, *, iterations: int = 60
) -> tuple[float, float]:
    """Move the deterministic masks to the target: the common ``count_offset`` of every gate
    (added to ``log_alpha`` when counting each gate's zeros; which units go, and the kept ones'
    values, still follow the learnt ``log_alpha``) whose pruned model's sparsity is closest to
    ``target``, found by bisection (the sparsity falls as the offset rises). Sets it on
    ``gates``; returns ``(offset, sparsity)``.

    The λs bring the *expected* sparsity to the target only in the long run: in a short run they
    overshoot or lag by a few points. This is the projection onto the constraint at the end.
    """

    def sparsity(offset: float) -> float:
        gates.set_count_offset(offset)
        kept = {k: float(v) for k, v in gates.kept_counts().items()}
        return 1.0 - float(expected_params(model, gates, kept)) / gates.original_params

    low, high = -40.0, 40.0  # every gate closed / open
    s_low, s_high = sparsity(low), sparsity(high)
    if target >= s_low or target <= s_high:
        best = low if target >= s_low else high
    else:
        for _ in range(iterations):
            mid = (low + high) / 2
            s_mid = sparsity(mid)
            if s_mid >= target:
                low, s_low = mid, s_mid
            else:
                high, s_high = mid, s_mid
        best = low if abs(s_low - target) <= abs(s_high - target) else high
    achieved = sparsity(best)
    return best, achieved
