"""Projecting conflicting gradients (``pcgrad``).

Yu, Kumar, Gupta, Levine, Hausman & Finn, NeurIPS 2020, "Gradient Surgery for Multi-Task Learning".
For each label k, ``g_k`` is the gradient of its loss on the shared parameters (the encoders' and the
fusion's). Where two labels' gradients conflict (negative dot product), each is projected onto the
normal plane of the other: ``g_i <- g_i - (g_i . g_j) / |g_j|^2 g_j``, over the other labels in a
random order (torch's generator, seeded with the run); the shared parameters then receive the sum of
the projected gradients. Non-conflicting gradients are left unchanged, and the heads, which no other
label shares, get their own loss's gradient as with the plain sum.

How it runs: the per-label gradients are taken inside the training step (one ``autograd.grad`` per
label, keeping the graph), and the step's loss gets a term ``sum_p <p, delta_p>`` whose value is
removed (``x - x.detach()``) but whose gradient adds ``delta = sum_k g_k^PC - sum_k g_k`` to each
shared parameter. Lightning's ordinary backward pass then leaves the projected gradient in place, so
gradient clipping, a balancing strategy's ``after_backward`` (OGM-GE scales the encoders' projected
gradients) and its own loss (added after the projection, not projected) work unchanged. Under
``16-mixed`` the loss scaler multiplies that term with the rest, so the correction stays consistent;
the per-label gradients themselves are taken unscaled and could underflow in float16 (``bf16-mixed``
and ``32-true`` do not have that problem). It costs one extra backward pass per label. PCGrad weighs
no loss (``label_weights`` is None); it logs ``pcgrad_conflicts``, the share of an epoch's steps
that had a conflicting pair of labels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from polyfuse.config import HeadConfig
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.registry import LOSS_WEIGHTINGS
from polyfuse.train.weighting.base import LossWeighting, Shared


def project_conflicting(grads: list[Tensor], order: list[list[int]] | None = None) -> tuple[Tensor, bool]:
    """PCGrad's combined gradient from per-label flat gradients [P] each, and whether any pair conflicted.

    ``order[i]``: the order in which label i is projected against the others (default: index order).
    """
    combined = torch.zeros_like(grads[0])
    conflicted = False
    for i, g in enumerate(grads):
        projected = g.clone()
        for j in order[i] if order is not None else range(len(grads)):
            if j == i:
                continue
            dot = torch.dot(projected, grads[j])
            if dot < 0:
                projected -= dot / grads[j].pow(2).sum().clamp(min=1e-20) * grads[j]
                conflicted = True
        combined += projected
    return combined, conflicted


class GradientSurgery(LossWeighting):
    """The plain sum of the labels' losses, with PCGrad's gradient on the shared parameters."""

    def __init__(self, labels: list[str]) -> None:
        super().__init__(labels)
        self._conflicts = 0
        self._steps = 0

    def combine(self, losses: dict[str, Tensor], shared: Shared) -> Tensor:
        total = torch.stack([losses[label] for label in self.labels]).sum()
        params = [p for p in shared.params if p.requires_grad]
        if not params or not total.requires_grad:
            return total
        grads = [self._flat_grad(losses[label], params) for label in self.labels]  # K x [P]
        k = len(grads)
        order = [torch.randperm(k).tolist() for _ in range(k)]
        combined, conflicted = project_conflicting(grads, order)
        self._conflicts += int(conflicted)
        self._steps += 1
        delta = combined - torch.stack(grads).sum(0)  # [P]
        surrogate = torch.dot(torch.cat([p.reshape(-1) for p in params]), delta.to(params[0].dtype))
        return total + (surrogate - surrogate.detach())

    @staticmethod
    def _flat_grad(loss: Tensor, params: list[Tensor]) -> Tensor:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        pairs = zip(params, grads, strict=True)
        flat = [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in pairs]
        return torch.cat(flat).float()

    def epoch_end(self) -> dict[str, float]:
        share = self._conflicts / self._steps if self._steps else 0.0
        self._conflicts = self._steps = 0
        return {"pcgrad_conflicts": share}


@LOSS_WEIGHTINGS.register("pcgrad")
def pcgrad(model: MultimodalModel, heads: list[HeadConfig]) -> LossWeighting | None:
    """PCGrad on the encoders' and fusion's parameters (``GradientSurgery``); nothing for one label."""
    return GradientSurgery([h.label for h in heads]) if len(heads) > 1 else None
