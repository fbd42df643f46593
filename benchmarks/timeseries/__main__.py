"""Time series: BasicMotions and machines, the fused model against each modality alone.

    python -m benchmarks.timeseries [--runs basicmotions,japanese_vowels,machines,machines_rates]
        [--seeds 0-4]
        [--encoders ts_cnn,ts_gru,ts_patch,ts_minirocket] [--append]

Runs (each a ``polyfuse.fit`` as a user calls it, seeded; choices on validation only):

- ``basicmotions``: the UEA BasicMotions recordings (sktime's copy; the ``[timeseries]`` extra) as
  two modalities, accelerometer and gyroscope; per time-series encoder (``--encoders``, the first
  is fit's default), the final model, the fused network and each sensor alone. The archive's 40 test
  recordings are all there is: one recording is 2.5 points.
- ``japanese_vowels``: the UEA JapaneseVowels recordings (12 channels, 7-29 frames, 370 test
  recordings), one model per time-series encoder.
- ``machines``: the built-in predictive-maintenance table (6,000 rows, build seed = seed, 900 test
  rows), fit's defaults: the final model, the fused network and each modality alone.
- ``machines_rates``: the vibration column of ``machines-rates`` alone (timed CSVs from loggers at
  800-1,250 samples per second), resampled onto the learnt clock (``aligned``) and with its
  timestamps ignored (``timestamps ignored``: steps as read).
- ``machines_warp``: the vibration column of ``machines`` alone, trained as it is and with random
  time warps (``augment=True``), each tested on the test rows and on the same rows time-warped by up
  to 20% (``machines-warped``; both validated on the unwarped validation rows).

Writes ``results/timeseries.csv`` (``dataset, model, seed, test_accuracy, val_accuracy, encoder,
train_seconds, test_rows, commit``) and ``results/timeseries.md`` (mean ± std over seeds).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.common import code_version, commit_list, machine_line, seeds

RESULTS = Path(__file__).resolve().parents[1] / "results"
ENCODERS = ("ts_cnn", "ts_gru", "ts_patch", "ts_minirocket")


def _row(
    dataset: str,
    model: str,
    seed: int,
    encoder: str,
    m: dict[str, Any],
    metrics: dict[str, Any],
    **fields: Any,
) -> dict[str, Any]:
    """A CSV row for one model (``m``: its own metrics, ``metrics``: the fit's); ``fields`` override."""
    return {
        "dataset": dataset,
        "model": model,
        "seed": seed,
        "test_accuracy": m["test"]["accuracy"],
        "val_accuracy": m.get("val", {}).get("accuracy"),
        "encoder": encoder,
        "train_seconds": m.get("train_seconds"),
        "test_rows": metrics["rows"]["test"],
        "final_model": None,
        **fields,
    }


def _rows(dataset: str, seed: int, metrics: dict[str, Any], encoder: str) -> list[dict]:
    """One row for the final model, one for the fused network and one per single-modality baseline."""
    final = _row(dataset, "final", seed, encoder, metrics, metrics, final_model=metrics["final_model"])
    others = {"fused": metrics["fused"], **metrics.get("baselines", {})}
    return [final, *[_row(dataset, name, seed, encoder, m, metrics) for name, m in others.items()]]


def _one_model(dataset: str, model: str, seed: int, encoder: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """The row of a fit of one modality without baselines: its model is the final one."""
    return _row(dataset, model, seed, encoder, metrics, metrics, final_model=metrics["final_model"])


def _fit(table: Any, label: str, seed: int, **options: Any) -> dict[str, Any]:
    import polyfuse

    with tempfile.TemporaryDirectory() as out:
        predictor = polyfuse.fit(
            table, label=label, out=out, seed=seed, verbose=False, progress=False, **options
        )
    return predictor.metrics  # type: ignore[no-any-return]


def basicmotions(seed: int, encoders: list[str]) -> list[dict]:
    from polyfuse.data.datasets import build_dataset

    table = build_dataset("basicmotions", seed=seed)
    out = []
    for encoder in encoders:
        chosen = {"accelerometer": encoder, "gyroscope": encoder}
        out += _rows("basicmotions", seed, _fit(table, "activity", seed, encoders=chosen), encoder)
    return out


def japanese_vowels(seed: int, encoders: list[str]) -> list[dict]:
    from polyfuse.data.datasets import build_dataset

    table = build_dataset("japanese-vowels", seed=seed)
    return [
        _one_model("japanese-vowels", "series", seed, encoder, metrics)
        for encoder in encoders
        for metrics in [_fit(table, "speaker", seed, encoders={"series": encoder}, baselines=False)]
    ]


def machines(seed: int, encoders: list[str]) -> list[dict]:
    from polyfuse.data.datasets import build_dataset

    table = build_dataset("machines", seed=seed)
    return _rows("machines", seed, _fit(table, "fault", seed), "default")


def machines_rates(seed: int, encoders: list[str]) -> list[dict]:
    from polyfuse.data.datasets import build_dataset
    from polyfuse.predictor import read_rows

    frame, folder = read_rows(build_dataset("machines-rates", seed=seed))
    only = frame[["vibration", "fault", "split"]]
    out = []
    for name, resample in (("aligned", True), ("timestamps ignored", False)):
        options = {"processor_options": {"vibration": {"resample": resample}}, "baselines": False}
        metrics = _fit((only, folder), "fault", seed, **options)
        out.append(_one_model("machines-rates", f"vibration ({name})", seed, "ts_cnn", metrics))
    return out


def machines_warp(seed: int, encoders: list[str]) -> list[dict]:
    """The vibration alone, trained on machines as it is and with random time warps, each tested on
    the test rows and on the same rows time-warped by up to 20% (machines-warped)."""
    import polyfuse
    from polyfuse.data.datasets import build_dataset
    from polyfuse.predictor import read_rows

    def vibration_only(name: str) -> tuple[pd.DataFrame, Path]:
        frame, folder = read_rows(build_dataset(name, seed=seed))
        return frame[["vibration", "fault", "split"]], folder

    (plain, folder), (warped, warped_folder) = vibration_only("machines"), vibration_only("machines-warped")
    tests = {"machines": (plain, folder), "machines-warped": (warped, warped_folder)}
    out = []
    for model, augment in (("vibration", False), ("vibration, trained with time warps", True)):
        with tempfile.TemporaryDirectory() as model_dir:
            options = {"augment": augment, "baselines": False, "verbose": False, "progress": False}
            predictor = polyfuse.fit((plain, folder), label="fault", out=model_dir, seed=seed, **options)
        for name, (frame, base) in tests.items():
            test = frame[frame["split"] == "test"]
            accuracy = float((predictor.predict((test, base)) == test["fault"]).mean())
            fields = {"test_accuracy": accuracy, "test_rows": len(test)}
            out.append(_row(name, model, seed, "ts_cnn", predictor.metrics, predictor.metrics, **fields))
    return out


RUNS: dict[str, Callable[[int, list[str]], list[dict]]] = {
    "basicmotions": basicmotions,
    "japanese_vowels": japanese_vowels,
    "machines": machines,
    "machines_rates": machines_rates,
    "machines_warp": machines_warp,
}


def summary(frame: pd.DataFrame) -> list[str]:
    lines = [
        "| dataset | encoder | model | seeds | test accuracy | val accuracy | test rows |",
        "|---|---|---|---|---|---|---|",
    ]
    for (dataset, encoder, model), g in frame.groupby(["dataset", "encoder", "model"], sort=False):
        val = g["val_accuracy"].dropna()
        lines.append(
            f"| {dataset} | {encoder} | {model} | {len(g)} | {_pm(g['test_accuracy'])} | "
            f"{_pm(val) if len(val) else '–'} | {int(g['test_rows'].iloc[0])} |"
        )
    return lines


def _pm(values: pd.Series) -> str:
    return f"{values.mean():.4f} ± {values.std():.4f}" if len(values) > 1 else f"{values.mean():.4f}"


def write_markdown(frame: pd.DataFrame, stem: Path) -> None:
    commits = commit_list(frame)
    lines = [
        "# Time series: fused against each modality alone",
        "",
        f"Machine: {machine_line()}. Command: `python -m benchmarks.timeseries` (`--runs NAME --seeds ...",
        f"--append`) at {commits} (rows: {stem.name}.csv). Test accuracy, mean ± std over seeds; `final` is",
        "what `fit` keeps (the validation-chosen ensemble or the fused network), `fused` the fused network.",
        "",
        *summary(frame),
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--seeds", default="0-4", help="a range (0-4) or a comma list of seeds")
    parser.add_argument("--encoders", default=",".join(ENCODERS), help="the archive sets' encoders")
    parser.add_argument("--out", default=str(RESULTS / "timeseries"), help="results stem (.csv, .md)")
    parser.add_argument("--append", action="store_true", help="add to the CSV (new rows replace equal keys)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the markdown from the CSV")
    args = parser.parse_args()
    stem = Path(args.out)
    csv = stem.with_suffix(".csv")
    if args.report_only:
        write_markdown(pd.read_csv(csv, dtype={"commit": str}), stem)
        return
    frame = pd.read_csv(csv, dtype={"commit": str}) if args.append and csv.is_file() else pd.DataFrame()
    commit = code_version()
    encoders = args.encoders.split(",")
    for name in args.runs.split(","):
        for seed in seeds(args.seeds):
            rows = pd.DataFrame(RUNS[name](seed, encoders)).assign(commit=commit)
            print(rows.to_string(), flush=True)
            frame = pd.concat([frame, rows]).drop_duplicates(
                ["dataset", "encoder", "model", "seed"], keep="last"
            )
            stem.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(csv, index=False)  # after every seed: a long run keeps what it finished
    write_markdown(frame, stem)


if __name__ == "__main__":
    main()
