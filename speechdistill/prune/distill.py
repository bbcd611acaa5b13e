"""Layer-to-layer distillation maps of DPHuBERT: the pruned student (a copy of the teacher)
predicts the teacher's chosen hidden states from its own at the same layers, each through a
linear map initialised to the identity (so the loss starts at 0 and pruning is what moves it).

The loss itself is DistilHuBERT's, masked on padded frames
(:func:`speechdistill.train.losses.layerwise_distill_loss`, L1 + cosine); the trainer applies it
to ``maps(student_hidden_states)`` against the teacher's states of the same ``layers``. Layer
``0`` is the input of the first transformer layer (the CNN front end's output with positions
added), as transformers' ``hidden_states`` count; DPHuBERT distils HuBERT Base's 0 (the CNN
output), 4, 8 and 12.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["LayerMaps"]


class LayerMaps(nn.Module):
    """One ``Linear(student_dim, teacher_dim)`` per distilled layer, initialised to the identity
    (on the shared dimensions; zeros elsewhere)."""

    def __init__(self, layers: Sequence[int], student_dim: int, teacher_dim: int):
        super().__init__()
        if not layers:
            raise ValueError("no layer to distil")
        if len(set(layers)) != len(layers) or min(layers) < 0:
            raise ValueError(f"layers must be distinct and ≥ 0, got {list(layers)}")
        self.layers = list(layers)
        self.maps = nn.ModuleList(nn.Linear(student_dim, teacher_dim) for _ in self.layers)
        with torch.no_grad():
            for lin in self.maps:
                lin.weight.copy_(torch.eye(teacher_dim, student_dim))
                lin.bias.zero_()

    def forward(self, hidden_states: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The mapped ``hidden_states[l]`` for every distilled layer ``l`` (transformers'
        ``output_hidden_states`` tuple)."""
        if max(self.layers) >= len(hidden_states):
            raise ValueError(
                f"layer {max(self.layers)} asked for, the model gives {len(hidden_states)} "
                "hidden states"
            )
        return [
            lin(hidden_states[layer]) for layer, lin in zip(self.layers, self.maps, strict=True)
        ]
