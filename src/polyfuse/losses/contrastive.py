"""Objectives of pre-training without labels, on unit-length embeddings in one shared space.

* ``info_nce``: CLIP's symmetric contrastive loss (Radford et al., ICML 2021, "Learning Transferable
  Visual Models From Natural Language Supervision"): in a batch of rows, each row's embedding in
  one modality should be nearest to the same row's embedding in the other, against every other row,
  both ways, at a learned temperature.
* ``pair_losses``: that loss for each pair of modalities, on the rows where both are present
  (ImageBind's binding of every modality to one anchor is the pairs ``(anchor, m)``).
* ``masked_reconstruction``: each present modality's embedding predicted from the mean of the
  row's other present modalities, as if it were masked (cosine distance to the embedding, which is
  held fixed, the stop-gradient of SimSiam: Chen & He, CVPR 2021).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Pair = tuple[str, str]


def info_nce(a: Tensor, b: Tensor, scale: Tensor) -> Tensor:
    """Symmetric InfoNCE of rows ``a`` [B, D] and ``b`` [B, D] (unit vectors), logits ``scale * a b^T``."""
    logits = scale * a @ b.T  # [B, B]
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def pair_losses(
    z: dict[str, Tensor], present: dict[str, Tensor], pairs: list[Pair], scale: Tensor
) -> dict[Pair, Tensor]:
    """``info_nce`` per pair over the rows holding both modalities (pairs with fewer than 2 such rows
    in the batch are left out)."""
    out = {}
    for a, b in pairs:
        rows = present[a] & present[b]
        if int(rows.sum()) >= 2:
            out[(a, b)] = info_nce(z[a][rows], z[b][rows], scale)
    return out


def masked_reconstruction(
    z: dict[str, Tensor], present: dict[str, Tensor], predictors: nn.ModuleDict
) -> Tensor:
    """Mean over modalities (with a predictor) of ``1 - cos(predictor(mean of the others), z_m)`` on
    the rows where m and at least one other modality are present; 0 when there are none."""
    names = list(z)
    losses = []
    for m in names:
        if m not in predictors:
            continue
        others = [o for o in names if o != m]
        weight = torch.stack([present[o].float() for o in others], dim=1)  # [B, O]
        context = (torch.stack([z[o] for o in others], dim=1) * weight.unsqueeze(-1)).sum(1)
        rows = present[m] & (weight.sum(1) > 0)
        if not bool(rows.any()):
            continue
        guess = F.normalize(predictors[m](context[rows]), dim=-1)
        losses.append((1 - (guess * z[m][rows].detach()).sum(-1)).mean())
    return torch.stack(losses).mean() if losses else next(iter(z.values())).new_zeros(())
