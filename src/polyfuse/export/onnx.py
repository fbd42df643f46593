"""Export a model to ONNX (preprocessed tensors in, logits out) and prove it matches torch.

The graph is the whole ``MultimodalModel`` behind ``FlatModel``: every encoder, the fusion and every
head, with a dynamic batch axis. Preprocessing (decoding files, tokenizing) stays in Python: it is
the part a server must do anyway, and the part ONNX cannot express. A JSON sidecar beside the file
(``<file>.json``) records the input and output layout, versions and the measured parity, so that
``OnnxModel`` can feed the graph without guessing.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from polyfuse.data.batch import EncodedTable
from polyfuse.errors import PolyfuseError
from polyfuse.export.layout import (
    BATCH_AXIS,
    FlatModel,
    InputInfo,
    flat_tensors,
    input_layout,
    output_names,
)
from polyfuse.export.sidecar import SIDECAR_FORMAT, require, sidecar_path, write_sidecar
from polyfuse.models.multimodal import MultimodalModel

if TYPE_CHECKING:
    from polyfuse.predictor import Predictor

OPSET = 18  # the dynamo exporter's native opset; onnxruntime >= 1.14 runs it
TOLERANCE = 1e-4  # largest |onnxruntime - torch| logit accepted right after export


def export_onnx(
    predictor: Predictor,
    out_path: str | Path,
    table: EncodedTable | None = None,
    *,
    opset: int = OPSET,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """Export a Predictor's model to ONNX and check it against torch.

    Args:
        predictor: A fitted or loaded model.
        out_path: The ``.onnx`` file to write; the sidecar goes to ``<out_path>.json``.
        table: Encoded rows to trace with and to check parity on (``predictor.encode(rows)``);
            default: made-up rows (``example_table``), a weaker check: real rows are better.
        opset: ONNX opset to ask the exporter for.
        tolerance: Largest accepted |onnxruntime - torch| difference of any logit.

    Returns:
        The sidecar's content.
    """
    table = table if table is not None else example_table(predictor)
    return export_model(predictor.model, table, out_path, opset=opset, tolerance=tolerance)


def export_model(
    model: MultimodalModel,
    table: EncodedTable,
    out_path: str | Path,
    *,
    opset: int = OPSET,
    tolerance: float = TOLERANCE,
    trace_rows: int = 8,
    parity_rows: int = 64,
) -> dict[str, Any]:
    """``export_onnx`` for a bare model: any MultimodalModel and rows it accepts.

    The graph is traced on ``trace_rows`` rows; parity is then measured on one row and on up to
    ``parity_rows`` rows, so a batch axis that the exporter silently fixed fails here rather than
    in a server. A failed check removes the file: nothing half-right is left to serve.
    """
    from polyfuse.export.runtime import OnnxModel

    for module in ("onnx", "onnxscript", "onnxruntime"):
        require(module)
    if len(table) == 0:
        raise PolyfuseError("no rows to trace the model with")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    labels = list(model.heads.keys())
    layout = input_layout(table, model.modalities)
    wrapper = FlatModel(model, layout, labels).eval()
    example = table.take([i % len(table) for i in range(trace_rows)])  # >= 2 rows: no 0/1 specialisation
    exporter = _export(wrapper, flat_tensors(example, layout), out, layout, labels, opset)
    info = _info(model, layout, labels, out, exporter)
    sizes = sorted({1, min(len(table), parity_rows)})
    info["parity"] = {**parity(OnnxModel(out, info), model, table, sizes), "tolerance": tolerance}
    worst = info["parity"]["max_abs_diff"]
    if not worst <= tolerance:  # also catches NaN
        out.unlink()
        sidecar_path(out).unlink(missing_ok=True)  # an earlier export's, now describing nothing
        raise PolyfuseError(
            f"the ONNX export differs from torch by {worst:.3g} (> {tolerance:g}) on the given rows; "
            f"removed {out}. An encoder or fusion probably branches on data ({exporter} exporter)"
        )
    write_sidecar(info, out)
    return info


def _export(
    wrapper: FlatModel,
    args: tuple[torch.Tensor, ...],
    path: Path,
    layout: list[InputInfo],
    labels: list[str],
    opset: int,
) -> str:
    """Write the graph; returns the exporter that succeeded ("dynamo" or "torchscript")."""
    names, outs = [info.name for info in layout], output_names(labels)
    common: dict[str, Any] = {"input_names": names, "output_names": outs, "opset_version": opset}
    batch = torch.export.Dim(BATCH_AXIS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and renaming chatter
            torch.onnx.export(
                wrapper,
                args,
                str(path),
                **common,
                dynamo=True,
                external_data=False,  # one self-contained file: simpler to copy, quantize and size
                dynamic_shapes=(tuple({0: batch} for _ in args),),  # forward(*flat): one varargs entry
                verbose=False,
            )
        return "dynamo"
    except Exception as err:  # noqa: BLE001  (any exporter failure means: try the other one)
        # torch.export refuses Python branches on tensor values that the TorchScript tracer records
        # as taken on the example rows; the parity check that follows tells whether that was safe.
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        warnings.warn(
            f"dynamo ONNX export failed ({type(err).__name__}: {first}); using TorchScript", stacklevel=3
        )
    axes = {name: {0: BATCH_AXIS} for name in [*names, *outs]}
    torch.onnx.export(wrapper, args, str(path), **common, dynamo=False, dynamic_axes=axes)
    return "torchscript"


def _info(
    model: MultimodalModel, layout: list[InputInfo], labels: list[str], path: Path, exporter: str
) -> dict[str, Any]:
    """The sidecar's content, before parity is measured."""
    from polyfuse import __version__

    onnx = require("onnx")
    proto = onnx.load(str(path), load_external_data=False)
    opset = next(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx"))
    return {
        "format": SIDECAR_FORMAT,
        "inputs": [info.to_dict() for info in layout],
        "outputs": [
            _output(name, label, model) for name, label in zip(output_names(labels), labels, strict=True)
        ],
        "labels": labels,
        "opset": int(opset),
        "exporter": exporter,
        "versions": _versions(__version__),
        "size_bytes": path.stat().st_size,
    }


def _output(name: str, label: str, model: MultimodalModel) -> dict[str, Any]:
    head = model.heads[label]
    k = int(head.num_outputs)  # type: ignore[arg-type]
    return {"name": name, "label": label, "task": head.task, "num_outputs": k, "shape": [BATCH_AXIS, k]}


def _versions(polyfuse_version: str) -> dict[str, str]:
    found = {"polyfuse": polyfuse_version, "torch": torch.__version__}
    for module in ("onnx", "onnxscript", "onnxruntime"):
        found[module] = str(getattr(require(module), "__version__", "?"))
    return found


def parity(
    onnx_model: Any, model: MultimodalModel, table: EncodedTable, batch_sizes: list[int]
) -> dict[str, Any]:
    """Largest |onnxruntime - torch| logit over the first rows of ``table``, per batch size.

    Args:
        onnx_model: An ``OnnxModel``.
        model: The torch model it was exported from.
        table: Rows to compare on.
        batch_sizes: Each size runs one batch of the table's first rows (fewer if the table is shorter).
    """
    by_size = {}
    for size in batch_sizes:
        batch = table.take(list(range(min(size, len(table)))))
        with torch.no_grad():
            expected = model(batch)
        got = onnx_model.logits(batch)
        by_size[str(size)] = max(float((got[k] - expected[k].float()).abs().max()) for k in expected)
    return {"max_abs_diff": max(by_size.values()), "by_batch_size": by_size, "rows": len(table)}


def example_table(predictor: Predictor, rows: int = 8, seed: int = 0) -> EncodedTable:
    """Made-up encoded rows when no table is given: noise in float and image inputs, every other row
    with a modality absent. Integer inputs (token ids, category codes) stay 0, the one value every
    vocabulary has, so parity on these rows says less than on real ones."""
    import pandas as pd

    columns = [c for spec in predictor.schema.inputs for c in spec.columns]
    frame = pd.DataFrame({c: [None] * rows for c in columns}, dtype=object)
    table, _ = predictor.preprocessor.transform(frame, Path("/nonexistent"), targets=False)
    gen = torch.Generator().manual_seed(seed)
    for name, value in table.inputs.items():
        parts = value if isinstance(value, dict) else {None: value}
        for key, tensor in parts.items():
            noisy = _noise(tensor, gen)
            if isinstance(value, dict):
                value[key] = noisy  # type: ignore[index]
            else:
                table.inputs[name] = noisy
    for i, name in enumerate(table.mask):
        table.mask[name] = (torch.arange(rows) + i) % 3 != 0  # each modality absent in some rows
    return table


def _noise(tensor: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    if tensor.dtype == torch.uint8:
        return torch.randint(0, 256, tensor.shape, generator=gen, dtype=torch.uint8)
    if tensor.is_floating_point():
        return torch.randn(tensor.shape, generator=gen).to(tensor.dtype)
    return tensor
