"""A trained model opened up for explanation: embeddings computed once, fusion re-run under any mask.

Encoders do not see the presence mask, so "what if modality m were absent" needs only the fusion
and the head again: every coalition, drop rate or presence pattern costs one pass of the (small)
fusion over the stored embeddings, not a pass of the encoders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polyfuse.config import LabelSpec
from polyfuse.data.batch import EncodedTable, Inputs
from polyfuse.models.multimodal import MultimodalModel

# The value of a coalition: the task's metric in a higher-is-better form (R² rather than MSE).
VALUE_METRIC = {"multiclass": "accuracy", "binary": "accuracy", "multilabel": "f1_macro", "regression": "r2"}


def value_metric(task: str) -> str:
    """Name of the higher-is-better metric explain reports for a task."""
    return VALUE_METRIC[task]


def metric_value(task: str, y: np.ndarray, output: np.ndarray) -> float:
    """The task's ``value_metric`` of outputs (probabilities or values) against encoded targets."""
    from polyfuse.eval.metrics import compute_metrics

    if len(y) == 0:
        return float("nan")
    # Accuracy and R² directly (the same definitions as compute_metrics): explain asks for
    # dozens of values, and compute_metrics also computes F1, ROC-AUC and the confusion matrix.
    if task in ("multiclass", "binary"):
        pred = output.argmax(axis=1) if task == "multiclass" else (output > 0.5).astype(int)
        return float(np.mean(pred == y.astype(int)))
    if task == "regression":
        var = float(np.var(y))
        return 1.0 - float(np.mean((output - y) ** 2)) / var if var > 0 else 0.0
    value = compute_metrics(task, y, output)[value_metric(task)]
    return float(value) if value is not None else float("nan")


def true_score(task: str, y: np.ndarray, output: np.ndarray) -> np.ndarray:
    """Per row: probability of the true class (binary, multiclass), the mean probability of the
    true 0/1 values (multilabel), or the predicted value (regression). [N] floats."""
    if task == "multiclass":
        return output[np.arange(len(y)), y.astype(int)]  # type: ignore[no-any-return]
    if task == "binary":
        return np.where(y.astype(int) == 1, output, 1 - output)
    if task == "multilabel":
        return np.where(y.astype(int) == 1, output, 1 - output).mean(axis=1)  # type: ignore[no-any-return]
    return output.astype(np.float64)


def is_right(task: str, y: np.ndarray, output: np.ndarray, tolerance: float) -> np.ndarray:
    """Per row: predicted label correct (all labels for multilabel); regression: |error| <= tolerance."""
    if task == "multiclass":
        return output.argmax(axis=1) == y.astype(int)  # type: ignore[no-any-return]
    if task == "binary":
        return (output > 0.5).astype(int) == y.astype(int)  # type: ignore[no-any-return]
    if task == "multilabel":
        return ((output >= 0.5).astype(int) == y.astype(int)).all(axis=1)  # type: ignore[no-any-return]
    return np.abs(output - y) <= tolerance  # type: ignore[no-any-return]


@dataclass
class Probe:
    """One label of a model on an encoded table, ready for masking experiments."""

    model: MultimodalModel
    spec: LabelSpec
    table: EncodedTable
    embeddings: dict[str, Tensor]  # modality -> [N, D_m], computed once
    batch_size: int = 256

    @classmethod
    def build(
        cls, model: MultimodalModel, table: EncodedTable, spec: LabelSpec, batch_size: int = 256
    ) -> Probe:
        model.eval()
        return cls(model, spec, table, embed_table(model, table, batch_size), batch_size)

    @property
    def modalities(self) -> list[str]:
        return self.model.modalities

    @property
    def task(self) -> str:
        return self.spec.task

    @property
    def targets(self) -> np.ndarray:
        return self.table.targets[self.spec.column].numpy()

    @property
    def present(self) -> dict[str, Tensor]:
        """Modality -> bool [N]: present in the data (never changed by the experiments)."""
        return {m: self.table.mask[m].bool() for m in self.modalities}

    def __len__(self) -> int:
        return len(self.table)

    def coalition_mask(self, keep: Iterable[str]) -> dict[str, Tensor]:
        """Presence when only ``keep`` may be present; rows absent in the data stay absent."""
        keep = set(keep)
        return {m: p if m in keep else torch.zeros_like(p) for m, p in self.present.items()}

    @torch.no_grad()
    def outputs(
        self,
        mask: dict[str, Tensor] | None = None,
        embeddings: dict[str, Tensor] | None = None,
        after_batch: Callable[[nn.Module, Tensor], None] | None = None,
    ) -> np.ndarray:
        """Probabilities [N, K] / [N] or values [N] of the label under ``mask`` (default: the data's).

        Args:
            mask: Modality -> bool [N].
            embeddings: Replacement embeddings for some modalities ([N, D_m] each).
            after_batch: Called with the fusion and the batch's row index after each fusion pass
                (to read attention weights of that pass).
        """
        mask = mask if mask is not None else self.present
        emb = {**self.embeddings, **(embeddings or {})}
        head = self.model.heads[self.spec.column]
        outs = []
        for start in range(0, len(self), self.batch_size):
            rows = torch.arange(start, min(start + self.batch_size, len(self)))
            fused = self.model.fusion(
                {m: e[rows] for m, e in emb.items()}, {m: k[rows] for m, k in mask.items()}
            )
            if after_batch is not None:
                after_batch(self.model.fusion, rows)
            outs.append(head.predict(head(fused)).float())  # type: ignore[operator]
        return torch.cat(outs).numpy()

    def metric(self, output: np.ndarray, rows: np.ndarray | None = None) -> float:
        y = self.targets
        return (
            metric_value(self.task, y[rows], output[rows])
            if rows is not None
            else metric_value(self.task, y, output)
        )

    def scores(self, output: np.ndarray) -> np.ndarray:
        return true_score(self.task, self.targets, output)

    @torch.no_grad()
    def encode(self, modality: str, inputs: Inputs) -> Tensor:
        """Embeddings [N, D] of one modality from replacement inputs (e.g. noisy or permuted)."""
        encoder = self.model.encoders[modality]
        n = len(self)
        parts = [
            encoder(_rows(inputs, slice(i, min(i + self.batch_size, n))))
            for i in range(0, n, self.batch_size)
        ]
        return torch.cat(parts).float()


@torch.no_grad()
def embed_table(model: MultimodalModel, table: EncodedTable, batch_size: int = 256) -> dict[str, Tensor]:
    """Modality -> embeddings [N, D_m] of every row (precomputed ``table.cached`` ones reused)."""
    model.eval()
    n = len(table)
    parts: dict[str, list[Tensor]] = {m: [] for m in model.modalities}
    for start in range(0, n, batch_size):
        emb = model.embed(table.take(list(range(start, min(start + batch_size, n)))))
        for m, e in emb.items():
            parts[m].append(e.float())
    return {m: torch.cat(p) for m, p in parts.items()}


def _rows(inputs: Inputs, index: Any) -> Inputs:
    if isinstance(inputs, dict):
        return {k: v[index] for k, v in inputs.items()}
    return inputs[index]
