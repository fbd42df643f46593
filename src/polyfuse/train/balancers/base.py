"""The balancing contract (``Balancer``), plain training (``none``) and the pooling the strategies share.

A fused model trained end to end can fit its training set through its easiest modality and stop
learning the others, and then generalise worse than that modality alone (Wang, Tran & Feiszli,
CVPR 2020, "What Makes Training Multi-modal Classification Networks Hard?"; Peng et al., CVPR 2022,
"Balanced Multimodal Learning via On-the-fly Gradient Modulation"). ``TrainConfig.balance`` names a
strategy in ``BALANCERS``: a factory ``(model, heads, losses) -> Balancer | None`` (None: nothing to
do). Its parameters train with the model and are not saved with it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from polyfuse.config import HeadConfig
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.registry import BALANCERS


class Balancer(nn.Module):
    """The contract: ``loss(inputs, valid, mask, targets)`` -> a scalar added to the training loss.

    ``inputs`` are the fusion's inputs (modality -> [B, D_m] embeddings, or [B, T_m, D_m] tokens with
    ``valid`` [B, T_m] for a token-level fusion); ``mask`` says which rows hold each modality.
    """

    def loss(
        self,
        inputs: dict[str, Tensor],
        valid: dict[str, Tensor] | None,
        mask: dict[str, Tensor],
        targets: dict[str, Tensor],
    ) -> Tensor:
        raise NotImplementedError


@BALANCERS.register("none")
def no_balancing(model: MultimodalModel, heads: list[HeadConfig], losses: Any) -> Balancer | None:
    """Plain end-to-end training of the fused loss (the default)."""
    return None


def pooled(features: Tensor, valid: Tensor | None) -> Tensor:
    """[B, D] as it is; [B, T, D] tokens -> the mean of the valid ones (all of them without ``valid``)."""
    if features.dim() == 2:
        return features
    weights = torch.ones(features.shape[:2], device=features.device) if valid is None else valid.float()
    total = (features * weights.unsqueeze(-1)).sum(1)  # [B, D]
    return total / weights.sum(1, keepdim=True).clamp(min=1.0)
