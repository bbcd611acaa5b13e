"""Hard-Concrete gates (Louizos et al. 2018, "Learning sparse neural networks through L0
regularization"), with the constants and evaluation rule of DPHuBERT (Peng et al. 2023).

A gate ``z`` is a stretched, clamped binary-concrete variable: with ``u ~ U(0, 1)``,
``s = sigmoid((log u - log(1 - u) + log_alpha) / beta)``, ``z = clamp(s (r - l) + l, 0, 1)``,
``beta = 2/3``, ``(l, r) = (-0.1, 1.1)``. Its probability of being non-zero is
``sigmoid(log_alpha - beta log(-l / r))``, so the expected L0 norm of ``n`` gates is the sum of
those: differentiable in ``log_alpha``.

In evaluation the mask is deterministic: ``k = round(n - E[L0])`` gates (the expected number of
zeros) with the smallest ``log_alpha`` are 0, the others ``sigmoid(0.8 log_alpha / beta)`` (DPHuBERT's
estimate of a gate's mean). The pruning step removes the zeros and folds the other values into
the weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["BETA", "EVAL_SCALE", "STRETCH", "HardConcrete"]

BETA = 2.0 / 3.0
STRETCH = (-0.1, 1.1)
EVAL_SCALE = 0.8
_EPS = 1e-6


class HardConcrete(nn.Module):
    """``n`` Hard-Concrete gates; ``forward()`` samples a mask in training, else the
    deterministic mask.

    ``init_mean`` follows DPHuBERT's parameterisation: ``log_alpha ~ N(log((1 - m) / m), init_std)``,
    so a small ``m`` starts the gates open. DPHuBERT uses ``m = 0.01`` for CNN channels, attention
    heads and whole layers (log_alpha ≈ 4.6: P(z > 0) ≈ 0.996) and ``m = 0.5`` for FFN
    intermediate neurons (log_alpha ≈ 0: P(z > 0) ≈ 0.83).
    """

    def __init__(self, n: int, init_mean: float = 0.5, init_std: float = 0.01):
        super().__init__()
        if n < 1:
            raise ValueError(f"a HardConcrete module needs at least one gate, got {n}")
        if not 0.0 < init_mean < 1.0:
            raise ValueError(f"init_mean must be in (0, 1), got {init_mean}")
        self.n = n
        self.init_mean = init_mean
        self.init_std = init_std
        self.log_alpha = nn.Parameter(torch.empty(n))
        #: added to ``log_alpha`` when the deterministic mask counts its zeros (calibration)
        self.count_offset = 0.0
        self.reset_parameters()

    def reset_parameters(self) -> None:
        mean = math.log(1.0 - self.init_mean) - math.log(self.init_mean)
        with torch.no_grad():
            self.log_alpha.normal_(mean, self.init_std)

    def extra_repr(self) -> str:
        return f"n={self.n}, init_mean={self.init_mean}"

    def prob_nonzero(self, offset: float = 0.0) -> torch.Tensor:
        """P(z_i > 0) for every gate (differentiable), with ``log_alpha + offset``."""
        low, high = STRETCH
        return torch.sigmoid(self.log_alpha + offset - BETA * math.log(-low / high))

    def l0_norm(self) -> torch.Tensor:
        """The expected number of non-zero gates (differentiable)."""
        return self.prob_nonzero().sum()

    def sample(self) -> torch.Tensor:
        """A mask drawn by the reparameterisation trick (gradients reach ``log_alpha``)."""
        low, high = STRETCH
        u = torch.empty_like(self.log_alpha).uniform_(_EPS, 1.0 - _EPS)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / BETA)
        return (s * (high - low) + low).clamp(0.0, 1.0)

    @torch.no_grad()
    def deterministic_mask(self) -> torch.Tensor:
        """The evaluation mask: the expected number of zeros, rounded, set to 0 (smallest
        ``log_alpha`` first), the others ``sigmoid(0.8 log_alpha / beta)``.

        ``count_offset`` (0 unless calibrated) is added to ``log_alpha`` when counting the zeros
        only; the ranking and the kept gates' values stay: a calibration that moves every gate's
        count together (:func:`~speechdistill.prune.gates.calibrate_sparsity`)."""
        num_zeros = round(self.n - self.prob_nonzero(self.count_offset).sum().item())
        mask = torch.sigmoid(self.log_alpha.detach() / BETA * EVAL_SCALE)
        if num_zeros > 0:
            mask[torch.topk(mask, k=num_zeros, largest=False).indices] = 0.0
        return mask

    def forward(self) -> torch.Tensor:
        return self.sample() if self.training else self.deterministic_mask()
