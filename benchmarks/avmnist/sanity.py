"""Sanity check of the AV-MNIST builds: a logistic regression on each modality alone.

    python -m benchmarks.avmnist.sanity

Fits scikit-learn's LogisticRegression on the training rows of each variant and modality (pixels
scaled to 0..1; spectrograms average-pooled 4x4 to 28x28, 784 features like the images) and
writes the test accuracy to ``benchmarks/results/avmnist_logreg.{csv,md}``. Expected on
``avmnist`` (issue #3): image about 0.50, audio about 0.95.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parents[1] / "results"
MODALITIES = {"image": "x_image", "audio": "x_audio"}


def flat_features(pixels: np.ndarray, modality: str) -> np.ndarray:
    """uint8 [N, H, W] as float32 [N, 784]: scaled to 0..1, spectrograms (112 px) pooled 4x4."""
    x = pixels.astype(np.float32) / 255.0
    if modality == "audio":
        x = x.reshape(len(x), 28, 4, 28, 4).mean(axis=(2, 4))
    return x.reshape(len(x), -1)


def logreg_accuracy(arrays: dict[str, np.ndarray], modality: str, max_iter: int = 200) -> float:
    """Test accuracy of a logistic regression fit on the training rows of one modality."""
    from sklearn.linear_model import LogisticRegression

    x = flat_features(arrays[MODALITIES[modality]], modality)
    train, test = arrays["split"] == "train", arrays["split"] == "test"
    model = LogisticRegression(max_iter=max_iter).fit(x[train], arrays["y"][train])
    return float(model.score(x[test], arrays["y"][test]))


def main() -> None:
    from benchmarks.common import machine_line
    from polyfuse.data.datasets.avmnist import load_arrays

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", default="avmnist,avmnist-hard")
    parser.add_argument("--max-iter", type=int, default=200)
    args = parser.parse_args()
    rows = []
    for variant in args.variants.split(","):
        arrays = load_arrays(variant)
        for modality in MODALITIES:
            start = time.perf_counter()
            accuracy = logreg_accuracy(arrays, modality, args.max_iter)
            seconds = round(time.perf_counter() - start, 1)
            train_rows = int((arrays["split"] == "train").sum())
            row = {"variant": variant, "modality": modality, "test_accuracy": round(accuracy, 4)}
            rows.append({**row, "train_rows": train_rows, "seconds": seconds})
            print(rows[-1], flush=True)
        del arrays
    frame = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    frame.to_csv(RESULTS / "avmnist_logreg.csv", index=False)
    lines = [
        "# AV-MNIST sanity check: logistic regression on one modality",
        "",
        f"Machine: {machine_line()}. Command: `python -m benchmarks.avmnist.sanity` "
        f"(LogisticRegression, lbfgs, max_iter {args.max_iter}; spectrograms pooled 4x4 to 784 features).",
        "",
        "| variant | modality | test accuracy | train rows | fit s |",
        "|---|---|---|---|---|",
        *(_row(r) for r in rows),
        "",
        "Expected on avmnist (issue #3): image about 0.50, audio about 0.95.",
        "",
    ]
    (RESULTS / "avmnist_logreg.md").write_text("\n".join(lines))


def _row(r: dict[str, object]) -> str:
    cells = [r["variant"], r["modality"], f"{r['test_accuracy']:.4f}", f"{r['train_rows']:,}", r["seconds"]]
    return "| " + " | ".join(str(c) for c in cells) + " |"


if __name__ == "__main__":
    main()
