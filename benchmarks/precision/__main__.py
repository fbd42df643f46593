"""Mixed precision against fp32: training speed and test accuracy.

    python -m benchmarks.precision [--seeds 0-2] [--precisions 32-true,bf16-mixed] [--append]

Per seed and precision, ``polyfuse.fit`` trains the fused network (no single-modality baselines) on
digits-av re-split 55/15/30 for 539 test rows (fit's default encoders: the image and audio CNNs
train, MiniLM reads the note frozen), the kept epoch chosen on validation. ``bf16-mixed`` runs the
forward passes under ``torch.autocast`` in bfloat16 (Lightning's mixed precision; on a CPU without
native bfloat16 arithmetic the casts can cost more than they save), ``16-mixed`` needs a GPU. Rows
record the device, so a GPU machine's rows sit beside the CPU's. Writes ``results/precision.csv``
(one row per device, precision and seed) and ``.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.balance import tables
from benchmarks.common import (
    code_version,
    commit_list,
    earlier_results,
    machine_line,
    mean_std,
    seeds,
    with_row,
)

RESULTS = Path(__file__).resolve().parents[1] / "results"
STEM = RESULTS / "precision"


def run(precision: str, seed: int, max_epochs: int) -> dict[str, Any]:
    import torch

    import polyfuse

    frame, folder = tables.digits_av()
    predictor = polyfuse.fit(
        (frame, folder),
        "digit",
        seed=seed,
        precision=precision,
        max_epochs=max_epochs,
        val_fraction=0.15,
        test_fraction=0.3,
        baselines=False,
        progress=False,
        verbose=False,
    )
    fused = predictor.metrics["fused"]
    row = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "precision": precision,
        "seed": seed,
        "test_accuracy": predictor.metrics["test"]["accuracy"],
        "test_rows": predictor.metrics["rows"]["test"],
        "epochs": fused["epochs"],
        "train_seconds": fused["train_seconds"],
        "seconds_per_epoch": fused["train_seconds"] / fused["epochs"],
    }
    print(row, flush=True)
    return row


def write(frame: pd.DataFrame, args: argparse.Namespace) -> None:
    frame.to_csv(STEM.with_suffix(".csv"), index=False)
    lines = [
        "# Mixed precision against fp32 on digits-av",
        "",
        f"Machine: {machine_line()}; commit {commit_list(frame)}. Command: `python -m benchmarks.precision "
        f"--seeds {args.seeds} --precisions {args.precisions} --max-epochs {args.max_epochs}`.",
        "",
        "Mean ± std over seeds. `Δ accuracy` and `speed`: against `32-true` on the same device and seed "
        "(speed: fp32's seconds per epoch over this precision's, above 1 is faster).",
        "",
        "| device | precision | seeds | test rows | test accuracy | Δ accuracy (points) | s / epoch "
        "| speed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (device, precision), g in frame.groupby(["device", "precision"], sort=False):
        base = frame[(frame["device"] == device) & (frame["precision"] == "32-true")].set_index("seed")
        mine = g.set_index("seed")
        shared = mine.index.intersection(base.index)
        delta = 100 * (mine.loc[shared, "test_accuracy"] - base.loc[shared, "test_accuracy"])
        speed = base.loc[shared, "seconds_per_epoch"] / mine.loc[shared, "seconds_per_epoch"]
        lines.append(
            f"| {device} | {precision} | {len(g)} | {int(g['test_rows'].iloc[0])} | "
            f"{mean_std(g['test_accuracy'])} | {delta.mean():+.2f} ± {delta.std():.2f} | "
            f"{mean_std(g['seconds_per_epoch'], digits=2)} | {speed.mean():.2f} ± {speed.std():.2f} |"
        )
    STEM.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--precisions", default="32-true,bf16-mixed")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument(
        "--append", action="store_true", help="add to the CSV (same device, precision, seed replaced)"
    )
    args = parser.parse_args()
    frame, commit = earlier_results(STEM, args.append), code_version()
    for seed in seeds(args.seeds):
        for precision in args.precisions.split(","):
            frame = with_row(
                frame, run(precision, seed, args.max_epochs), commit, ["device", "precision", "seed"]
            )
            write(frame, args)
    print(STEM.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
