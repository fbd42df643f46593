"""Helpers shared by fusions: a fixed modality order and masking of absent embeddings."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


def ordered(names: Iterable[str]) -> list[str]:
    """Modalities in sorted order, so results never depend on the order of dict keys."""
    return sorted(names)


def present(mask: dict[str, Tensor], name: str, like: Tensor) -> Tensor:
    """Bool [B, 1] presence of ``name``; a modality missing from ``mask`` counts as present."""
    if name not in mask:
        return torch.ones(like.shape[0], 1, dtype=torch.bool, device=like.device)
    return mask[name].to(device=like.device, dtype=torch.bool).reshape(-1, 1)


def select(keep: Tensor, value: Tensor, fallback: Tensor) -> Tensor:
    """``value`` where ``keep`` else ``fallback``; a selection, not a product, so NaN or large
    values in an absent embedding cannot leak into the output or its gradients."""
    return torch.where(keep, value, fallback.to(value.dtype).expand_as(value))
