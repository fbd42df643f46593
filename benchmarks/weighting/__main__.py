"""Two labels whose losses differ ~100x in scale: does each keep its single-label score?

    python -m benchmarks.weighting [--seeds 0-4] [--rows 3400] [--weightings sum,uncertainty,...]
                                   [--ema 0,0.98]

The ``two_scales`` table of ``benchmarks.balance.tables`` (3 classes ``kind`` with cross-entropy
about 1; ``price`` in raw units, std about 10, squared error about 100x larger before polyfuse
standardises the label; both read from the note and the numbers). Per seed, one split (70 / 15 / 15,
so 510 test rows of 3,400) shared by every model: a single-label fused model per label, then the
two-label fused model under each ``LOSS_WEIGHTINGS`` method, all of them once per ``--ema`` decay
(0: the weights as trained; else ``TrainConfig.ema``, validation and the kept epoch read a moving
average of the weights). Scores on test: accuracy of ``kind``, R² of ``price``; the kept epoch is
chosen on validation (mean over labels with two). Writes ``results/weighting.csv`` and ``.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.balance import tables
from benchmarks.common import code_version, machine_line, seeds

RESULTS = Path(__file__).resolve().parents[1] / "results"
STEM = RESULTS / "weighting"
LABELS = ["kind", "price"]


def run_seed(
    seed: int, rows: int, weightings: list[str], max_epochs: int, ema: float
) -> list[dict[str, Any]]:
    from polyfuse.config import ModelConfig
    from polyfuse.data.schema import infer_schema
    from polyfuse.data.split import split_indices
    from polyfuse.eval.probe import metric_value
    from polyfuse.fitting import FitRequest, prepare, train_and_test
    from polyfuse.models.inference import predict_table
    from polyfuse.reporting import Reporter

    frame, base = tables.two_scales(rows, seed), Path.cwd()
    quiet = Reporter(False)

    def request(labels: list[str], weighting: str = "sum") -> FitRequest:
        req = FitRequest(label=labels, encoders={"text": "text_bag"})
        req.train = dataclasses.replace(
            req.train, seed=seed, max_epochs=max_epochs, progress=False, loss_weighting=weighting, ema=ema
        )
        return req

    both = request(LABELS)
    schema = infer_schema(frame, LABELS, base)
    splits = split_indices(frame, schema, seed, both.train.val_fraction, both.train.test_fraction)

    def trained_scores(req: FitRequest) -> dict[str, float]:
        prep = prepare(frame, base, req, splits=splits)
        config = ModelConfig(prep.encoders, req.fusion, prep.heads)
        model = train_and_test(config, prep.pre, prep.tables, req.train, None, quiet, "fused").model
        test = prep.tables["test"]
        outputs = predict_table(model, test)
        return {
            s.column: metric_value(s.task, test.targets[s.column].numpy(), outputs[s.column].numpy())
            for s in prep.schema.labels
        }

    single = {label: trained_scores(request([label]))[label] for label in LABELS}
    out = []
    for weighting in weightings:
        scores = trained_scores(request(LABELS, weighting))
        out.append(
            {
                "seed": seed,
                "ema": ema,
                "weighting": weighting,
                "test_rows": len(splits["test"]),
                **{f"{label}_two": scores[label] for label in LABELS},
                **{f"{label}_single": single[label] for label in LABELS},
                **{f"{label}_delta": scores[label] - single[label] for label in LABELS},
            }
        )
        print(out[-1], flush=True)
    return out


def write(frame: pd.DataFrame, args: argparse.Namespace) -> None:
    frame.to_csv(STEM.with_suffix(".csv"), index=False)

    def pm(values: pd.Series, scale: float = 1.0) -> str:
        return f"{scale * values.mean():+.2f} ± {scale * values.std():.2f}"

    single = frame.drop_duplicates(["ema", "seed"])
    lines = [
        "# Two labels, losses 100x apart: adaptive loss weighting",
        "",
        f"Machine: {machine_line()}; commit {code_version()}. Command: `python -m benchmarks.weighting "
        f"--seeds {args.seeds} --rows {args.rows} --max-epochs {args.max_epochs} --ema {args.ema}`.",
        "",
        f"`two_scales`, {args.rows} rows, {int(frame['test_rows'].iloc[0])} test rows per seed, "
        f"{frame['seed'].nunique()} seeds. Single-label models (`ema` 0: the weights as trained; else "
        "validated and kept as a moving average of the weights with that decay per step): "
        + "; ".join(
            f"ema {ema:g}: `kind` accuracy {g['kind_single'].mean():.4f} ± {g['kind_single'].std():.4f}, "
            f"`price` R² {g['price_single'].mean():.4f} ± {g['price_single'].std():.4f}"
            for ema, g in single.groupby("ema")
        )
        + ". Differences are the two-label model minus the single-label model of the same seed and `ema`, "
        "in points (accuracy × 100, R² × 100); the target is each within 1 point (mean over seeds).",
        "",
        "| ema | weighting | kind accuracy | Δ kind (points) | price R² | Δ price (points) "
        "| both within 1 point |",
        "|---|---|---|---|---|---|---|",
    ]
    for (ema, weighting), g in frame.groupby(["ema", "weighting"], sort=False):
        ok = (g["kind_delta"].mean() >= -0.01) and (g["price_delta"].mean() >= -0.01)
        lines.append(
            f"| {ema:g} | {weighting} | {g['kind_two'].mean():.4f} ± {g['kind_two'].std():.4f} | "
            f"{pm(g['kind_delta'], 100)} | {g['price_two'].mean():.4f} ± {g['price_two'].std():.4f} | "
            f"{pm(g['price_delta'], 100)} | {'yes' if ok else 'no'} |"
        )
    STEM.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    from polyfuse.registry import LOSS_WEIGHTINGS
    from polyfuse.train import weighting  # noqa: F401  (registers the methods)

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--rows", type=int, default=3400)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--weightings", default=None, help="default: every LOSS_WEIGHTINGS name")
    parser.add_argument("--ema", default="0,0.98", help="weight-average decays to run every model with")
    args = parser.parse_args()
    names = args.weightings.split(",") if args.weightings else LOSS_WEIGHTINGS.names()
    decays = [float(d) for d in args.ema.split(",")]
    rows = [
        r
        for ema in decays
        for seed in seeds(args.seeds)
        for r in run_seed(seed, args.rows, names, args.max_epochs, ema)
    ]
    write(pd.DataFrame(rows), args)
    print(STEM.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
