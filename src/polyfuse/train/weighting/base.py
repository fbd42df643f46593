"""The loss-weighting contract (``LossWeighting``) and plain summing (``sum``).

A model with several labels trains one head per label on a shared fused representation. Summing
their losses lets the label whose loss is largest or falls slowest steer the shared encoders and
fusion; the methods registered in ``LOSS_WEIGHTINGS`` weigh the labels' losses (``uncertainty``,
``dwa``, ``gradnorm``) or their gradients (``pcgrad``) instead. A factory ``(model, heads) ->
LossWeighting | None`` returns None when there is nothing to weigh (one label, or ``sum``). Its
parameters train with the model and are not saved with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polyfuse.config import HeadConfig
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.registry import LOSS_WEIGHTINGS


@dataclass
class Shared:
    """What the labels share in a training step, for methods that look at gradients."""

    fused: Tensor  # the fusion's output [B, D], in the step's graph (the heads' common input)
    params: list[Tensor]  # the trainable parameters of the encoders and the fusion


class LossWeighting(nn.Module):
    """The contract: ``combine(losses, shared)`` turns the step's per-label losses into the loss to
    minimise (a scalar whose gradients train the model and the weighting's own parameters).

    * ``label_weights()``: each label's current weight, scaled to mean 1 over the labels (None when the
      method weighs gradients, not losses); a balancing strategy with per-label losses of its own
      (``balance=aux``, ``gblend``, ``pmr``) weighs them with it;
    * ``epoch_end()``: after each epoch's validation pass; returns values to log (name -> value),
      ``lw_<label>`` for the weights.
    """

    def __init__(self, labels: list[str]) -> None:
        super().__init__()
        self.labels = labels

    def combine(self, losses: dict[str, Tensor], shared: Shared) -> Tensor:
        raise NotImplementedError

    def label_weights(self) -> dict[str, float] | None:
        return None

    def epoch_end(self) -> dict[str, float]:
        weights = self.label_weights()
        return {} if weights is None else {f"lw_{label}": w for label, w in weights.items()}


@LOSS_WEIGHTINGS.register("sum")
def plain_sum(model: MultimodalModel, heads: list[HeadConfig]) -> LossWeighting | None:
    """The plain sum of the labels' losses (the default)."""
    return None


def shared_parameters(model: MultimodalModel) -> list[Tensor]:
    """The trainable parameters every label's loss reaches: the encoders' and the fusion's."""
    return [p for part in (model.encoders, model.fusion) for p in part.parameters() if p.requires_grad]


def mean_one(weights: Tensor) -> Tensor:
    """``weights`` [K] scaled to mean 1 (so that K labels' weights sum to K)."""
    return weights * len(weights) / weights.sum().clamp(min=1e-12)


def stacked(losses: dict[str, Tensor], labels: list[str]) -> Tensor:
    """The losses of ``labels``, in that order, as one tensor [K]."""
    return torch.stack([losses[label] for label in labels])
