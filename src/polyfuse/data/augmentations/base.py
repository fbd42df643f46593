"""The augmentation contract and registry helpers.

An augmentation is a function ``(values, generator) -> values`` over one modality's batch inputs as
its processor made them (``[B, C, H, W]`` images, ``[B, mels, T]`` log-mel spectrograms, token ids,
tabular dicts ...), registered in ``AUGMENTATIONS`` with the modality kinds it applies to. It keeps
the inputs' shapes and dtypes, draws every random choice from ``generator`` (the same generator
state, the same result), and changes rows independently. Training applies it (``TrainConfig.augment``),
never validation, testing or prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from polyfuse.registry import AUGMENTATIONS

Augmentation = Callable[[Any, torch.Generator], Any]


def augmentation(name: str, *kinds: str) -> Callable[[Augmentation], Augmentation]:
    """Register ``fn`` as ``name`` in ``AUGMENTATIONS`` for modalities of ``kinds``."""

    def register(fn: Augmentation) -> Augmentation:
        fn.kinds = kinds  # type: ignore[attr-defined]
        return AUGMENTATIONS.register(name)(fn)  # type: ignore[no-any-return]

    return register


def uniform(generator: torch.Generator, rows: int, low: float, high: float, like: Tensor) -> Tensor:
    """[rows] values uniform in [low, high), on ``like``'s device and dtype."""
    return (low + (high - low) * torch.rand(rows, generator=generator)).to(like.device, like.dtype)


def chance(generator: torch.Generator, shape: tuple[int, ...], p: float, device: torch.device) -> Tensor:
    """Bool tensor of ``shape``, each True with probability ``p``."""
    return (torch.rand(shape, generator=generator) < p).to(device)


def integers(generator: torch.Generator, rows: int, low: int, high: int, device: torch.device) -> Tensor:
    """[rows] integers in [low, high]."""
    return torch.randint(low, high + 1, (rows,), generator=generator).to(device)
