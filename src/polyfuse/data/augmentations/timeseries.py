"""Time-series augmentation: random clock warps of each series (``data.alignment.warp_positions``),
so a model learns what a drifting clock does not change."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from polyfuse.data.augmentations.base import augmentation

WARP = 0.2  # the largest change of a warped clock's speed


@augmentation("time_warp", "timeseries")
def time_warp(values: Any, generator: torch.Generator) -> Any:
    """Each series' clock warped at random (smooth, both ends of its valid span kept, local speed
    within 1 +- 0.2), by linear interpolation; a step is valid where both steps it reads are."""
    if not isinstance(values, dict):
        return values
    from polyfuse.data.alignment import warp_positions

    x, valid = values["values"], values["valid"]
    rows, channels, length = x.shape
    steps = np.arange(length)
    last = length - np.argmax(valid.flip(1).cpu().numpy(), axis=1) - 1  # each row's last valid step
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    strength = rng.uniform(-WARP, WARP, (rows, 1))
    waves = rng.integers(1, 3, (rows, 1))
    span = np.maximum(last, 1)[:, None]
    pos = np.where(
        steps <= span, warp_positions(np.minimum(steps / span, 1.0), strength, waves) * span, steps
    )
    low = np.clip(np.floor(pos).astype(np.int64), 0, length - 1)
    high = np.maximum(np.minimum(low + 1, last[:, None]), low)  # never past the row's last valid step
    frac = torch.from_numpy(pos - low).to(x.device, x.dtype)[:, None, :]
    lo, hi = torch.from_numpy(low).to(x.device), torch.from_numpy(high).to(x.device)

    def read(index: torch.Tensor) -> torch.Tensor:
        return x.gather(2, index[:, None, :].expand(rows, channels, length))

    warped = read(lo) * (1 - frac) + read(hi) * frac
    ok = valid.gather(1, lo) & valid.gather(1, hi)
    return {**values, "values": warped * ok[:, None, :], "valid": ok}
