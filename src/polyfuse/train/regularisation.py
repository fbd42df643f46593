"""Weight penalties added to the training loss (``TrainConfig.l1``; L2 is the optimizer's
``weight_decay``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def penalised(module: nn.Module) -> list[nn.Parameter]:
    """The weights a penalty reads: trainable matrices and kernels (2 or more dimensions), not biases,
    norms' scales or single vectors such as learned type embeddings of one modality."""
    return [p for p in module.parameters() if p.requires_grad and p.dim() >= 2]


def l1_penalty(module: nn.Module) -> Tensor:
    """The sum of the absolute values of ``penalised(module)`` (Tibshirani, 1996, "Regression
    Shrinkage and Selection via the Lasso": the penalty that drives weights to exactly 0)."""
    weights = penalised(module)
    if not weights:
        return torch.zeros(())
    return torch.stack([w.abs().sum() for w in weights]).sum()
