"""Unimodal auxiliary heads (``aux``): every encoder keeps a learning signal of its own."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from polyfuse.config import HeadConfig
from polyfuse.models.build import fusion_input_dim
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.registry import BALANCERS
from polyfuse.train.balancers.base import Balancer, pooled


class AuxiliaryHeads(Balancer):
    """Unimodal auxiliary heads: each modality's features also predict every label through a linear
    head of their own, and the mean of those losses (over modalities and labels, each on the rows
    that hold the modality) is added to the fused loss. Every encoder thus keeps a direct learning
    signal when the fused head leans on another modality: the unimodal losses of G-Blending (Wang,
    Tran & Feiszli, CVPR 2020) with fixed, equal weights. With a loss weighting over several labels,
    each label's terms take its weight (``Balancer.label_weights``). The heads are dropped after
    training.
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
        per_modality = self.modality_losses(inputs, valid, mask, targets, self.label_weights)
        terms = [t for per_label in per_modality.values() for t in per_label]
        if not terms:
            return next(iter(inputs.values())).new_zeros(())
        return torch.stack(terms).mean()

    def modality_losses(
        self,
        inputs: dict[str, Tensor],
        valid: dict[str, Tensor] | None,
        mask: dict[str, Tensor],
        targets: dict[str, Tensor],
        weights: dict[str, float] | None = None,
    ) -> dict[str, list[Tensor]]:
        """Modality -> its heads' losses, one per label (times the label's weight in ``weights``, if
        given), on the rows that hold it (absent when none do)."""
        out = {}
        for name, module in self.heads.items():
            heads = cast(nn.ModuleDict, module)  # label -> linear head
            rows = mask[name]
            if not bool(rows.any()):
                continue
            features = pooled(inputs[name], (valid or {}).get(name))[rows]  # [R, D_m]
            weight = weights or {}
            out[name] = [
                weight.get(label, 1.0) * self.label_losses[label](head(features), targets[label][rows])
                for label, head in heads.items()
            ]
        return out


@BALANCERS.register("aux")
def auxiliary_heads(model: MultimodalModel, heads: list[HeadConfig], losses: Any) -> Balancer | None:
    """Unimodal auxiliary heads and losses (``AuxiliaryHeads``); nothing to balance for one modality."""
    if len(model.encoders) < 2:
        return None
    return AuxiliaryHeads(feature_dims(model), heads, losses)


def feature_dims(model: MultimodalModel) -> dict[str, int]:
    """Modality -> the width of its fusion inputs (what a unimodal head on ``pooled`` ones takes)."""
    return {m: fusion_input_dim(enc, model.wants_tokens) for m, enc in model.encoders.items()}
