"""How long one training epoch of the default time-series encoder takes on 10,000 series x 3
channels x 500 steps (issue #17's target: at most 30 s on this project's 2-core CPU).

    python -m benchmarks.timeseries.epoch [--rows 10000] [--steps 500] [--epochs 3] [--encoder ts_cnn]

The series are ``.npy`` files of noise with a planted class pattern (so that training has something
to learn), read by ``polyfuse.fit`` as a user's table: 70/15/15 split, default batch size, no
baselines, no ensemble. Reported: seconds per epoch (the fit's training time, steps and validation
passes, over its epochs) and the whole fit's time, reading the files included. Run it on an
otherwise idle machine. Appends a row to ``results/timeseries_epoch.csv`` and rewrites
``results/timeseries_epoch.md``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import code_version, machine_line

RESULTS = Path(__file__).resolve().parents[1] / "results"


def make_table(folder: Path, rows: int, steps: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` series [steps, 3] of noise; class k adds a burst at frequency k + 1 somewhere."""
    rng = np.random.default_rng(seed)
    (folder / "series").mkdir(parents=True)
    t = np.arange(steps)
    cells, labels = [], []
    for i in range(rows):
        label = i % 4
        x = rng.normal(0.0, 1.0, (steps, 3)).astype(np.float32)
        start = int(rng.integers(0, steps - 100))
        x[start : start + 100, label % 3] += 2 * np.sin(2 * np.pi * (label + 1) * t[:100] / 25)
        np.save(folder / "series" / f"{i}.npy", x)
        cells.append(f"series/{i}.npy")
        labels.append(f"class{label}")
    return pd.DataFrame({"series": cells, "label": labels})


def main() -> None:
    import polyfuse

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--encoder", default="ts_cnn")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        frame = make_table(Path(folder), args.rows, args.steps)
        start = time.perf_counter()
        predictor = polyfuse.fit(
            (frame, Path(folder)), label="label", out=Path(folder) / "model", max_epochs=args.epochs,
            patience=args.epochs, encoders={"series": args.encoder}, baselines=False, ensemble="off",
            verbose=False, progress=False,
        )  # fmt: skip
        total = time.perf_counter() - start
    metrics = predictor.metrics
    row = {
        "rows": args.rows,
        "steps": args.steps,
        "encoder": args.encoder,
        "epochs": metrics["epochs"],
        "train_seconds": metrics["train_seconds"],
        "seconds_per_epoch": metrics["train_seconds"] / max(1, metrics["epochs"]),
        "fit_seconds": round(total, 1),
        "test_accuracy": metrics["test"]["accuracy"],
        "commit": code_version(),
        "machine": machine_line(),
    }
    csv = RESULTS / "timeseries_epoch.csv"
    table = pd.DataFrame([row])
    if csv.is_file():
        table = pd.concat([pd.read_csv(csv, dtype={"commit": str}), table])
    table.to_csv(csv, index=False)
    lines = [
        "# A time-series training epoch",
        "",
        "Command: `python -m benchmarks.timeseries.epoch` (rows: timeseries_epoch.csv). Seconds per epoch:",
        "the fit's training time (steps and validation passes) over its epochs; fit seconds: the whole",
        "`polyfuse.fit`, reading the 10,000 `.npy` files included.",
        "",
        "| rows | steps | encoder | epochs | s / epoch | fit s | test accuracy | commit | machine |",
        "|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {r.rows} | {r.steps} | {r.encoder} | {r.epochs} | {r.seconds_per_epoch:.1f} | "
            f"{r.fit_seconds} | {r.test_accuracy:.4f} | {r.commit} | {r.machine} |"
            for r in table.itertuples()
        ],
    ]
    (RESULTS / "timeseries_epoch.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
