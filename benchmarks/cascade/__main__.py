"""Dynamic modality selection on digits-av: how much inference compute the cascade saves, and at
what accuracy.

    python -m benchmarks.cascade [--seeds 0-4] [--tolerance 0.005] [--repeats 5]

For each seed: ``polyfuse.fit`` with its defaults (MiniLM text, the validation-chosen final model)
on digits-av re-split 55 / 15 / 30 (the built-in split keeps 270 test rows; 539 here, so one row is
0.19 points). The cascade's threshold is chosen on validation only: the cheapest point of fit's
validation curve within ``--tolerance`` of running every modality (``eval.cascade.threshold_within``).
On the test split, the full model (``predict_table``) and the cascade (``cascade_predict``) are
each timed ``--repeats`` times end to end on the already-decoded table (encoders, fusion and heads;
the median is kept) and scored. Decoding files is not counted: the table is decoded before either
runs. Timings mean something only on an otherwise idle machine.

Writes ``results/cascade_digits_av.csv``, ``.md`` and ``.png`` (seed 0's measured test curve).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.common import code_version, machine_line, seeds

RESULTS = Path(__file__).resolve().parents[1] / "results"
STEM = RESULTS / "cascade_digits_av"


def timed(fn: Any, repeats: int) -> tuple[Any, float]:
    """``fn()``'s result and its median wall seconds over ``repeats`` calls (after one warm-up)."""
    out = fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - start)
    return out, statistics.median(seconds)


def run_seed(
    seed: int, tolerance: float, repeats: int, curve: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    import polyfuse
    from polyfuse.data.datasets import load_dataset
    from polyfuse.eval.cascade import measured_curve, threshold_within
    from polyfuse.eval.selection import selection_score
    from polyfuse.models.cascade import cascade_predict
    from polyfuse.models.inference import predict_table
    from polyfuse.predictor import data_split

    frame, folder = load_dataset("digits-av")
    frame = frame.drop(columns=["split"])
    start = time.perf_counter()
    predictor = polyfuse.fit(
        (frame, folder), label="digit", seed=seed, val_fraction=0.15, test_fraction=0.3, verbose=False
    )
    fit_s = time.perf_counter() - start
    plan = predictor.metrics["cascade"]
    threshold = threshold_within(plan, tolerance)
    point = next(p for p in plan["curve"] if p["threshold"] == threshold)
    table, _ = predictor.encode(data_split(predictor, "test", (frame, folder)), targets=True)
    specs, model = predictor.schema.labels, predictor.model
    targets = {s.column: table.targets[s.column].numpy() for s in specs}

    def score(outputs: dict[str, Any]) -> float:
        return selection_score(specs, targets, {k: v.numpy() for k, v in outputs.items()})

    full, full_s = timed(lambda: predict_table(model, table), repeats)
    cascade, cascade_s = timed(lambda: cascade_predict(model, table, plan["order"], threshold), repeats)
    n = len(table)
    row = {
        "seed": seed,
        "final_model": predictor.metrics["final_model"],
        "test_rows": n,
        "order": " > ".join(plan["order"]),
        **{f"encoder_ms_{m}": plan["encoder_ms"][m] for m in plan["order"]},
        "threshold": threshold,
        "val_full": plan["curve"][-1]["val_score"],
        "val_cascade": point["val_score"],
        "test_full": score(full),
        "test_cascade": score(cascade.outputs),
        "ms_full": 1000 * full_s / n,
        "ms_cascade": 1000 * cascade_s / n,
        "full_share": float((cascade.stages == len(plan["order"])).float().mean()),
        "fit_s": fit_s,
    }
    row["saving"] = 1 - row["ms_cascade"] / row["ms_full"]
    row["accuracy_loss"] = row["test_full"] - row["test_cascade"]
    points = measured_curve(model, table, specs, plan["order"]) if curve else []
    return row, points


def write(frame: pd.DataFrame, points: list[dict[str, Any]], args: argparse.Namespace) -> None:
    frame.to_csv(STEM.with_suffix(".csv"), index=False)

    def ms(col: str) -> str:
        return f"{frame[col].mean():.3f} ± {frame[col].std():.3f}"

    lines = [
        "# Dynamic modality selection (the cascade) on digits-av",
        "",
        f"Machine: {machine_line()}; commit {code_version()}. Command: `python -m benchmarks.cascade "
        f"--seeds {args.seeds} --tolerance {args.tolerance} --repeats {args.repeats}`.",
        "",
        "Default `polyfuse fit` per seed on digits-av re-split 55/15/30 (test rows per seed: "
        f"{sorted(set(frame['test_rows']))}); threshold chosen on validation only (cheapest point within "
        f"{args.tolerance} of every modality); milliseconds per row measured end to end on the decoded test "
        f"table (median of {args.repeats} runs), mean ± std over {len(frame)} seeds.",
        "",
        "| | every modality | cascade |",
        "|---|---|---|",
        f"| test accuracy | {frame['test_full'].mean():.4f} ± {frame['test_full'].std():.4f} | "
        f"{frame['test_cascade'].mean():.4f} ± {frame['test_cascade'].std():.4f} |",
        f"| ms per row (measured) | {ms('ms_full')} | {ms('ms_cascade')} |",
        f"| rows that ran every modality | 100% | {100 * frame['full_share'].mean():.1f}% |",
        "",
        f"Compute saved: **{100 * frame['saving'].mean():.1f}% ± {100 * frame['saving'].std():.1f}%**; "
        f"accuracy lost: **{100 * frame['accuracy_loss'].mean():.2f} ± "
        f"{100 * frame['accuracy_loss'].std():.2f} points** (target: ≥ 30% less compute at ≤ 1 point).",
        "",
        "| seed | final model | order | threshold | val every / cascade | test every / cascade "
        "| ms every / cascade | saved |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in frame.iterrows():
        lines.append(
            f"| {r['seed']} | {r['final_model']} | {r['order']} | {r['threshold']} | {r['val_full']:.4f} / "
            f"{r['val_cascade']:.4f} | {r['test_full']:.4f} / {r['test_cascade']:.4f} | {r['ms_full']:.3f} / "
            f"{r['ms_cascade']:.3f} | {100 * r['saving']:.1f}% |"
        )
    if points:
        lines += ["", "Seed 0, the cascade run for real on its test split at each threshold:", ""]
        lines += ["| threshold | accuracy | ms per row | rows that ran every modality |", "|---|---|---|---|"]
        for p in points:
            share = 100 * p["full_share"]
            lines.append(f"| {p['threshold']} | {p['score']:.4f} | {p['ms_per_row']:.3f} | {share:.1f}% |")
        lines += ["", f"![accuracy against measured milliseconds per row]({STEM.name}.png)"]
        draw(points, frame)
    STEM.with_suffix(".md").write_text("\n".join(lines) + "\n")


def draw(points: list[dict[str, Any]], frame: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(
        [p["ms_per_row"] for p in points],
        [p["score"] for p in points],
        marker="o",
        label="seed 0, thresholds",
    )
    for kind, marker, colour, label in [
        ("cascade", "s", "C3", "chosen on validation (mean ± std)"),
        ("full", "D", "k", "every modality (mean ± std)"),
    ]:
        x, y = frame[f"ms_{kind}"], frame[f"test_{kind}"]
        ax.errorbar(x.mean(), y.mean(), xerr=x.std(), yerr=y.std(), fmt=marker, color=colour, label=label)
    ax.set(
        xlabel="measured milliseconds per row", ylabel="test accuracy", title="digits-av: modality cascade"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(STEM.with_suffix(".png"), dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--tolerance", type=float, default=0.005)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows, points = [], []
    for i, seed in enumerate(seeds(args.seeds)):
        row, curve = run_seed(seed, args.tolerance, args.repeats, curve=i == 0)
        rows.append(row)
        points = points or curve
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    write(pd.DataFrame(rows), points, args)
    print(STEM.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
