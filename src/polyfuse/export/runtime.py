"""Run an exported model with onnxruntime, as a drop-in for the torch model's ``outputs``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polyfuse.data.batch import Batch, EncodedTable
from polyfuse.errors import PolyfuseError
from polyfuse.export.layout import InputInfo, feeds
from polyfuse.export.sidecar import read_sidecar, require

Readable = Callable[[dict[str, Tensor]], dict[str, Tensor]]


class OnnxModel:
    """An exported model under onnxruntime with ``Predictor.outputs``'s semantics.

    Args:
        onnx_path: The ``.onnx`` file written by ``export_onnx`` (or ``quantize_int8``).
        predictor_or_sidecar: A ``Predictor`` (its heads turn logits into probabilities; the
            layout comes from the sidecar beside ``onnx_path``), the sidecar's content as a dict or
            its path, or None for the sidecar beside ``onnx_path``. Without a Predictor the heads'
            ``predict`` is rebuilt from the task recorded per label, so no weights are loaded.
        threads: onnxruntime intra-op threads; None: onnxruntime's default (every core).
    """

    def __init__(
        self,
        onnx_path: str | Path,
        predictor_or_sidecar: Any = None,
        threads: int | None = None,
    ) -> None:
        self.path = Path(onnx_path)
        self.info = _sidecar(self.path, predictor_or_sidecar)
        self.layout = [InputInfo(**item) for item in self.info["inputs"]]
        self.labels: list[str] = list(self.info["labels"])
        self.names = [out["name"] for out in self.info["outputs"]]
        model = getattr(predictor_or_sidecar, "model", None)
        self.readable: Readable = model.readable if model is not None else heads_predict(self.info)
        self.session = _session(self.path, threads)

    def logits(self, batch: Batch) -> dict[str, Tensor]:
        """Label -> logits [B, K] of one batch."""
        arrays = self.session.run(self.names, feeds(batch, self.layout))
        return {label: torch.from_numpy(a) for label, a in zip(self.labels, arrays, strict=True)}

    def outputs(self, table: EncodedTable, batch_size: int = 256) -> dict[str, Tensor]:
        """Label -> probabilities [N, K] / [N] or values [N], in the table's row order (as
        ``polyfuse.models.inference.predict_table``)."""
        n = len(table)
        if n == 0:
            raise PolyfuseError("no rows left to predict on")
        outs = [
            self.readable(self.logits(table.take(list(range(i, min(i + batch_size, n))))))
            for i in range(0, n, batch_size)
        ]
        return {label: torch.cat([o[label] for o in outs]).float() for label in outs[0]}

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r}, labels={self.labels})"


def _sidecar(path: Path, source: Any) -> dict[str, Any]:
    if isinstance(source, dict):
        return source
    if isinstance(source, (str, Path)):
        import json

        return json.loads(Path(source).read_text())  # type: ignore[no-any-return]
    info = read_sidecar(path)
    labels = getattr(source, "labels", None)
    if labels is not None and list(labels) != list(info["labels"]):
        raise PolyfuseError(f"{path} predicts {info['labels']}, the model predicts {labels}: export again")
    return info


def heads_predict(info: dict[str, Any]) -> Readable:
    """``MultimodalModel.readable`` rebuilt from the sidecar: each label's registered head class
    (weights unused: ``predict`` only maps logits to probabilities or values)."""
    import polyfuse.heads  # noqa: F401  (registers the heads)
    from polyfuse.registry import HEADS

    heads = {
        out["label"]: HEADS.build(out["task"], in_dim=1, num_outputs=out["num_outputs"])
        for out in info["outputs"]
    }

    def readable(logits: dict[str, Tensor]) -> dict[str, Tensor]:
        return {label: heads[label].predict(value) for label, value in logits.items()}

    return readable


def _session(path: Path, threads: int | None) -> Any:
    ort = require("onnxruntime")
    if not path.is_file():
        raise PolyfuseError(f"{path} not found: run `polyfuse export MODEL_DIR` first")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # one graph at a time: inter-op threads would oversubscribe
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
