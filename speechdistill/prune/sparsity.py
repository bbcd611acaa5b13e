"""The sparsity constraint of DPHuBERT (its ``lightning.py``, after CoFi's Lagrangian):
``L = L_distill + λ₁ (ŝ − t) + λ₂ (ŝ − t)²``, with ``ŝ = 1 − E[params] / params of the unpruned
model`` and the target ``t`` warmed up linearly from 0.

The λs are learnt by gradient *ascent* (the constraint is a min-max problem: the model and gates
minimise ``L``, the λs maximise it, so that any gap between ŝ and t is pushed down ever harder).
A trainer applies that by putting them in their own optimiser parameter group with
``maximize=True`` (torch optimisers read it per group; :func:`param_groups` builds the groups),
or, equivalently, by negating their gradients before the step (DPHuBERT gives the group a negative
learning rate).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["Lagrangian", "expected_sparsity", "param_groups", "sparsity_loss", "target_sparsity"]


def expected_sparsity(expected: torch.Tensor, original: int) -> torch.Tensor:
    """ŝ = 1 − expected parameters / parameters of the unpruned model."""
    return 1.0 - expected / float(original)


def sparsity_loss(
    expected: torch.Tensor,
    target: float,
    lambda1: torch.Tensor,
    lambda2: torch.Tensor,
) -> torch.Tensor:
    """``λ₁ (ŝ − t) + λ₂ (ŝ − t)²`` with ``expected`` = ŝ, the expected sparsity."""
    gap = expected - target
    return lambda1 * gap + lambda2 * gap * gap


def target_sparsity(step: int, target: float, warmup_steps: int) -> float:
    """The target at ``step``: ``target × step / warmup_steps``, then ``target``."""
    if not 0.0 <= target < 1.0:
        raise ValueError(f"target sparsity must be in [0, 1), got {target}")
    if warmup_steps <= 0 or step >= warmup_steps:
        return target
    return target * max(step, 0) / warmup_steps


class Lagrangian(nn.Module):
    """The two multipliers, starting at 0; ``forward(ŝ, t)`` is :func:`sparsity_loss`."""

    def __init__(self):
        super().__init__()
        self.lambda1 = nn.Parameter(torch.tensor(0.0))
        self.lambda2 = nn.Parameter(torch.tensor(0.0))

    def forward(self, expected: torch.Tensor, target: float) -> torch.Tensor:
        return sparsity_loss(expected, target, self.lambda1, self.lambda2)


def param_groups(
    model_params: Iterable[nn.Parameter],
    gate_params: Iterable[nn.Parameter],
    lagrangian: Lagrangian,
    *,
    lr: float,
    reg_lr: float,
    weight_decay: float = 0.0,
) -> list[dict]:
    """DPHuBERT's optimiser groups: the model (and distillation projections) at ``lr`` with
    weight decay; the gates' ``log_alpha`` at ``reg_lr`` without; the λs at ``reg_lr`` with
    ``maximize=True`` (gradient ascent)."""
    return [
        {"params": list(model_params), "lr": lr, "weight_decay": weight_decay},
        {"params": list(gate_params), "lr": reg_lr, "weight_decay": 0.0},
        {
            "params": list(lagrangian.parameters()),
            "lr": reg_lr,
            "weight_decay": 0.0,
            "maximize": True,
        },
    ]
