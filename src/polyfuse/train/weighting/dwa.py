"""Dynamic Weight Average (``dwa``).

Liu, Johns & Davison, CVPR 2019, "End-to-End Multi-Task Learning with Attention". Each label's
weight for epoch t follows how fast its loss fell over the two epochs before:

    r_k = L_k(t-1) / L_k(t-2),    w_k(t) = K exp(r_k / T) / sum_i exp(r_i / T),    T = 2

with ``L_k`` the label's mean training loss over an epoch's steps; the first two epochs use weight 1
for every label. A label whose loss stalls (r near 1) gains weight over one that is still falling.
The step's loss is ``sum_k w_k L_k``; the weights an epoch trained with are logged as ``lw_<label>``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from polyfuse.config import HeadConfig
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.registry import LOSS_WEIGHTINGS
from polyfuse.train.weighting.base import LossWeighting, Shared, stacked

TEMPERATURE = 2.0  # the paper's T


def dwa_weights(history: list[list[float]], temperature: float = TEMPERATURE) -> list[float]:
    """The weights of the next epoch from the per-epoch mean losses so far (``history[e][k]``): 1 each
    until two epochs are done, then ``K softmax(r / T)`` with r the ratio of the last two epochs."""
    if len(history) < 2:
        return [1.0] * len(history[0]) if history else []
    last, before = torch.tensor(history[-1]), torch.tensor(history[-2])
    ratio = last / before.clamp(min=1e-12)
    return (len(ratio) * torch.softmax(ratio / temperature, dim=0)).tolist()


class DynamicWeightAverage(LossWeighting):
    """``sum_k w_k L_k`` with DWA's per-epoch weights (see the module's docstring)."""

    def __init__(self, labels: list[str]) -> None:
        super().__init__(labels)
        self.weights = [1.0] * len(labels)
        self.history: list[list[float]] = []  # per epoch: each label's mean training loss
        self._sums = torch.zeros(len(labels), dtype=torch.float64)
        self._steps = 0

    def combine(self, losses: dict[str, Tensor], shared: Shared) -> Tensor:
        values = stacked(losses, self.labels)  # [K]
        self._sums += values.detach().double().cpu()
        self._steps += 1
        return (values.new_tensor(self.weights) * values).sum()

    def label_weights(self) -> dict[str, float]:
        return dict(zip(self.labels, self.weights, strict=True))

    def epoch_end(self) -> dict[str, float]:
        """Logs the weights the epoch trained with, then sets the next epoch's from its mean losses."""
        logged = super().epoch_end()
        if self._steps:
            self.history.append((self._sums / self._steps).tolist())
            self.weights = dwa_weights(self.history)
        self._sums.zero_()
        self._steps = 0
        return logged


@LOSS_WEIGHTINGS.register("dwa")
def dynamic_weight_average(model: MultimodalModel, heads: list[HeadConfig]) -> LossWeighting | None:
    """Dynamic Weight Average (``DynamicWeightAverage``); nothing to weigh for one label."""
    return DynamicWeightAverage([h.label for h in heads]) if len(heads) > 1 else None
