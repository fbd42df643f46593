"""Modality balancing: training strategies against modality competition, chosen by name.

A fused model trained end to end can fit its training set through its easiest modality and stop
learning the others, and then generalise worse than that modality alone (Wang, Tran & Feiszli,
CVPR 2020, "What Makes Training Multi-modal Classification Networks Hard?"; Peng et al., CVPR 2022,
"Balanced Multimodal Learning via On-the-fly Gradient Modulation"). ``TrainConfig.balance`` names a
strategy in ``BALANCERS``: a factory ``(model, heads, losses) -> Balancer | None`` (None: nothing to
add). A ``Balancer`` sees each training batch's per-modality fusion inputs and returns a loss that
is added to the fused loss; its parameters train with the model and are not saved with it.
The callback ``modality_grad_share`` shows what a strategy changes: each encoder's share of the
gradient.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from polyfuse.config import HeadConfig
from polyfuse.models.build import fusion_input_dim
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


class AuxiliaryHeads(Balancer):
    """Unimodal auxiliary heads: each modality's features also predict every label through a linear
    head of their own, and the mean of those losses (over modalities and labels, each on the rows
    that hold the modality) is added to the fused loss. Every encoder thus keeps a direct learning
    signal when the fused head leans on another modality: the unimodal losses of G-Blending (Wang,
    Tran & Feiszli, CVPR 2020) with fixed, equal weights. The heads are dropped after training.
    """

    def __init__(self, dims: dict[str, int], heads: list[HeadConfig], losses: Any) -> None:
        super().__init__()
        self.heads = nn.ModuleDict(
            {m: nn.ModuleDict({h.label: nn.Linear(d, h.num_outputs) for h in heads}) for m, d in dims.items()}
        )
        self.label_losses = dict(losses)  # shared with the task, not registered twice

    def loss(
        self,
        inputs: dict[str, Tensor],
        valid: dict[str, Tensor] | None,
        mask: dict[str, Tensor],
        targets: dict[str, Tensor],
    ) -> Tensor:
        terms = []
        for name, module in self.heads.items():
            heads = cast(nn.ModuleDict, module)  # label -> linear head
            rows = mask[name]
            if not bool(rows.any()):
                continue
            features = pooled(inputs[name], (valid or {}).get(name))[rows]  # [R, D_m]
            for label, head in heads.items():
                terms.append(self.label_losses[label](head(features), targets[label][rows]))
        if not terms:
            return next(iter(inputs.values())).new_zeros(())
        return torch.stack(terms).mean()


@BALANCERS.register("aux")
def auxiliary_heads(model: MultimodalModel, heads: list[HeadConfig], losses: Any) -> Balancer | None:
    """Unimodal auxiliary heads and losses (``AuxiliaryHeads``); nothing to balance for one modality."""
    if len(model.encoders) < 2:
        return None
    dims = {m: fusion_input_dim(enc, model.wants_tokens) for m, enc in model.encoders.items()}
    return AuxiliaryHeads(dims, heads, losses)


def pooled(features: Tensor, valid: Tensor | None) -> Tensor:
    """[B, D] as it is; [B, T, D] tokens -> the mean of the valid ones (all of them without ``valid``)."""
    if features.dim() == 2:
        return features
    weights = torch.ones(features.shape[:2], device=features.device) if valid is None else valid.float()
    total = (features * weights.unsqueeze(-1)).sum(1)  # [B, D]
    return total / weights.sum(1, keepdim=True).clamp(min=1.0)
