"""Small PNG figures for an explain directory (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from polyfuse.extras import require

DPI = 100


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend, or a clear error naming the extra."""
    matplotlib = require("matplotlib", "explain", "explain's figures")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def figure(path: Path, size: tuple[float, float] = (5.0, 3.2), cols: int = 1) -> Iterator[Any]:
    """Yield axes of a new figure; save it to ``path`` and close it on exit."""
    plt = pyplot()
    fig, axes = plt.subplots(1, cols, figsize=size)
    try:
        yield axes
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)


def bars(path: Path, values: dict[str, float], title: str, xlabel: str) -> Path:
    """Horizontal bars, largest on top."""
    items = sorted(values.items(), key=lambda kv: kv[1])
    with figure(path, (5.0, 0.9 + 0.35 * len(items))) as ax:
        ax.barh([k for k, _ in items], [v for _, v in items], color="#4c72b0")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
    return path


def shapley_bars(path: Path, values: dict[str, float], metric: str, subsets: dict[str, float] | None) -> Path:
    """Modality Shapley values by masking (and over retrained subsets when given)."""
    names = list(values)
    y = np.arange(len(names))
    with figure(path, (5.0, 1.2 + 0.5 * len(names))) as ax:
        height = 0.4 if subsets else 0.7
        ax.barh(y, [values[m] for m in names], height, label="masking", color="#4c72b0")
        if subsets:
            ax.barh(
                y + height,
                [subsets.get(m, 0.0) for m in names],
                height,
                label="retrained subsets",
                color="#dd8452",
            )
            ax.legend(fontsize=8)
        ax.set_yticks(y + (height / 2 if subsets else 0), names)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title("Modality Shapley values")
        ax.set_xlabel(f"contribution to {metric}")
    return path


def robustness_curves(path: Path, curves: dict[str, dict[str, Any]], metric: str) -> Path:
    """Left: metric vs share of rows without the modality; right: metric vs noise level."""
    with figure(path, (8.0, 3.2), cols=2) as (left, right):
        for m, c in curves.items():
            left.plot(*zip(*c["drop"], strict=True), marker="o", label=m)
            right.plot(
                *zip(*c["noise"], strict=True), marker="o", label=f"{m} ({c.get('noise_on', 'input')})"
            )
        left.set_xlabel("share of rows with the modality dropped")
        right.set_xlabel("noise std / input std")
        for ax in (left, right):
            ax.set_ylabel(metric)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
    return path


def cascade_curve(path: Path, cascade: dict[str, Any], metric: str) -> Path:
    """The modality cascade's score against milliseconds per row: measured on the explained rows
    (end to end) and, for reference, the validation curve fit simulated (encoder time only)."""
    with figure(path, (5.0, 3.2)) as ax:
        measured = cascade["measured"]
        ax.plot([p["ms_per_row"] for p in measured], [p["score"] for p in measured], marker="o",
                label="measured here (end to end)")  # fmt: skip
        planned = cascade.get("validation") or []
        if planned:
            ax.plot([p["ms_per_row"] for p in planned], [p["val_score"] for p in planned], marker=".",
                    linestyle="--", label="validation (encoders only)")  # fmt: skip
        ax.set_xlabel("milliseconds per row")
        ax.set_ylabel(metric)
        ax.set_title("Cascade: " + " -> ".join(cascade["order"]))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return path


def heatmap(path: Path, matrix: Sequence[Sequence[float | None]], names: list[str], title: str) -> Path:
    """An M x M matrix with its values written in the cells."""
    values = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    side = 1.6 + 0.6 * len(names)
    with figure(path, (side + 1.0, side)) as ax:
        image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black")
        ax.figure.colorbar(image, ax=ax, fraction=0.046)
        ax.set_title(title)
    return path


def confusion_matrix(path: Path, classes: list[Any], matrix: list[list[int]]) -> Path:
    values = np.asarray(matrix)
    side = 2.0 + 0.35 * len(classes)
    with figure(path, (side + 0.8, side)) as ax:
        ax.imshow(values, cmap="Blues")
        labels = [str(c) for c in classes]
        ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 6 else 0)
        ax.set_yticks(range(len(labels)), labels)
        for (i, j), v in np.ndenumerate(values):
            if v:
                ax.text(
                    j,
                    i,
                    str(v),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v > values.max() / 2 else "black",
                )
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title("Confusion matrix")
    return path


def image_map(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Mean |IG| per pixel, and one sampled image beside its own map."""
    with figure(path, (8.0, 2.8), cols=3) as axes:
        for ax, key, title, cmap in zip(
            axes,
            ("map", "example", "example_map"),
            ("mean |IG| per pixel", "example", "its |IG|"),
            ("hot", "gray", "hot"),
            strict=True,
        ):
            ax.imshow(arrays[key], cmap=cmap)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    return path


def audio_profile(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """|IG| per time frame (and per mel bin x frame for log-mels)."""
    cols = 2 if "map" in arrays else 1
    with figure(path, (4.0 * cols, 3.0), cols=cols) as axes:
        first = axes[0] if cols == 2 else axes
        first.plot(arrays["profile"], color="#4c72b0")
        first.set_xlabel("frame")
        first.set_ylabel("|IG|")
        first.set_title("attribution over time", fontsize=9)
        if cols == 2:
            axes[1].imshow(arrays["map"], aspect="auto", origin="lower", cmap="hot")
            axes[1].set_xlabel("frame")
            axes[1].set_ylabel("mel bin")
            axes[1].set_title("mean |IG|", fontsize=9)
    return path
