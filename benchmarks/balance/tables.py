"""Synthetic tables with a planted modality imbalance."""

from __future__ import annotations

import numpy as np
import pandas as pd

WORDS = np.array(["early", "late", "damaged"])


def dominated(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """A planted dominant modality: the note (text) names the class every time; the numbers
    (tabular: ``x1`` = class + N(0, 0.8), ``x2`` noise) only hint at it. Label ``kind`` in a, b, c."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 3, n)
    return pd.DataFrame(
        {
            "x1": z + rng.normal(0, 0.8, n),
            "x2": rng.normal(0, 1, n),
            "text": [f"the parcel arrived {WORDS[k]} as usual" for k in z],
            "kind": np.array(["a", "b", "c"])[z],
        }
    )
