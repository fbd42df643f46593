"""Image augmentations on [B, C, H, W] pixels (uint8 0..255 or float 0..1; the dtype is kept).

Geometric ones resample through an affine grid (bilinear, edges repeated), so they work at any
size; RandAugment (Cubuk, Zoph, Shlens & Le, 2020, "RandAugment: Practical automated data
augmentation with a reduced search space") applies N=2 operations drawn per row from its list, at
one magnitude (9 of 30). Flips are offered but in no default: they are not label-preserving for
digits or text in a picture.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from polyfuse.data.augmentations.base import augmentation, chance, integers, uniform

MAGNITUDE = 9 / 30  # RandAugment's M=9 on its 0..30 scale


def _pixels(fn):  # type: ignore[no-untyped-def]
    """Run ``fn`` on float 0..1 pixels and give the input's dtype back."""

    def wrapped(values: Tensor, generator: torch.Generator) -> Tensor:
        if values.dtype == torch.uint8:
            out = fn(values.float() / 255.0, generator)
            return (out.clamp(0, 1) * 255.0).round().to(torch.uint8)
        return fn(values.float(), generator).clamp(0, 1).to(values.dtype)  # type: ignore[no-any-return]

    wrapped.__doc__, wrapped.__name__ = fn.__doc__, fn.__name__
    return wrapped


def _images(x: Tensor) -> Tensor:
    return x.unsqueeze(1) if x.dim() == 3 else x  # [B, H, W] -> [B, 1, H, W]


def affine(x: Tensor, angle: Tensor, scale: Tensor, shift: Tensor, shear: Tensor | None = None) -> Tensor:
    """Each row rotated by ``angle`` (radians), zoomed in by 1 / ``scale`` and moved by ``shift``
    ([B, 2], a share of the half-size), resampled bilinearly with edges repeated."""
    images = _images(x)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    shear = torch.zeros_like(angle) if shear is None else shear
    theta = torch.stack(
        [torch.stack([cos, -sin + shear, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )  # [B, 2, 3]
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(x.shape)


@augmentation("flip", "image")
@_pixels
def flip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror half of the rows left to right."""
    rows = chance(generator, (x.shape[0],), 0.5, x.device).view(-1, *[1] * (x.dim() - 1))
    return torch.where(rows, x.flip(-1), x)


@augmentation("crop", "image")
@_pixels
def crop(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random resized crop: a square of 75-100% of the area, anywhere in the picture, resized back."""
    rows = x.shape[0]
    scale = uniform(generator, rows, 0.75, 1.0, x).sqrt()
    room = 1 - scale
    shift = (
        torch.stack([uniform(generator, rows, -1, 1, x), uniform(generator, rows, -1, 1, x)], 1)
        * room[:, None]
    )
    return affine(x, torch.zeros_like(scale), scale, shift)


@augmentation("rotate", "image")
@_pixels
def rotate(x: Tensor, generator: torch.Generator) -> Tensor:
    """Rotate each row by up to 15 degrees either way."""
    rows = x.shape[0]
    angle = uniform(generator, rows, -15.0, 15.0, x) * math.pi / 180
    return affine(x, angle, torch.ones_like(angle), torch.zeros(rows, 2, dtype=x.dtype, device=x.device))


@augmentation("color_jitter", "image")
@_pixels
def color_jitter(x: Tensor, generator: torch.Generator) -> Tensor:
    """Brightness, contrast and (colour pictures) saturation each changed by up to 20%."""
    images, rows = _images(x), x.shape[0]
    view = (rows, 1, 1, 1)
    images = images * uniform(generator, rows, 0.8, 1.2, x).view(view)  # brightness
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = mean + (images - mean) * uniform(generator, rows, 0.8, 1.2, x).view(view)  # contrast
    if images.shape[1] == 3:
        grey = images.mean(dim=1, keepdim=True)
        images = grey + (images - grey) * uniform(generator, rows, 0.8, 1.2, x).view(view)  # saturation
    return images.reshape(x.shape)


@augmentation("pixel_noise", "image")
@_pixels
def noise(x: Tensor, generator: torch.Generator) -> Tensor:
    """Gaussian pixel noise of a standard deviation up to 0.08 (of the 0..1 range) per row."""
    sigma = uniform(generator, x.shape[0], 0.0, 0.08, x).view(-1, *[1] * (x.dim() - 1))
    return x + sigma * torch.randn(x.shape, generator=generator).to(x.device, x.dtype)


@augmentation("cutout", "image")
@_pixels
def cutout(x: Tensor, generator: torch.Generator) -> Tensor:
    """Cutout (DeVries & Taylor, 2017, "Improved Regularization of Convolutional Neural Networks with
    Cutout"): a square of a quarter of the side, anywhere, set to the row's mean."""
    images = _images(x)
    rows, _, height, width = images.shape
    side = max(1, min(height, width) // 4)
    top = integers(generator, rows, 0, height - side, x.device)
    left = integers(generator, rows, 0, width - side, x.device)
    ys = torch.arange(height, device=x.device)[None, :, None]
    xs = torch.arange(width, device=x.device)[None, None, :]
    inside = (ys >= top[:, None, None]) & (ys < (top + side)[:, None, None])
    inside = inside & (xs >= left[:, None, None]) & (xs < (left + side)[:, None, None])  # [B, H, W]
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return torch.where(inside[:, None], mean.expand_as(images), images).reshape(x.shape)


def _randaugment_ops(x: Tensor, generator: torch.Generator) -> list[Tensor]:
    """Every operation of RandAugment's list applied to the whole batch at ``MAGNITUDE`` (a random
    sign per row where the operation has one)."""
    rows, zero = x.shape[0], torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    one, no_shift = torch.ones_like(zero), torch.zeros(rows, 2, dtype=x.dtype, device=x.device)

    def signed(size: float) -> Tensor:
        return torch.where(chance(generator, (rows,), 0.5, x.device), 1.0, -1.0).to(x.dtype) * size

    shift = torch.stack([signed(0.45 * MAGNITUDE), zero], 1)
    images = _images(x)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    bits = 8 - round(4 * MAGNITUDE)
    levels = 2**bits - 1
    return [
        x,  # identity
        affine(x, signed(30 * MAGNITUDE * math.pi / 180), one, no_shift),  # rotate
        affine(x, zero, one, no_shift, shear=signed(0.3 * MAGNITUDE)),  # shear
        affine(x, zero, one, shift),  # translate x
        affine(x, zero, one, shift.flip(1)),  # translate y
        (images * (1 + signed(0.9 * MAGNITUDE)).view(-1, 1, 1, 1)).reshape(x.shape),  # brightness
        (mean + (images - mean) * (1 + signed(0.9 * MAGNITUDE)).view(-1, 1, 1, 1)).reshape(
            x.shape
        ),  # contrast
        torch.where(x >= 1 - MAGNITUDE, 1 - x, x),  # solarize
        torch.round(x * levels) / levels,  # posterize
        ((images - low) / (high - low).clamp(min=1e-6)).reshape(x.shape),  # autocontrast
    ]


@augmentation("randaugment", "image")
@_pixels
def randaugment(x: Tensor, generator: torch.Generator) -> Tensor:
    """RandAugment: two operations per row, each drawn from identity, rotate, shear, translate x / y,
    brightness, contrast, solarize, posterize and autocontrast, at magnitude 9 of 30."""
    for _ in range(2):
        ops = torch.stack(_randaugment_ops(x, generator))  # [K, B, ...]
        chosen = integers(generator, x.shape[0], 0, len(ops) - 1, x.device)
        x = ops[chosen, torch.arange(x.shape[0], device=x.device)]
    return x
