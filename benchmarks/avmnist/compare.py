"""``polyfuse compare`` on AV-MNIST: the benchmark's item 4, polyfuse's own best, found by the engine.

    python -m benchmarks.avmnist.compare --variant avmnist-hard [--epochs 2] [--seeds 1]

The build's arrays become a table that ``compare`` reads like any other: each row's image and
spectrogram as in-memory PNG bytes (lossless for uint8 pixels; read back as a 28 px and a 112 px grey
image), the digit and the split. The grid is every modality subset x ``FUSIONS``, with MultiBench's
LeNets as encoders and polyfuse's default recipe (AdamW 2e-3, cosine, batch 64, modality dropout
0.2), late fusion's modality weights fit on validation. The best run is chosen on the validation
split (on ``avmnist-hard`` a held-out speaker; ``avmnist``'s validation reuses training clips).
Writes ``benchmarks/results/avmnist_compare_<variant>.md``; the comparison directory is ``--out``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.avmnist.models import AUDIO_LENET, IMAGE_LENET

RESULTS = Path(__file__).resolve().parents[1] / "results"
FUSIONS = ("concat", "gmu", "attention", "late", "lmf")
SIZES = {"image": 28, "audio": 112}  # pixels of each modality's square grey "image"


def as_table(arrays: dict[str, np.ndarray]) -> pd.DataFrame:
    """``load_arrays`` output as a polyfuse table: PNG bytes per image and spectrogram, digit, split."""
    return pd.DataFrame(
        {
            "image": [png(a) for a in arrays["x_image"]],
            "audio": [png(a) for a in arrays["x_audio"]],
            "digit": arrays["y"],
            "split": arrays["split"],
        }
    )


def png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def compare_options(epochs: int) -> dict[str, Any]:
    """What ``polyfuse.compare`` is told besides the table: both columns are grey images read at
    their own size, each encoded by its MultiBench LeNet; ``epochs`` epochs per run."""
    return {
        "label": "digit",
        "split_column": "split",
        "roles": {m: "image" for m in SIZES},
        "encoder_choices": {m: ["lenet"] for m in SIZES},
        "encoder_params": {"image": IMAGE_LENET, "audio": AUDIO_LENET},
        "processor_options": {m: {"image_size": s, "channels": "L"} for m, s in SIZES.items()},
        "max_epochs": epochs,
        "patience": epochs,
        "fit_modality_weights": True,  # late fusion only; the other fusions skip it
    }


def run(
    arrays: dict[str, np.ndarray],
    out: Path,
    epochs: int,
    fusions: tuple[str, ...] = FUSIONS,
    seeds: int = 1,
    explain: bool = True,
    verbose: bool = True,
) -> Any:
    """Compare every subset x fusion on ``arrays``; returns the ``CompareResult``."""
    import polyfuse

    frame = as_table(arrays)
    del arrays  # the caller's copy: the table holds the pixels now (the caller passes a temporary)
    return polyfuse.compare(
        frame,
        out=out,
        fusions=list(fusions),
        seeds=seeds,
        explain=explain,
        verbose=verbose,
        **compare_options(epochs),
    )


def markdown(result: Any, variant: str, epochs: int, command: str) -> list[str]:
    """The result page: chosen runs, the fused - single gap and the leaderboard (everything from the
    comparison directory, so a rerun that trains nothing rewrites the same page)."""
    from benchmarks.common import machine_line, summary_markdown

    info = json.loads((result.out / "compare.json").read_text())
    best, single, metric = info["best"], info["best_single"], info["metric"]
    gap = 100 * (best[metric] - single[metric])
    training = sum(float(r.get("train_seconds") or 0) for r in result.rows)
    return [
        f"# `polyfuse compare` on {variant}",
        "",
        f"Machine: {machine_line()}. Last command: `{command}` (a comparison directory keeps the runs of"
        f" earlier commands and trains only those not on its board). {len(result.rows)} runs of {epochs}"
        f" epochs, {training / 60:.0f} min of training in all.",
        "",
        f"Chosen on validation: **{best['modalities']} with {best['fusion']}**, test {metric} "
        f"**{best[metric]:.4f}** (val {best['val_score']:.4f}); best single modality on validation: "
        f"{single['modalities']}, test {single[metric]:.4f} (val {single['val_score']:.4f}); "
        f"gap **{gap:+.1f} points**.",
        "",
        *summary_markdown(result.summary, result.metric, val=True),
    ]


def main() -> None:
    from polyfuse.data.datasets.avmnist import load_arrays

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", default="avmnist-hard", choices=["avmnist", "avmnist-hard"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--fusions", default=",".join(FUSIONS))
    parser.add_argument("--out", type=Path, default=None, help="default: runs/avmnist-compare/VARIANT")
    parser.add_argument("--no-explain", action="store_true")
    args = parser.parse_args()
    out = args.out or Path("runs/avmnist-compare") / args.variant
    result = run(
        load_arrays(args.variant),
        out,
        args.epochs,
        tuple(f for f in args.fusions.split(",") if f),
        args.seeds,
        explain=not args.no_explain,
    )
    command = " ".join(["python -m benchmarks.avmnist.compare", *sys.argv[1:]])
    lines = markdown(result, args.variant, args.epochs, command)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"avmnist_compare_{args.variant}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
