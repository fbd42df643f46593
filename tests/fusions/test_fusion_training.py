"""Every registered fusion, trained end to end on the synthetic table, beats chance by a margin."""

from __future__ import annotations

import pytest

import polyfuse
import polyfuse.fusions  # noqa: F401  (registers the fusions)
from conftest import FAST, synthetic_frame
from polyfuse.registry import FUSIONS


@pytest.mark.parametrize("name", FUSIONS.names())
def test_fusion_trains_above_chance(name: str) -> None:
    # Three balanced classes: chance is 1/3. Every modality carries part of the label.
    frame = synthetic_frame(300, seed=0, task="multiclass")
    predictor = polyfuse.fit(frame, label="kind", fusion=name, max_epochs=3, baselines=False, **FAST)
    accuracy = predictor.metrics["test"]["accuracy"]
    assert accuracy >= 0.6, (name, predictor.metrics["test"])
