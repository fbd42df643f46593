"""Tabular augmentations on the tabular processor's output: standardised numbers, their missing
flags and category codes (0: unknown or missing)."""

from __future__ import annotations

from typing import Any

import torch

from polyfuse.data.augmentations.base import augmentation, chance

SIGMA = 0.1  # noise, in standard deviations of each column
RATE = 0.1  # feature dropout: the chance of each cell going missing


@augmentation("gaussian_noise", "tabular")
def gaussian_noise(values: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
    """Gaussian noise of 0.1 standard deviations on every present number."""
    numbers, missing = values["numeric"], values["numeric_missing"]
    jitter = SIGMA * torch.randn(numbers.shape, generator=generator).to(numbers.device, numbers.dtype)
    return {**values, "numeric": torch.where(missing > 0, numbers, numbers + jitter)}


@augmentation("feature_dropout", "tabular")
def feature_dropout(values: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
    """Each cell goes missing with probability 0.1: a number becomes 0 with its missing flag set,
    a category the unknown code 0 (what a missing cell is at prediction time)."""
    numbers, missing, codes = values["numeric"], values["numeric_missing"], values["categorical"]
    gone = chance(generator, tuple(numbers.shape), RATE, numbers.device)
    gone_codes = chance(generator, tuple(codes.shape), RATE, codes.device)
    return {
        **values,
        "numeric": torch.where(gone, numbers.new_zeros(()), numbers),
        "numeric_missing": torch.where(gone, missing.new_ones(()), missing),
        "categorical": torch.where(gone_codes, codes.new_zeros(()), codes),
    }
