"""Homoscedastic-uncertainty weighting (``uncertainty``).

Kendall, Gal & Cipolla, CVPR 2018, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
Geometry and Semantics". Each label k has a learned log-variance ``s_k = log sigma_k^2`` (starting at
0, weight 1), trained with the model on

    L = sum_k exp(-s_k) L_k + s_k

so a label whose loss stays large (noisy, or on a larger scale) is weighed down, and the ``+ s_k``
term keeps the weights from vanishing. For a fixed loss the optimum is ``s_k = log L_k``, i.e. weight
``1 / L_k``. This is the paper's objective without its task-dependent factors (1/2 on a regression
loss and on its ``s_k``, 1/2 on a classification ``s_k``): the common simplification, which treats
every label alike and so needs no per-task rule. The weights ``exp(-s_k)`` are logged each epoch as
``lw_<label>`` (scaled to mean 1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyfuse.config import HeadConfig
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.registry import LOSS_WEIGHTINGS
from polyfuse.train.weighting.base import LossWeighting, Shared, mean_one, stacked


class UncertaintyWeighting(LossWeighting):
    """``sum_k exp(-s_k) L_k + s_k`` with learned ``s_k`` (see the module's docstring)."""

    def __init__(self, labels: list[str]) -> None:
        super().__init__(labels)
        self.log_vars = nn.Parameter(torch.zeros(len(labels)))  # s_k

    def combine(self, losses: dict[str, Tensor], shared: Shared) -> Tensor:
        s = self.log_vars
        return (torch.exp(-s) * stacked(losses, self.labels) + s).sum()

    def label_weights(self) -> dict[str, float]:
        weights = mean_one(torch.exp(-self.log_vars.detach().float()))
        return dict(zip(self.labels, weights.tolist(), strict=True))


@LOSS_WEIGHTINGS.register("uncertainty")
def uncertainty(model: MultimodalModel, heads: list[HeadConfig]) -> LossWeighting | None:
    """Learned uncertainty weights (``UncertaintyWeighting``); nothing to weigh for one label."""
    return UncertaintyWeighting([h.label for h in heads]) if len(heads) > 1 else None
