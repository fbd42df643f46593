"""Gradient normalisation (``gradnorm``).

Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018, "GradNorm: Gradient Normalization for Adaptive
Loss Balancing in Deep Multitask Networks". Label k's loss has a learned weight ``w_k`` (starting at
1); the model trains on ``sum_k w_k L_k`` and the weights on

    L_grad = sum_k | G_k - mean(G) r_k^alpha |,    alpha = 1.5

where ``G_k`` is the norm of the gradient of ``w_k L_k`` on the shared layer and ``r_k`` the label's
relative inverse training rate: ``L_k / L_k(0)`` (its loss over its loss at the first step) divided
by that ratio's mean over labels. The target ``mean(G) r_k^alpha`` is a constant, so labels whose
gradients are weak, or whose loss falls slowest, gain weight. After each step the weights are
renormalised to sum K (here: before they are next used, which is the same).

The shared layer: the paper takes the last shared layer's weights; here ``G_k`` is the gradient norm
on the fusion's output [B, D] (the heads' common input). It costs one backward pass through the heads
only, whatever the fusion and encoders are, so every fusion gets it at the same small price; the
paper reports the choice of layer matters little. ``G_k = w_k |dL_k / d fused|``, so ``L_grad``'s
gradient on ``w_k`` needs no second-order term. ``L_grad`` trains only the weights and adds nothing
to the logged loss. The weights (mean 1) are logged each epoch as ``lw_<label>``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyfuse.config import HeadConfig
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.registry import LOSS_WEIGHTINGS
from polyfuse.train.weighting.base import LossWeighting, Shared, mean_one, stacked

ALPHA = 1.5  # the paper's asymmetry; its NYUv2 and synthetic experiments use 1.5 and 0.12
MIN_WEIGHT = 1e-3  # weights are kept positive


def gradnorm_loss(weights: Tensor, norms: Tensor, ratios: Tensor, alpha: float = ALPHA) -> Tensor:
    """``sum_k |w_k n_k - mean(w n) r_k^alpha|`` with the target held constant; ``norms`` [K] are the
    unweighted losses' gradient norms, ``ratios`` [K] the losses relative to their first value."""
    grad_norms = weights * norms  # G_k
    relative = ratios / ratios.mean()  # r_k
    target = (grad_norms.mean() * relative.pow(alpha)).detach()
    return (grad_norms - target).abs().sum()


class GradNorm(LossWeighting):
    """``sum_k w_k L_k`` with GradNorm's learned weights (see the module's docstring)."""

    def __init__(self, labels: list[str], alpha: float = ALPHA) -> None:
        super().__init__(labels)
        self.weights = nn.Parameter(torch.ones(len(labels)))
        self.alpha = alpha
        self.initial: Tensor | None = None  # L_k(0), the first step's losses

    def combine(self, losses: dict[str, Tensor], shared: Shared) -> Tensor:
        with torch.no_grad():
            self.weights.copy_(mean_one(self.weights.clamp(min=MIN_WEIGHT)))
        values = stacked(losses, self.labels)  # [K]
        objective = (self.weights.detach() * values).sum()
        if not shared.fused.requires_grad:
            return objective
        if self.initial is None:
            self.initial = values.detach().float().clamp(min=1e-12)
        norms = torch.stack([self._norm(losses[label], shared.fused) for label in self.labels])  # [K]
        balance = gradnorm_loss(self.weights, norms, values.detach().float() / self.initial, self.alpha)
        return objective + (balance - balance.detach())  # trains the weights, logs nothing

    @staticmethod
    def _norm(loss: Tensor, fused: Tensor) -> Tensor:
        (grad,) = torch.autograd.grad(loss, fused, retain_graph=True, allow_unused=True)
        return fused.new_zeros((), dtype=torch.float32) if grad is None else grad.float().norm()

    def label_weights(self) -> dict[str, float]:
        weights = mean_one(self.weights.detach().float().clamp(min=MIN_WEIGHT))
        return dict(zip(self.labels, weights.tolist(), strict=True))


@LOSS_WEIGHTINGS.register("gradnorm")
def gradnorm(model: MultimodalModel, heads: list[HeadConfig]) -> LossWeighting | None:
    """GradNorm's learned weights (``GradNorm``); nothing to weigh for one label."""
    return GradNorm([h.label for h in heads]) if len(heads) > 1 else None
