"""Run the AV-MNIST benchmark plan, one fresh process per run; resumable; writes CSV + markdown."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from benchmarks.avmnist.models import MODELS

RESULTS = Path(__file__).resolve().parents[1] / "results"
CSV = RESULTS / "avmnist.csv"
KEY = ["variant", "model", "epochs", "seed"]
# Measured side by side on this project's idle machine, one run after the other on the same build
# (issue #22): MultiBench's unchanged modules, late fusion, batch 40, 2 threads.
MULTIBENCH = (
    "MultiBench's own code, measured side by side on the idle machine (issue #22): 114.6 s/epoch "
    "(polyfuse's multibench_late_fusion in the same session: 107.6 s/epoch, so about 1.07x), "
    "9.5 GiB peak RSS, 0.9858 after 2 epochs"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", default="avmnist,avmnist-hard")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", default="2", help="comma-separated epoch budgets, e.g. 2,30")
    args = parser.parse_args()
    rows = pd.read_csv(CSV).to_dict("records") if CSV.is_file() else []  # one frame per write: dtypes kept
    seen = {tuple(str(r[k]) for k in KEY) for r in rows}
    for epochs in args.epochs.split(","):
        for variant in args.variants.split(","):
            for model in args.models.split(","):
                for seed in range(args.seeds):
                    if (variant, model, epochs, str(seed)) in seen:
                        continue
                    row = run_child(variant, model, seed, int(epochs))
                    rows.append(row)
                    done = pd.DataFrame(rows)
                    RESULTS.mkdir(exist_ok=True)
                    done.to_csv(CSV, index=False)
                    write_markdown(done)
                    print(json.dumps(row), flush=True)


def run_child(variant: str, model: str, seed: int, epochs: int) -> dict[str, object]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.avmnist.run",
        "--variant",
        variant,
        "--model",
        model,
        "--seed",
        str(seed),
        "--epochs",
        str(epochs),
        *(["--no-bare"] if seed > 0 else []),  # bare compute: once per variant and model
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def write_markdown(frame: pd.DataFrame) -> None:
    from benchmarks.common import machine_line

    group = frame.groupby(["variant", "model", "epochs"], sort=False)
    table = group.agg(
        seeds=("seed", "count"),
        acc_mean=("test_accuracy", "mean"),
        acc_std=("test_accuracy", "std"),
        best_epochs=("best_epoch", lambda s: ",".join(str(int(e)) for e in s)),
        last=("test_accuracy_last", "mean"),
        last_seeds=("test_accuracy_last", "count"),
        sec=("seconds_per_epoch", "min"),
        bare=("bare_compute_seconds_per_epoch", "first"),  # the first seed's (NaN elsewhere)
        rss=("peak_rss_mb", "max"),
        sps=("samples_per_second", "max"),
        params=("params", "first"),
        load=("load_1min", "max"),
    ).reset_index()
    table["ratio"] = table["sec"] / table["bare"]  # the bare epoch is a property of the model, not the seed
    lines = [
        "# AV-MNIST benchmark",
        "",
        f"Machine: {machine_line()}. Command: `python -m benchmarks.avmnist` (rows: {CSV.name}).",
        f"Reference: {MULTIBENCH}.",
        "",
        "| variant | model | epochs | seeds | test accuracy | best epochs | last epoch's accuracy "
        "| s / epoch | bare s / epoch | ratio | peak RSS MiB | samples/s | params | max load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        std = 0.0 if pd.isna(r["acc_std"]) else r["acc_std"]
        cells = [r["variant"], r["model"], r["epochs"], r["seeds"], f"{r['acc_mean']:.4f} ± {std:.4f}"]
        partial = f" ({r['last_seeds']} of {r['seeds']} seeds)" if 0 < r["last_seeds"] < r["seeds"] else ""
        cells += [r["best_epochs"], _num(r["last"], ".4f") + partial]
        cells += [f"{r['sec']:.1f}", _num(r["bare"], ".1f"), _num(r["ratio"], ".2f"), f"{r['rss']:.0f}"]
        cells += [f"{r['sps']:.0f}", f"{int(r['params']):,}", f"{r['load']:.1f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += [
        "",
        "test accuracy: mean ± std over seeds, with the weights of the best validation epoch (as",
        "MultiBench tests its best checkpoint); best epochs: that epoch of each seed, from 0. Last",
        "epoch's accuracy: the mean over seeds of the last epoch's weights, without validation's choice",
        "or weight fitting (– for rows from before it was recorded). s / epoch: the fastest seed's",
        "training epoch with its validation pass (polyfuse's Lightning loop); samples/s likewise. bare:",
        "the first seed's same forward + backward + optimizer steps and validation passes over batches",
        "gathered in memory first; ratio = the fastest s / epoch ÷ bare (the input pipeline's",
        "overhead). Peak RSS: the largest run's own process. max load: the highest 1-minute load",
        "average at the end of a run (2 = this benchmark alone on 2 cores; higher means other work",
        "shared the machine).",
        "",
        "commit: the commit a run started from (`+dirty`: src/ had uncommitted changes). The rows marked",
        "`+reconstructed` ran before commits were recorded: theirs is the last commit before the one that",
        "first recorded the row (from git history), so uncommitted code cannot be ruled out for them.",
    ]
    (RESULTS / "avmnist.md").write_text("\n".join(lines) + "\n")


def _num(value: object, spec: str) -> str:
    """A number, or a dash where none was measured (a model run only without its bare epoch)."""
    return "–" if value is None or pd.isna(value) else format(value, spec)


if __name__ == "__main__":
    main()
