"""Evaluate a model on an encoded table: every label's metrics."""

from __future__ import annotations

from typing import Any

from polyfuse.config import Schema
from polyfuse.data.batch import EncodedTable
from polyfuse.models.multimodal import MultimodalModel


def evaluate_table(model: MultimodalModel, schema: Schema, table: EncodedTable) -> dict[str, Any]:
    """Metrics of every label on an encoded table; the first label's are also at top level."""
    from polyfuse.eval.metrics import compute_metrics
    from polyfuse.models.inference import predict_table

    outputs = predict_table(model, table)
    by_label = {
        spec.column: compute_metrics(
            spec.task, table.targets[spec.column].numpy(), outputs[spec.column].numpy()
        )
        for spec in schema.labels
    }
    first = schema.labels[0].column
    return {**by_label[first], "by_label": by_label} if len(by_label) > 1 else dict(by_label[first])
