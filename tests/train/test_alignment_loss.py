"""``align_sequences``: a soft-DTW loss that teaches two sequence encoders token sequences that align."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

import polyfuse
from polyfuse.data.alignment import time_warp


def _paired(root: Path, n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Two recordings of each event: ``b`` is ``a`` time-warped (up to 20%) with its own noise and
    another channel count; the label is whether the event holds a burst."""
    rng = np.random.default_rng(seed)
    (root / "s").mkdir()
    rows = []
    for i in range(n):
        a = rng.normal(0, 0.3, (48, 2))
        if i % 2:
            start = int(rng.integers(0, 36))
            a[start : start + 12] += np.sin(np.linspace(0, np.pi, 12))[:, None] * 2
        b = time_warp(a, float(rng.uniform(-0.2, 0.2)))[:, :1] + rng.normal(0, 0.1, (48, 1))
        np.save(root / "s" / f"a{i}.npy", a.astype(np.float32))
        np.save(root / "s" / f"b{i}.npy", b.astype(np.float32))
        rows.append({"a": f"s/a{i}.npy", "b": f"s/b{i}.npy", "label": "burst" if i % 2 else "calm"})
    return pd.DataFrame(rows)


def _logged(out: Path) -> pd.DataFrame:
    (csv,) = list((out / "logs").rglob("metrics.csv"))
    return pd.read_csv(csv)


def test_the_alignment_loss_falls_and_the_model_still_learns(tmp_path: Path):
    frame = _paired(tmp_path)
    options = {"max_epochs": 6, "patience": 6, "batch_size": 32, "baselines": False, "verbose": False}
    aligned = polyfuse.fit(
        (frame, tmp_path), label="label", out=tmp_path / "m", align_sequences=1.0, **options
    )
    loss = _logged(tmp_path / "m")["train_align_loss"].dropna().to_numpy()
    assert len(loss) == 6 and np.isfinite(loss).all() and loss[-1] < 0.5 * loss[0], loss
    assert aligned.metrics["test"]["accuracy"] >= 0.8
    assert aligned.train_config.align_sequences == 1.0
    polyfuse.fit((frame, tmp_path), label="label", out=tmp_path / "p", **options)
    assert "train_align_loss" not in _logged(tmp_path / "p").columns  # off by default


def test_without_two_sequence_modalities_the_loss_is_zero():
    from polyfuse.data.batch import Batch
    from polyfuse.train.alignment import SequenceAlignment

    class One(torch.nn.Module):
        encoders = torch.nn.ModuleDict({"x": torch.nn.Linear(2, 2)})  # no token sequences

    loss = SequenceAlignment(One())(Batch({"x": torch.zeros(3, 2)}, {"x": torch.ones(3, dtype=torch.bool)}))  # type: ignore[arg-type]
    assert float(loss) == 0.0
