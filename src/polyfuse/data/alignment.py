"""Aligning two series in time: dynamic time warping, its differentiable soft version, a DTW-aligned
view of one series on another's clock, and how good an alignment is.

- ``dtw(a, b)``: the classic dynamic-programming alignment (Sakoe & Chiba, 1978) of two series
  [Ta, C] and [Tb, C] under squared Euclidean frame distances, optionally inside a Sakoe-Chiba
  band; returns the cost and the warping path.
- ``warp_onto(a, b)``: ``a`` resampled onto ``b``'s steps along that path (each step of ``b`` gets
  the mean of the steps of ``a`` matched to it): the DTW-aligned view of ``a`` against ``b``.
- ``soft_dtw`` / ``soft_dtw_divergence``: soft-DTW (Cuturi & Blondel, ICML 2017), the smoothed
  minimum over all alignments, differentiable in both series, in batches; the divergence
  (Blondel, Mensch & Vert, AISTATS 2021) subtracts the self-similarity terms so that it is 0 for
  equal series and usable as an alignment loss between paired sequences.
- ``alignment_quality(path, Ta, Tb)``: the path's mean and largest distance from the diagonal (in
  steps of ``b``) and the share of steps matched one-to-one, for reporting.
- ``warp_positions`` / ``time_warp``: a smooth monotone warp of a series' clock that runs up to a
  given share faster or slower and keeps both ends (for warped test sets and augmentation).

NumPy for the exact DTW (its path is what is reported), torch for soft-DTW (its gradient is what is
trained); both are quadratic in the lengths, meant for series of up to a few thousand steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _frames(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[:, None] if x.ndim == 1 else x


def dtw(a: np.ndarray, b: np.ndarray, band: int | None = None) -> tuple[float, list[tuple[int, int]]]:
    """The DTW cost of aligning ``a`` [Ta(, C)] with ``b`` [Tb(, C)] and its path of (i, j) pairs,
    from (0, 0) to (Ta - 1, Tb - 1), each step moving i, j or both by one.

    Args:
        band: Sakoe-Chiba band: |i - j * Ta / Tb| <= band (None: unconstrained).
    """
    a, b = _frames(a), _frames(b)
    n, m = len(a), len(b)
    dist = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)  # [Ta, Tb]
    if band is not None:
        rows, cols = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
        dist = np.where(np.abs(rows - cols * n / m) <= max(band, abs(n - m)), dist, np.inf)
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    for i in range(1, n + 1):
        row, above, d = total[i], total[i - 1], dist[i - 1]
        diag = np.minimum(above[:-1], above[1:])  # from (i-1, j-1) or (i-1, j)
        for j in range(1, m + 1):
            row[j] = d[j - 1] + min(diag[j - 1], row[j - 1])
    return float(total[n, m]), _backtrack(total)


def _backtrack(total: np.ndarray) -> list[tuple[int, int]]:
    i, j = total.shape[0] - 1, total.shape[1] - 1
    path = [(i - 1, j - 1)]
    while (i, j) != (1, 1):
        moves = [(i - 1, j - 1), (i - 1, j), (i, j - 1)]
        i, j = min(moves, key=lambda ij: total[ij])
        path.append((i - 1, j - 1))
    return path[::-1]


def warp_onto(a: np.ndarray, b: np.ndarray, band: int | None = None) -> np.ndarray:
    """``a`` on ``b``'s clock: for each step j of ``b``, the mean of ``a``'s steps that DTW matches
    to j. Shape [Tb(, C)] like ``a``'s channels."""
    frames = _frames(a)
    _, path = dtw(frames, b, band)
    out = np.zeros((len(_frames(b)), frames.shape[1]))
    counts = np.zeros(len(out))
    for i, j in path:
        out[j] += frames[i]
        counts[j] += 1
    out /= counts[:, None]
    return out[:, 0] if np.asarray(a).ndim == 1 else out


def alignment_quality(path: list[tuple[int, int]], n: int, m: int) -> dict[str, float]:
    """How far a warping path strays from the straight line between the two series' ends.

    Returns:
        ``mean_lag`` and ``max_lag``: distance of each matched pair from the diagonal, in steps of
        the second series; ``one_to_one``: the share of path steps that advance both series.
    """
    pairs = np.asarray(path, dtype=np.float64)
    lag = np.abs(pairs[:, 0] * (m - 1) / max(n - 1, 1) - pairs[:, 1])
    diagonal = np.all(np.diff(pairs, axis=0) == 1, axis=1) if len(pairs) > 1 else np.ones(1, bool)
    return {"mean_lag": float(lag.mean()), "max_lag": float(lag.max()), "one_to_one": float(diagonal.mean())}


def warp_positions(u: np.ndarray, strength: Any, waves: Any) -> np.ndarray:
    """Where each of the warped series' steps reads the original: ``g(u) = u + strength / (waves pi)
    sin(waves pi u)`` for ``u`` in [0, 1] (fractions of the series), broadcast over arrays of
    strengths and waves. ``g`` keeps both ends and its slope, the local speed, stays within
    ``1 +- strength`` (monotone for ``|strength| < 1``)."""
    return u + strength / (waves * np.pi) * np.sin(waves * np.pi * u)  # type: ignore[no-any-return]


def time_warp(series: np.ndarray, strength: float, waves: int = 1) -> np.ndarray:
    """``series`` [T(, C)] with its clock warped (``warp_positions``), by linear interpolation;
    a NaN step spreads to the warped steps that read it."""
    x = _frames(series)
    length = len(x)
    source = warp_positions(np.linspace(0.0, 1.0, length), strength, waves) * (length - 1)
    out = np.stack([np.interp(source, np.arange(length), x[:, c]) for c in range(x.shape[1])], axis=1)
    return out[:, 0] if np.asarray(series).ndim == 1 else out


def soft_dtw(x: Any, y: Any, gamma: float = 0.1) -> Any:
    """Soft-DTW between batches of series x [B, Ta, C] and y [B, Tb, C] (torch tensors): [B].

    ``R[i, j] = d(x_i, y_j) + softmin_gamma(R[i-1, j-1], R[i-1, j], R[i, j-1])`` with
    ``softmin_gamma(v) = -gamma * log sum exp(-v / gamma)``, computed one anti-diagonal at a time so
    that a batch costs Ta + Tb vectorised steps; autograd gives the gradient. As gamma -> 0 it
    becomes the DTW cost.
    """
    import torch

    dist = torch.cdist(x, y) ** 2  # [B, Ta, Tb]
    batch, n, m = dist.shape
    big = 1e10  # "infinite", finite so that logsumexp and its gradient stay finite
    # R padded with a border: R[0, 0] = 0, the rest of the border "infinite".
    prev2 = torch.full((batch, n + 1), big, dtype=dist.dtype, device=dist.device)  # diagonal d - 2
    prev1 = prev2.clone()  # diagonal d - 1
    prev2[:, 0] = 0.0  # R[0, 0] on diagonal 0
    rows = torch.arange(n + 1, device=dist.device)
    for d in range(2, n + m + 1):  # cell (i, j) with i + j = d, 1 <= i <= n, 1 <= j <= m
        i = rows[max(1, d - m) : min(n, d - 1) + 1]
        options = torch.stack(
            [prev2[:, i - 1], prev1[:, i - 1], prev1[:, i]], dim=0
        )  # (i-1,j-1) (i-1,j) (i,j-1)
        soft = -gamma * torch.logsumexp(-options / gamma, dim=0)
        current = torch.full_like(prev1, big)
        current[:, i] = dist[:, i - 1, d - i - 1] + soft
        prev2, prev1 = prev1, current
    return prev1[:, n]


def soft_dtw_divergence(x: Any, y: Any, gamma: float = 0.1) -> Any:
    """``sdtw(x, y) - (sdtw(x, x) + sdtw(y, y)) / 2``: 0 for equal series, an alignment loss [B]."""
    return soft_dtw(x, y, gamma) - 0.5 * (soft_dtw(x, x, gamma) + soft_dtw(y, y, gamma))
