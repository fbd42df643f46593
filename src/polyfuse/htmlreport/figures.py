"""Figures as inline PNG data URIs, drawn with matplotlib's Agg canvas.

Each function builds its own ``matplotlib.figure.Figure`` (no pyplot, so no global figure state) at a
modest size and returns ``data:image/png;base64,...``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from polyfuse.extras import require

DPI = 110
WIDTH = 7.0  # inches; ~770 px at DPI, the width of the page's content column
# Bar colour by number of modalities in a configuration: single modalities grey, then blue -> red.
COUNT_COLORS = ["#9aa5b1", "#4c7fe0", "#7b4fd6", "#d2527f", "#e08a2c", "#2aa198"]
SERIES_COLORS = ["#4c7fe0", "#e08a2c", "#2aa198", "#d2527f", "#7b4fd6", "#8c6d31", "#5c6b7a", "#b5bd00"]
STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e8ee",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "legend.frameon": False,
    "legend.fontsize": 8,
}


def require_matplotlib() -> None:
    """Fail early, with the install command, when the ``explain`` extra is missing."""
    require("matplotlib", "explain", "the HTML report's figures")


def plain(labels: Iterable[str]) -> list[str]:
    """Names from the user's data as literal text: a "$" would otherwise start matplotlib mathtext."""
    return [str(label).replace("$", r"\$") for label in labels]


def count_color(n: int) -> str:
    return COUNT_COLORS[max(0, min(int(n), len(COUNT_COLORS)) - 1)]


def series_color(i: int) -> str:
    return SERIES_COLORS[i % len(SERIES_COLORS)]


@contextmanager
def _figure(height: float, ncols: int = 1, width: float = WIDTH) -> Iterator[tuple[Any, list[Any]]]:
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):  # type: ignore[arg-type]
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        axes = fig.subplots(1, ncols, squeeze=False)[0]
        yield fig, list(axes)


def to_uri(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def hbars(
    labels: Sequence[str],
    values: Sequence[float],
    colors: Sequence[str],
    xlabel: str,
    errors: Sequence[float] | None = None,
    legend: dict[str, str] | None = None,
    zoom: bool = False,
) -> str:
    """Horizontal bars, first label on top; ``zoom`` starts the axis near the smallest value."""
    height = min(1.0 + 0.26 * len(labels), 9.0)
    with _figure(height) as (fig, (ax,)):
        ys = list(range(len(labels)))
        ax.barh(ys, values, xerr=errors, color=colors, height=0.7, error_kw={"lw": 0.8, "capsize": 2})
        ax.set_yticks(ys, labels=plain(labels))
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.grid(axis="y", visible=False)
        if zoom:
            _zoom_x(ax, values, errors)
        if legend:
            handles = [_patch(color) for color in legend.values()]
            ax.legend(handles, plain(legend), loc="lower right")
        return to_uri(fig)


def _zoom_x(ax: Any, values: Sequence[float], errors: Sequence[float] | None) -> None:
    """Bars of similar positive scores: start the axis near the smallest so differences show."""
    finite = [v for v in values if v == v]
    if not finite or min(finite) <= 0:
        return
    spread = max(finite) - min(finite)
    margin = max(errors or [0.0]) + 0.15 * spread + 1e-9
    low = min(finite) - margin
    if low > 0.25 * max(finite):
        ax.set_xlim(left=low, right=max(finite) + margin)


def _patch(color: str) -> Any:
    from matplotlib.patches import Patch

    return Patch(color=color)


def grouped_bars(categories: Sequence[str], series: Mapping[str, Sequence[float]], ylabel: str) -> str:
    """Vertical bars, one group per category and one bar per series; a zero line for signed values."""
    width = 0.8 / max(len(series), 1)
    with _figure(2.9, width=min(WIDTH, 2.2 + 0.9 * len(categories) * len(series))) as (fig, (ax,)):
        for i, (name, values) in enumerate(series.items()):
            xs = [c + (i - (len(series) - 1) / 2) * width for c in range(len(categories))]
            ax.bar(xs, values, width=width * 0.92, color=series_color(i), label=plain([name])[0])
        ax.set_xticks(range(len(categories)), labels=plain(categories))
        ax.axhline(0, color="#62707f", lw=0.8)
        ax.set_ylabel(ylabel)
        ax.grid(axis="x", visible=False)
        if len(series) > 1:
            ax.legend()
        return to_uri(fig)


Curves = Mapping[str, tuple[Sequence[float], Sequence[float]]]  # name -> (xs, ys)


def line_panels(
    panels: Sequence[tuple[str, str, str, Curves]],
    marker: str = "o",
    vline: float | None = None,
    integer_x: bool = False,
) -> str:
    """Side-by-side line plots; each panel is (title, xlabel, ylabel, {name: (xs, ys)}).

    ``vline`` marks one x (e.g. the best epoch); ``integer_x`` keeps ticks on whole numbers (epochs).
    """
    with _figure(2.8, ncols=len(panels)) as (fig, axes):
        for ax, (title, xlabel, ylabel, curves) in zip(axes, panels, strict=True):
            for i, (name, (xs, ys)) in enumerate(curves.items()):
                ax.plot(xs, ys, marker=marker, ms=3, lw=1.6, color=series_color(i), label=plain([name])[0])
            if integer_x:
                ax.xaxis.set_major_locator(_integer_locator())
            if vline is not None:
                ax.axvline(vline, color="#62707f", ls="--", lw=0.8)
            ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
            if 1 < len(curves) <= 10:
                ax.legend()
        return to_uri(fig)


def colored_lines(
    xlabel: str,
    ylabel: str,
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], str]],
    legend: dict[str, str] | None = None,
) -> str:
    """One line per name in a given colour (e.g. each run's validation metric coloured by modality count)."""
    with _figure(3.0) as (fig, (ax,)):
        for xs, ys, color in curves.values():
            ax.plot(xs, ys, lw=1.0, alpha=0.75, color=color)
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.xaxis.set_major_locator(_integer_locator())
        if legend:
            ax.legend([_patch(color) for color in legend.values()], plain(legend), loc="lower right")
        return to_uri(fig)


def _integer_locator() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


# title, matrix, row names, column names
Heatmap = tuple[str, Sequence[Sequence[float | None]], Sequence[str], Sequence[str]]


def heatmaps(
    maps: Sequence[Heatmap],
    cmap: str = "Blues",
    row_normalize: bool = False,
    fmt: str = "{:.2f}",
    axis_labels: tuple[str, str] | None = None,
) -> str:
    """Annotated heatmaps side by side; ``row_normalize`` colours by row share (confusion matrices).

    Missing cells (None / NaN) stay blank; ``axis_labels`` is (x label, y label).
    """
    size = max(len(m[2]) for m in maps)
    side = min(max(2.6, 0.42 * size + 1.4), 7.0)
    with _figure(side, ncols=len(maps), width=min(WIDTH, side * len(maps) + 0.6)) as (fig, axes):
        for ax, (title, matrix, rows, cols) in zip(axes, maps, strict=True):
            values, shade = _shades(matrix, row_normalize)
            ax.imshow(shade, cmap=cmap, vmin=0.0, vmax=max(_nanmax(shade), 1e-12), aspect="equal")
            turn = size > 6
            ax.set_xticks(
                range(len(cols)),
                labels=plain(cols),
                rotation=45 if turn else 0,
                ha="right" if turn else "center",
            )
            ax.set_yticks(range(len(rows)), labels=plain(rows))
            ax.set_title(title)
            ax.grid(visible=False)
            if axis_labels:
                ax.set(xlabel=axis_labels[0], ylabel=axis_labels[1])
            if size <= 16:
                _annotate(ax, values, shade, fmt)
        return to_uri(fig)


def _shades(matrix: Sequence[Sequence[float | None]], row_normalize: bool) -> tuple[Any, Any]:
    import numpy as np

    values = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    if not row_normalize:
        return values, values
    return values, values / np.maximum(np.nansum(values, axis=1, keepdims=True), 1e-12)


def _nanmax(values: Any) -> float:
    import numpy as np

    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else 0.0


def _annotate(ax: Any, values: Any, shade: Any, fmt: str) -> None:
    top = max(_nanmax(shade), 1e-12)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if values[i, j] == values[i, j]:  # not NaN
                color = "white" if shade[i, j] > 0.6 * top else "#1f2933"
                ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=7.5, color=color)
