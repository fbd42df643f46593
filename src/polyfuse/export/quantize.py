"""Dynamic int8 quantization of an exported model, and what it costs in accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyfuse.data.batch import EncodedTable
from polyfuse.errors import PolyfuseError
from polyfuse.export.sidecar import read_sidecar, require, write_sidecar

if TYPE_CHECKING:
    from polyfuse.predictor import Predictor


def int8_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.int8.onnx``."""
    path = Path(onnx_path)
    return path.with_name(f"{path.stem}.int8{path.suffix}")


def quantize_int8(
    onnx_path: str | Path, out_path: str | Path | None = None, op_types: list[str] | None = None
) -> dict[str, Any]:
    """Quantize weights to int8 (activations stay float, scaled per batch at run time).

    Args:
        onnx_path: A file written by ``export_onnx`` (its sidecar is copied, with a note).
        out_path: Where to write; default ``<stem>.int8.onnx`` beside ``onnx_path``.
        op_types: Operator types to quantize; None: every type onnxruntime quantizes dynamically
            (Conv, MatMul, Gemm, Gather, ...: all load and run on its CPU provider as of 1.32).
            Pass e.g. ``["MatMul", "Gemm"]`` if an older onnxruntime lacks an integer kernel.

    Returns:
        The int8 file's sidecar: the fp32 one plus ``quantization`` (sizes, op types).
    """
    require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = Path(onnx_path)
    out = Path(out_path) if out_path is not None else int8_path(src)
    info = read_sidecar(src)
    quantize_dynamic(src, out, op_types_to_quantize=op_types, weight_type=QuantType.QInt8)
    info["quantization"] = {
        "method": "onnxruntime dynamic",
        "weights": "int8",
        "op_types": op_types or "all supported",
        "from": src.name,
        "fp32_bytes": src.stat().st_size,
    }
    info["size_bytes"] = out.stat().st_size
    info["parity"] = None  # int8 is not meant to match torch to 1e-4: see compare_int8
    write_sidecar(info, out)
    return info


def compare_int8(
    predictor: Predictor, fp32_path: str | Path, quantized_path: str | Path, table: EncodedTable
) -> dict[str, Any]:
    """Each label's main metric (accuracy for classification) of the fp32 and int8 files on labelled
    rows, the change, the largest output difference and both sizes. The first label's are at the top;
    with several labels ``by_label`` holds every label's."""
    from polyfuse.export.runtime import OnnxModel

    specs = predictor.schema.labels
    if any(spec.column not in table.targets for spec in specs):
        raise PolyfuseError("comparing fp32 and int8 needs labelled rows (encode with targets=True)")
    paths = {"fp32": Path(fp32_path), "int8": Path(quantized_path)}
    outputs = {name: OnnxModel(path, predictor).outputs(table) for name, path in paths.items()}
    per_label = {spec.column: _label_change(spec, table, outputs) for spec in specs}
    sizes = {name: path.stat().st_size for name, path in paths.items()}
    return {
        **per_label[specs[0].column],
        "rows": len(table),
        "fp32_bytes": sizes["fp32"],
        "int8_bytes": sizes["int8"],
        "size_ratio": sizes["int8"] / sizes["fp32"],
        **({"by_label": per_label} if len(specs) > 1 else {}),
    }


def _label_change(spec: Any, table: EncodedTable, outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One label's metric under the fp32 and int8 files, the change and the largest output difference."""
    from polyfuse.eval.metrics import compute_metrics, primary_metric

    metric = primary_metric(spec.task)
    y = table.targets[spec.column].numpy()
    ours = {name: out[spec.column] for name, out in outputs.items()}
    scores = {name: float(compute_metrics(spec.task, y, out.numpy())[metric]) for name, out in ours.items()}
    return {
        "label": spec.column,
        "metric": metric,
        "fp32": scores["fp32"],
        "int8": scores["int8"],
        "change": scores["int8"] - scores["fp32"],
        "max_abs_output_diff": float((ours["int8"] - ours["fp32"]).abs().max()),
    }
