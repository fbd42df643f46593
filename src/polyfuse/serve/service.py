"""The model side of the server: validated rows -> predictions and per-modality explanations.

Rows go through the model's own preprocessor (bytes cells decode in memory), then a backend: the
torch model or its ONNX export under onnxruntime. Both give label -> probabilities / values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from polyfuse.data.batch import EncodedTable
from polyfuse.data.modalities import owner
from polyfuse.eval.shapley import coalitions, shapley_from_values
from polyfuse.predictor import Predictor
from polyfuse.serve.config import ServeConfig
from polyfuse.serve.inputs import InputError, model_fields

_NO_FOLDER = Path("/nonexistent/polyfuse-serve")  # cells are bytes: relative paths resolve nowhere
# A valid but extreme input (x = 1e38 overflows float32 once standardised) makes NaN outputs, which
# JSON would carry as null probabilities in a 200: refused instead, as a client error for that row.
NOT_FINITE = "the model gives no finite output for this row (a number far outside the training data?)"


class Backend(Protocol):
    def outputs(self, table: EncodedTable, batch_size: int = 256) -> dict[str, torch.Tensor]: ...


def make_backend(predictor: Predictor, model_dir: Path, config: ServeConfig) -> Backend:
    """The torch model itself, or its ONNX export (``polyfuse export``) under onnxruntime."""
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.budget_ms is not None and config.backend != "torch":
        raise ValueError("a compute budget (the modality cascade) runs on the torch backend only")
    if config.backend == "torch":
        if config.budget_ms is not None:
            return Budgeted(predictor, config.budget_ms)
        return predictor  # Predictor.outputs: predict_table on the torch model
    if config.backend == "onnx":
        from polyfuse.export import OnnxModel

        path = Path(config.onnx_path) if config.onnx_path else model_dir / "model.onnx"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run `polyfuse export {model_dir}` first")
        return OnnxModel(path, predictor, threads=config.threads)
    raise ValueError(f"backend must be 'torch' or 'onnx', got {config.backend!r}")


class Budgeted:
    """The torch model behind the modality cascade at a fixed budget (``Predictor.outputs``)."""

    def __init__(self, predictor: Predictor, budget_ms: float):
        predictor.cascade_plan()  # a model without a plan fails at start-up, not at the first request
        self.predictor, self.budget_ms = predictor, budget_ms

    def outputs(self, table: EncodedTable, batch_size: int = 256) -> dict[str, torch.Tensor]:
        return self.predictor.outputs(table, batch_size, budget_ms=self.budget_ms)


class ModelService:
    """Predictions and explanations for validated rows (see ``inputs.RowDecoder``)."""

    def __init__(self, predictor: Predictor, backend: Backend):
        self.predictor, self.backend = predictor, backend
        self.pre = predictor.preprocessor
        self.fields = model_fields(self.pre)
        self.columns = [f.name for f in self.fields]

    def warm_up(self) -> None:
        """One prediction on a made-up row with every field: checks the model end to end at start-up
        and pays the first call's one-off costs (thread pools, kernels) before any client does."""
        results = self.predict([{f.name: owner(f.kind).example(f) for f in self.fields}])
        if isinstance(results[0], InputError):
            raise RuntimeError(f"the model cannot predict on an example row: {results[0]}")

    def encode(self, rows: list[dict[str, Any]]) -> tuple[EncodedTable | None, dict[int, InputError]]:
        """Rows -> tensors; a row whose file fails to decode becomes an InputError for its field."""
        # Object columns of the rows' own values (None: absent), built directly: pandas' inference
        # (Arrow strings) and the astype / where passes back cost a one-row request ~1 ms.
        frame = pd.DataFrame({c: pd.Series([row.get(c) for row in rows], dtype=object) for c in self.columns})
        table, errors = self.pre.transform(frame, _NO_FOLDER, on_error="skip", targets=False)
        failed = {int(e.row): InputError(e.column, e.problem) for e in errors}
        return (table if len(table) else None), failed

    def predict(self, rows: list[dict[str, Any]]) -> list[dict[str, Any] | InputError]:
        """One result per row, in order: a prediction, or the InputError of that row."""
        table, failed = self.encode(rows)
        if table is None:
            return [failed[i] for i in range(len(rows))]
        outputs = self.backend.outputs(table)
        finite = _finite_rows(outputs)
        results: list[dict[str, Any] | InputError] = []
        kept = iter(range(len(table)))
        for i in range(len(rows)):
            if i in failed:
                results.append(failed[i])
                continue
            j = next(kept)
            results.append(self.result(table, outputs, j) if finite[j] else InputError(None, NOT_FINITE))
        return results

    def result(self, table: EncodedTable, outputs: dict[str, torch.Tensor], i: int) -> dict[str, Any]:
        """What a client reads for row ``i``: the first label's prediction and every label's."""
        per_label = {
            spec.column: self._label(spec.column, spec.task, outputs[spec.column][i])
            for spec in self.pre.schema.labels
        }
        first = next(iter(per_label))
        out: dict[str, Any] = {"label": first, **per_label[first]}
        if len(per_label) > 1:
            out["predictions"] = per_label
        out["present"] = {m: bool(mask[i]) for m, mask in table.mask.items()}
        return out

    def _label(self, column: str, task: str, output: torch.Tensor) -> dict[str, Any]:
        decoded = _plain(self.pre.decode(column, output[None])[0])
        if task == "regression":
            return {"prediction": decoded, "value": float(output)}
        classes = [str(c) for c in self.pre.labels[column].classes]
        proba = output.numpy() if task != "binary" else np.array([1 - float(output), float(output)])
        return {
            "prediction": decoded,
            "probabilities": {c: round(float(p), 6) for c, p in zip(classes, proba, strict=True)},
        }

    def explain(self, row: dict[str, Any]) -> dict[str, Any]:
        """Exact Shapley values of the present modalities for this row's prediction, by masking.

        The value of a coalition is the probability of the predicted class (the value, for
        regression) with only that coalition's modalities present: 2^M rows in one forward pass.
        The first label's are at the top; with several labels ``by_label`` holds every label's.
        """
        table, failed = self.encode([row])
        if table is None:
            raise failed[0]
        present = [m for m, mask in table.mask.items() if bool(mask[0])]
        subsets = coalitions(present)
        variants = table.subset([0] * len(subsets))
        for m in present:
            variants.mask[m] = torch.tensor([m in s for s in subsets])
        every = self.backend.outputs(variants)  # label -> [2^M, ...]; the last row has every modality
        outputs = {label: value[-1:] for label, value in every.items()}
        if not (_finite_rows(outputs)[0] and all(torch.isfinite(v).all() for v in every.values())):
            raise InputError(None, NOT_FINITE)
        full = self.result(table, outputs, 0)
        per_label = {}
        for spec in self.pre.schema.labels:
            answer = full if spec.column == full["label"] else full["predictions"][spec.column]
            values = dict(zip(subsets, _target_values(every[spec.column], spec.task), strict=True))
            phi = shapley_from_values(values, present)
            per_label[spec.column] = {
                "target": _target_name(spec.task, answer),
                "base": values[frozenset()],
                "full": values[frozenset(present)],
                "contributions": {m: round(float(phi.get(m, 0.0)), 6) for m in table.mask},
            }
        first = per_label[full["label"]]
        return {
            **full,
            "method": "exact Shapley values over modalities (absent = masked, as in training)",
            **first,
            **({"by_label": per_label} if len(per_label) > 1 else {}),
        }


def _finite_rows(outputs: dict[str, torch.Tensor]) -> list[bool]:
    """Per row: whether every label's output is a finite number."""
    per_label = [torch.isfinite(v.reshape(len(v), -1)).all(dim=1) for v in outputs.values()]  # [N] each
    return torch.stack(per_label).all(dim=0).tolist()  # type: ignore[no-any-return]


def _target_values(out: torch.Tensor, task: str) -> list[float]:
    """Per variant row: the probability of the full row's predicted class (or the value)."""
    if task == "regression":
        return out.reshape(-1).tolist()
    if task == "binary":
        p = out.reshape(-1)
        return (p if p[-1] >= 0.5 else 1 - p).tolist()
    if task == "multilabel":
        chosen = out[-1] >= 0.5
        return (out[:, chosen].sum(dim=1) if chosen.any() else out.max(dim=1).values).tolist()
    return out[:, int(out[-1].argmax())].tolist()  # the last variant has every modality


def _target_name(task: str, full: dict[str, Any]) -> str:
    if task == "regression":
        return "predicted value"
    return f"probability of {full['prediction']!r}"


def _plain(value: Any) -> Any:
    """numpy scalars and lists as JSON-ready Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
