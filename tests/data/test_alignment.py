"""DTW, the DTW-aligned view, soft-DTW and alignment quality on series with a known warp."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polyfuse.data.alignment import alignment_quality, dtw, soft_dtw, soft_dtw_divergence, warp_onto


def _warped(n: int = 120, stretch: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth 2-channel series ``a``, and ``b[j] = a(w(j))`` for a monotone warp w that runs up to
    ``stretch`` faster or slower than real time; returns a, b and w (fractional steps of a)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    a = np.stack([np.sin(t / 6) + 0.3 * np.sin(t / 2.3), np.cos(t / 9)], axis=1) + rng.normal(0, 0.01, (n, 2))
    speed = 1 + stretch * np.sin(np.linspace(0, 2 * np.pi, n))  # steps of a per step of b, 0.8-1.2
    w = np.concatenate([[0.0], np.cumsum(speed[:-1])])
    w *= (n - 1) / w[-1]  # both ends meet
    b = np.stack([np.interp(w, t, a[:, c]) for c in range(2)], axis=1)
    return a, b, w


def test_dtw_recovers_a_known_warp_within_two_steps() -> None:
    a, b, w = _warped()
    cost, path = dtw(a, b)
    assert path[0] == (0, 0) and path[-1] == (len(a) - 1, len(b) - 1)
    steps = np.diff(np.asarray(path), axis=0)
    assert ((steps >= 0) & (steps <= 1)).all() and (steps.sum(axis=1) >= 1).all()  # monotone, continuous
    lag = [abs(i - w[j]) for i, j in path]
    assert max(lag) <= 2.0 and cost < 0.1 * ((a - b) ** 2).sum()  # far below the step-by-step distance
    quality = alignment_quality(path, len(a), len(b))
    assert quality["max_lag"] > 5 and 0 < quality["one_to_one"] < 1  # the warp is real


def test_warp_onto_undoes_the_warp() -> None:
    a, b, _ = _warped()
    aligned = warp_onto(b, a)  # b on a's clock
    assert aligned.shape == a.shape
    assert np.abs(aligned - a).mean() < 0.2 * np.abs(b - a).mean()
    assert warp_onto(a[:, 0], a[:, 0]).tolist() == pytest.approx(a[:, 0].tolist())  # one channel, no warp


def test_a_band_limits_the_path() -> None:
    a, b, _ = _warped()
    _, path = dtw(a, b, band=3)
    assert alignment_quality(path, len(a), len(b))["max_lag"] <= 3
    assert dtw(a, b, band=3)[0] >= dtw(a, b)[0]


def test_soft_dtw_tends_to_dtw_and_its_divergence_is_a_loss() -> None:
    a, b, _ = _warped(n=40)
    x = torch.tensor(a[None], dtype=torch.float64)
    y = torch.tensor(b[None], dtype=torch.float64)
    assert float(soft_dtw(x, y, gamma=1e-3)[0]) == pytest.approx(dtw(a, b)[0], abs=1e-2)
    assert float(soft_dtw_divergence(x, x)[0]) == pytest.approx(0.0, abs=1e-9)
    shifted = torch.roll(x, 3, dims=1)
    assert float(soft_dtw_divergence(x, y)[0]) < float(soft_dtw_divergence(x, shifted)[0])
    # as a loss: gradient descent on a free series pulls it onto the target
    free = torch.zeros_like(y, requires_grad=True)
    opt = torch.optim.Adam([free], lr=0.1)
    start = float(soft_dtw_divergence(free, x)[0])
    for _ in range(100):
        opt.zero_grad()
        loss = soft_dtw_divergence(free, x).sum()
        loss.backward()
        opt.step()
    assert torch.isfinite(free.grad).all() and float(loss) < 0.05 * start  # type: ignore[union-attr]


def test_soft_dtw_in_batches_of_unequal_lengths() -> None:
    x, y = torch.randn(3, 10, 2), torch.randn(3, 14, 2)
    batched = soft_dtw(x, y)
    assert batched.shape == (3,)
    one = torch.stack([soft_dtw(x[k : k + 1], y[k : k + 1])[0] for k in range(3)])
    assert torch.allclose(batched, one)


def test_time_warp_keeps_the_ends_and_bounds_the_speed() -> None:
    from polyfuse.data.alignment import time_warp, warp_positions

    u = np.linspace(0, 1, 1001)
    for strength, waves in ((0.2, 1), (-0.2, 2), (0.1, 2)):
        g = warp_positions(u, strength, waves)
        speed = np.diff(g) / np.diff(u)
        assert g[0] == 0 and g[-1] == pytest.approx(1) and speed.min() >= 1 - abs(strength) - 1e-3
        assert speed.max() <= 1 + abs(strength) + 1e-3 and speed.max() - speed.min() > abs(strength)
    a, _, _ = _warped(n=200, stretch=0.0)
    b = time_warp(a, 0.2)
    assert b.shape == a.shape and np.allclose(b[[0, -1]], a[[0, -1]])
    _, path = dtw(a, b)
    assert alignment_quality(path, len(a), len(b))["max_lag"] == pytest.approx(0.2 / np.pi * 199, abs=3)
