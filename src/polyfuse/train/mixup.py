"""Manifold mixup on the fused representation (``TrainConfig.mixup``).

Verma, Lamb, Beckham, Najafi, Mitliagkas, Lopez-Paz & Bengio, ICML 2019, "Manifold Mixup: Better
Representations by Interpolating Hidden States": a training batch's hidden vectors are mixed with
those of the same batch in another order, h = lam h_i + (1 - lam) h_j with lam ~ Beta(alpha, alpha),
and so are the losses, lam L(y_i) + (1 - lam) L(y_j) (mixup's form of mixing the targets: Zhang,
Cisse, Dauphin & Lopez-Paz, ICLR 2018). The hidden vector here is the fusion's output, which every
modality reaches, so one mixing serves images, audio, text, tables and series alike.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from polyfuse.data.batch import Batch
from polyfuse.models.multimodal import MultimodalModel


def mixed_loss(
    model: MultimodalModel, losses: nn.ModuleDict, batch: Batch, alpha: float, generator: torch.Generator
) -> Tensor:
    """The summed labels' loss of ``batch`` with its fused vectors mixed (one lam per batch, a random
    partner per row)."""
    fused = model.fuse(batch)  # [B, D]
    draw = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    lam = float(draw.beta(alpha, alpha))
    partner = torch.randperm(fused.shape[0], generator=generator).to(fused.device)
    logits = model.classify(lam * fused + (1 - lam) * fused[partner])
    total = torch.zeros((), device=fused.device)
    for label, out in logits.items():
        target = batch.targets[label]
        total = total + lam * losses[label](out, target) + (1 - lam) * losses[label](out, target[partner])
    return total
