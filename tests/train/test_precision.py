"""Mixed precision on the CPU: bf16-mixed trains, keeps fp32 weights and predicts like fp32."""

from __future__ import annotations

import numpy as np
import torch

import polyfuse
from conftest import FAST


def test_bf16_mixed_trains_on_the_cpu_and_keeps_fp32_weights(make_frame) -> None:
    frame = make_frame(200)
    fp32 = polyfuse.fit(frame, label="kind", max_epochs=3, **FAST)
    bf16 = polyfuse.fit(frame, label="kind", max_epochs=3, precision="bf16-mixed", **FAST)
    assert bf16.train_config.precision == "bf16-mixed"
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # autocast, not bf16 weights
    rows = frame.drop(columns=["kind"])
    probs = bf16.predict_proba(rows).to_numpy(dtype=float)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    agree = (bf16.predict(rows) == fp32.predict(rows)).mean()
    assert agree >= 0.9  # the same data, seed and recipe: the rounding changes few predictions
    assert bf16.metrics["fused"]["test"]["accuracy"] >= fp32.metrics["fused"]["test"]["accuracy"] - 0.1
