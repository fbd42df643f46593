"""Robustness from training strategies: clean and corrupted test accuracy, with and without the
default augmentation.

    python -m benchmarks.robustness [--seeds 0-2] [--strategies none,augment] [--append]

Per seed, digits-av split 55/15/30 with the seed (531-550 test rows), ``polyfuse.fit`` trains the
fused network (no baselines; the kept epoch chosen on validation) once per strategy: ``none`` (no
augmentation) and ``augment`` (``augment="default"``: every modality's default list). Each model is
scored on the test rows as they are and on the same rows corrupted by noise no training run saw:
every picture's pixels hit by salt-and-pepper noise (a share ``SALT`` of them set to black or white)
and every recording mixed with white noise at ``SNR_DB`` dB (new files, read through the model's own
preprocessing). ``pgd_accuracy`` stays empty until adversarial evaluation lands (issue #19 part 2).
Writes ``results/robustness.csv`` (one row per dataset, strategy and seed) and ``.md``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
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
STEM = RESULTS / "robustness"
STRATEGIES = {"none": "off", "augment": "default"}
SALT = 0.27  # share of each picture's pixels set to black or white (ImageNet-C impulse noise, severity 5)
SNR_DB = 0.0  # white noise mixed into each recording at this signal-to-noise ratio


def split(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``frame`` with a seeded 55/15/30 ``split`` column."""
    draw = np.random.default_rng([seed, 7]).random(len(frame))
    return frame.assign(split=np.where(draw < 0.55, "train", np.where(draw < 0.70, "val", "test")))


def corrupted(test: pd.DataFrame, folder: Path, out: Path, seed: int) -> pd.DataFrame:
    """The test rows with every picture and recording replaced by a noisy copy written to ``out``."""
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng([seed, 11])
    images, sounds = [], []
    for k, (image, audio) in enumerate(zip(test["image"], test["audio"], strict=True)):
        pixels = np.asarray(Image.open(folder / image))
        hit = rng.random(pixels.shape[:2]) < SALT
        salt = np.where(rng.random(pixels.shape[:2]) < 0.5, 0, 255).astype(pixels.dtype)
        if pixels.ndim == 3:  # colour: the same black or white in every channel
            hit, salt = hit[..., None], salt[..., None]
        pixels = np.where(hit, salt, pixels)
        images.append(str(out / f"{k:05d}.png"))
        Image.fromarray(pixels).save(images[-1])
        wave, rate = sf.read(folder / audio, dtype="float32")
        power = float(np.mean(wave**2)) or 1e-8
        noisy = wave + rng.normal(0, np.sqrt(power / 10 ** (SNR_DB / 10)), wave.shape).astype(np.float32)
        sounds.append(str(out / f"{k:05d}.wav"))
        sf.write(sounds[-1], noisy, rate)
    return test.assign(image=images, audio=sounds)


def run(strategy: str, seed: int, max_epochs: int) -> dict[str, Any]:
    import polyfuse

    frame, folder = tables.digits_av()
    frame = split(frame, seed)
    predictor = polyfuse.fit(
        (frame, folder),
        "digit",
        split_column="split",
        seed=seed,
        augment=STRATEGIES[strategy],
        max_epochs=max_epochs,
        baselines=False,
        progress=False,
        verbose=False,
    )
    test = frame[frame["split"] == "test"]
    row: dict[str, Any] = {"dataset": "digits_av", "strategy": strategy, "seed": seed, "test_rows": len(test)}
    row["clean_accuracy"] = float((predictor.predict((test, folder)) == test["digit"]).mean())
    with tempfile.TemporaryDirectory() as scratch:
        noisy = corrupted(test, folder, Path(scratch), seed)
        row["noisy_accuracy"] = float((predictor.predict((noisy, folder)) == test["digit"]).mean())
    row["pgd_accuracy"] = float("nan")
    row["epochs"] = predictor.metrics["fused"]["epochs"]
    print(row, flush=True)
    return row


def write(frame: pd.DataFrame, args: argparse.Namespace) -> None:
    frame.to_csv(STEM.with_suffix(".csv"), index=False)
    lines = [
        "# Robustness: clean and corrupted test accuracy",
        "",
        f"Machine: {machine_line()}; commit {commit_list(frame)}. Command: `python -m benchmarks.robustness "
        f"--seeds {args.seeds} --strategies {args.strategies} --max-epochs {args.max_epochs}`.",
        "",
        f"digits-av, {int(frame['test_rows'].min())}-{int(frame['test_rows'].max())} test rows per seed; "
        f"noisy: salt-and-pepper on {SALT:.0%} of each picture's pixels "
        f"and white noise at {SNR_DB:g} dB SNR in each recording, noise no training run saw. Mean ± std "
        "over seeds; Δ: against `none` on the same seed, in points.",
        "",
        "| dataset | strategy | seeds | clean | noisy | Δ clean | Δ noisy | epochs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, strategy), g in frame.groupby(["dataset", "strategy"], sort=False):
        base = frame[(frame["dataset"] == dataset) & (frame["strategy"] == "none")].set_index("seed")
        mine = g.set_index("seed")
        shared = mine.index.intersection(base.index)
        deltas = [
            100 * (mine.loc[shared, c] - base.loc[shared, c]) for c in ("clean_accuracy", "noisy_accuracy")
        ]
        lines.append(
            f"| {dataset} | {strategy} | {len(g)} | {mean_std(g['clean_accuracy'])} | "
            f"{mean_std(g['noisy_accuracy'])} | "
            + " | ".join(f"{d.mean():+.2f} ± {d.std():.2f}" for d in deltas)
            + f" | {g['epochs'].mean():.1f} |"
        )
    STEM.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument(
        "--append", action="store_true", help="add to the CSV (same strategy and seed replaced)"
    )
    args = parser.parse_args()
    frame, commit = earlier_results(STEM, args.append), code_version()
    for seed in seeds(args.seeds):
        for strategy in args.strategies.split(","):
            frame = with_row(
                frame, run(strategy, seed, args.max_epochs), commit, ["dataset", "strategy", "seed"]
            )
            write(frame, args)
    print(STEM.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
