"""``polyfuse export MODEL_DIR``: export, check parity, optionally quantize and compare accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyfuse.data.batch import EncodedTable
from polyfuse.errors import PolyfuseError
from polyfuse.export.onnx import example_table, export_onnx
from polyfuse.export.quantize import compare_int8, int8_path, quantize_int8

if TYPE_CHECKING:
    from polyfuse.predictor import Predictor

QUANTIZATIONS = ("int8",)


def export_dir(
    model_dir: str | Path,
    onnx_path: str | Path | None = None,
    quantize: str | None = None,
    data: Any = None,
    on_error: str = "raise",
) -> dict[str, Any]:
    """Export a saved model directory; what the CLI prints.

    Args:
        model_dir: A directory written by ``Predictor.save``.
        onnx_path: The file to write; default ``model_dir/model.onnx``.
        quantize: "int8" also writes ``<stem>.int8.onnx`` and compares its accuracy with fp32.
        data: A labelled table (path, DataFrame or ``(frame, folder)``) to check parity and compare
            accuracy on; default the model's own test split, else made-up rows (no accuracy then).
        on_error: "raise" or "skip" bad rows of ``data``.

    Returns:
        ``onnx`` (path), ``bytes``, ``parity`` (max |onnx - torch| logit), ``rows`` (where the rows
        came from) and, with ``quantize``, ``int8`` (path), ``int8_bytes`` and ``comparison``
        (``compare_int8``'s result, None without labelled rows).
    """
    import polyfuse

    if quantize is not None and quantize not in QUANTIZATIONS:
        raise PolyfuseError(f"--quantize {quantize!r}: choose from {list(QUANTIZATIONS)}")
    predictor = polyfuse.load(model_dir)
    out = Path(onnx_path) if onnx_path is not None else Path(model_dir) / "model.onnx"
    table, source = _rows(predictor, data, on_error)
    info = export_onnx(predictor, out, table)
    summary: dict[str, Any] = {
        "onnx": str(out),
        "bytes": info["size_bytes"],
        "parity": info["parity"]["max_abs_diff"],
        "exporter": info["exporter"],
        "rows": source,
    }
    if quantize == "int8":
        small = int8_path(out)
        summary.update(int8=str(small), int8_bytes=quantize_int8(out, small)["size_bytes"])
        summary["comparison"] = compare_int8(predictor, out, small, table) if table.targets else None
    return summary


def _rows(predictor: Predictor, data: Any, on_error: str) -> tuple[EncodedTable, str]:
    """Labelled rows to trace, check and compare on, and a word on where they came from."""
    from polyfuse.predictor import data_split

    if data is not None:
        table, _ = predictor.encode(data, targets=True, on_error=on_error)
        source = "the given table"
    else:
        try:
            table, _ = predictor.encode(data_split(predictor, "test"), targets=True, on_error="skip")
            source = "the model's test split"
        except PolyfuseError:  # fit on an in-memory frame: no table to go back to
            return example_table(predictor), "made-up rows (pass --data for a real check)"
    if len(table) == 0:
        raise PolyfuseError(f"no usable rows in {source}")
    return table, f"{source} ({len(table)} rows)"
