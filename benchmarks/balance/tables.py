"""Tables with a planted modality imbalance, for the balancing benchmark and its tests.

``dominated``: synthetic, in memory. ``spoken_digits``: what a user's table looks like (real PNG and
WAV files on disk, built from ../shared/data). ``complementary``, ``two_scales`` and ``prices``:
synthetic tables for the other questions of the benchmark (an easy and a complementary modality; two
labels whose losses differ 100x in scale; a regression label). ``avmnist_hard``: the ``avmnist-hard``
build (``polyfuse datasets build avmnist-hard``) as a table of in-memory PNG cells.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

WORDS = np.array(["early", "late", "damaged"])
DIGIT_WORDS = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])


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


def complementary(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """An easy and a complementary modality: the note names the class on 70% of the rows (and says
    nothing on the rest); the numbers place every row, noisily (``x1`` = class + N(0, 0.7), ``x2``
    noise). Each alone is well short of both together. Label ``kind`` in a, b, c."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 3, n)
    named = rng.random(n) < 0.7
    return pd.DataFrame(
        {
            "x1": z + rng.normal(0, 0.7, n),
            "x2": rng.normal(0, 1, n),
            "text": [
                f"the parcel arrived {WORDS[k]}" if s else "the parcel arrived"
                for k, s in zip(z, named, strict=True)
            ],
            "kind": np.array(["a", "b", "c"])[z],
        }
    )


def two_scales(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Two labels whose losses differ about 100x in scale: ``kind`` (3 classes, cross-entropy about 1)
    and ``price`` (regression in raw units with std about 10, so its squared error is about 100x larger
    before the label is standardised). Both depend on the note and the numbers."""
    frame = complementary(n, seed)
    rng = np.random.default_rng([seed, 1])
    z = frame["kind"].map({"a": 0, "b": 1, "c": 2}).to_numpy()
    frame["price"] = 10 * (frame["x1"] - z) + 8 * z + rng.normal(0, 2, n)
    return frame


def prices(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A regression label from a dominant note and weak numbers: ``price`` = 3 z + 0.5 x1 + noise,
    where the note names z (0-2) and ``x1`` is a noisy copy of it."""
    frame = complementary(n, seed).drop(columns="kind")
    rng = np.random.default_rng([seed, 2])
    z = np.array([next((i for i, w in enumerate(WORDS) if w in t), 1) for t in frame["text"]])
    frame["price"] = 3 * z + 0.5 * frame["x1"] + rng.normal(0, 0.5, n)
    return frame


def digits_av() -> tuple[pd.DataFrame, Path]:
    """The built-in digits-av table (``polyfuse.load_dataset``) without its split column, so that
    ``fit``'s seeded split applies (the built-in one keeps 270 test rows)."""
    from polyfuse.data.datasets import load_dataset

    frame, folder = load_dataset("digits-av")
    return frame.drop(columns=["split"]), folder


def avmnist_hard(n: int | None, seed: int) -> pd.DataFrame:
    """``avmnist-hard`` built with ``seed`` (its held-out speakers and noise), about ``n`` rows with the
    build's split in proportion (``None``: the full build), as ``benchmarks.avmnist.compare`` reads it:
    each image and spectrogram a PNG cell, ``digit`` and ``split``."""
    from benchmarks.avmnist.compare import as_table
    from polyfuse.data.datasets.avmnist import load_arrays

    return as_table(load_arrays("avmnist-hard", limit=n, seed=seed))


def spoken_digits(
    out: Path, n: int = 3000, seed: int = 0, source: Path | None = None, split: tuple[int, int] | None = None
) -> Path:
    """The table of issue #16, as a user would bring it: a CSV beside real files.

    Each row: an MNIST digit saved as PNG, mostly hidden (70% of it under random blocks) and noisy;
    a clean spoken recording of the same digit (FSDD WAV, copied as a file); a sparse free-text note
    (names the digit on 10% of the rows); a weak numeric column (the digit plus noise of std 4); label
    ``digit``. One PNG is corrupt (truncated). The audio dominates. With ``split=(train, val)`` a
    ``split`` column gives the first ``train`` rows to training, the next ``val`` to validation and the
    rest to test (a user's few hundred labelled rows, tested on many). Returns the CSV's path.
    """
    import shutil

    from PIL import Image

    from polyfuse.data.datasets.avmnist import default_source

    source = source or default_source()
    rng = np.random.default_rng(seed)
    mnist = np.load(source / "mnist" / "mnist.npz")
    images, labels = mnist["x_test"], mnist["y_test"]
    recordings = sorted((source / "fsdd" / "recordings").glob("*.wav"))
    by_digit = {d: [p for p in recordings if p.name.startswith(f"{d}_")] for d in range(10)}
    (out / "img").mkdir(parents=True, exist_ok=True)
    (out / "wav").mkdir(exist_ok=True)
    rows = []
    for i, j in enumerate(rng.choice(len(images), n, replace=False)):
        digit = int(labels[j])
        Image.fromarray(_hidden(images[j], rng)).save(out / "img" / f"{i}.png")
        clip = by_digit[digit][int(rng.integers(len(by_digit[digit])))]
        shutil.copyfile(clip, out / "wav" / f"{i}.wav")
        note = f"customer wrote {DIGIT_WORDS[digit]}" if rng.random() < 0.1 else ""
        rows.append(
            {
                "image": f"img/{i}.png",
                "audio": f"wav/{i}.wav",
                "note": note,
                "weak": digit + rng.normal(0, 4),
                "digit": digit,
            }
        )
    if split is not None:
        train, val = split
        for i, row in enumerate(rows):
            row["split"] = "train" if i < train else "val" if i < train + val else "test"
    whole = (out / "img" / "0.png").read_bytes()
    (out / "img" / "0.png").write_bytes(whole[: len(whole) // 2])
    table = out / "spoken_digits.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    return table


def _hidden(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 digit with 70% of its area under random grey blocks and Gaussian noise (std 0.25)."""
    img = image.astype(np.float64) / 255.0
    side = int(round(28 * np.sqrt(0.3)))  # the one window left visible
    y, x = rng.integers(0, 28 - side + 1, size=2)
    blocks = rng.uniform(0.0, 1.0, (7, 7)).repeat(4, 0).repeat(4, 1)
    covered = np.ones_like(img, dtype=bool)
    covered[y : y + side, x : x + side] = False
    img = np.where(covered, blocks, img) + rng.normal(0, 0.25, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
