"""A trained model opened up for explanation: fusion inputs computed once, fusion re-run under any mask.

Encoders do not see the presence mask, so "what if modality m were absent" needs only the fusion
and the head again: every coalition, drop rate or presence pattern costs one pass of the (small)
fusion over the stored fusion inputs (embeddings, or token sequences for a token-level fusion),
not a pass of the encoders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from polyfuse.config import LabelSpec
from polyfuse.data.batch import EncodedTable, Inputs, gather, row_chunks
from polyfuse.models.multimodal import MultimodalModel, has_tokens, pad_tokens

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
class Feature:
    """What the fusion receives for one modality: embeddings [N, D], or tokens [N, T, D] with their
    validity [N, T] for a token-level fusion (``MultimodalModel.wants_tokens``)."""

    values: Tensor
    valid: Tensor | None = None

    def take(self, rows: Tensor) -> Feature:
        return Feature(self.values[rows], self.valid[rows] if self.valid is not None else None)

    def pooled(self) -> Tensor:
        """One vector per row [N, D]: tokens mean-pooled over their valid positions."""
        if self.valid is None:
            return self.values
        weights = self.valid.to(self.values.dtype).unsqueeze(-1)  # [N, T, 1]
        return (self.values * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


@dataclass
class Probe:
    """One label of a model on an encoded table, ready for masking experiments."""

    model: MultimodalModel
    spec: LabelSpec
    table: EncodedTable
    features: dict[str, Feature]  # modality -> what the fusion receives, computed once
    batch_size: int = 256

    @classmethod
    def build(
        cls, model: MultimodalModel, table: EncodedTable, spec: LabelSpec, batch_size: int = 256
    ) -> Probe:
        model.eval()
        return cls(model, spec, table, fusion_features(model, table, batch_size), batch_size)

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

    def embeddings(self) -> dict[str, Tensor]:
        """Modality -> one vector per row [N, D_m] (tokens mean-pooled)."""
        return {m: f.pooled() for m, f in self.features.items()}

    def __len__(self) -> int:
        return len(self.table)

    def coalition_mask(self, keep: Iterable[str]) -> dict[str, Tensor]:
        """Presence when only ``keep`` may be present; rows absent in the data stay absent."""
        keep = set(keep)
        return {m: p if m in keep else torch.zeros_like(p) for m, p in self.present.items()}

    def fuse(self, features: dict[str, Feature], mask: dict[str, Tensor]) -> Tensor:
        """The label's outputs (probabilities or values) from fusion inputs of the same rows."""
        values = {m: f.values for m, f in features.items()}
        if self.model.wants_tokens:
            valid = {m: f.valid for m, f in features.items() if f.valid is not None}
            fused = self.model.fusion(values, mask, tokens_valid=valid)
        else:
            fused = self.model.fusion(values, mask)
        head = self.model.heads[self.spec.column]
        return head.predict(head(fused))  # type: ignore[operator,no-any-return]

    @torch.no_grad()
    def outputs(
        self,
        mask: dict[str, Tensor] | None = None,
        replace: dict[str, Feature] | None = None,
        after_batch: Callable[[nn.Module, Tensor], None] | None = None,
    ) -> np.ndarray:
        """Probabilities [N, K] / [N] or values [N] of the label under ``mask`` (default: the data's).

        Args:
            mask: Modality -> bool [N].
            replace: Replacement fusion inputs for some modalities (all N rows).
            after_batch: Called with the fusion and the batch's row index after each fusion pass
                (to read attention weights of that pass).
        """
        mask = mask if mask is not None else self.present
        features = {**self.features, **(replace or {})}
        outs = []
        for chunk in row_chunks(len(self), self.batch_size):
            rows = torch.arange(chunk.start, chunk.stop)
            out = self.fuse(
                {m: f.take(rows) for m, f in features.items()}, {m: k[rows] for m, k in mask.items()}
            )
            if after_batch is not None:
                after_batch(self.model.fusion, rows)
            outs.append(out.float())
        return torch.cat(outs).numpy()

    def metric(self, output: np.ndarray, rows: np.ndarray | None = None) -> float:
        y = self.targets
        if rows is None:
            return metric_value(self.task, y, output)
        return metric_value(self.task, y[rows], output[rows])

    def scores(self, output: np.ndarray) -> np.ndarray:
        return true_score(self.task, self.targets, output)

    def encode_rows(self, modality: str, inputs: Inputs) -> Feature:
        """The fusion input of one modality for a batch of inputs (differentiable)."""
        return encode_feature(self.model, modality, inputs)

    @torch.no_grad()
    def encode(self, modality: str, inputs: Inputs) -> Feature:
        """The fusion input of one modality for every row, from replacement inputs (noisy, permuted)."""
        parts = [
            self.encode_rows(modality, gather(inputs, rows))
            for rows in row_chunks(len(self), self.batch_size)
        ]
        return concat_features(parts)


@torch.no_grad()
def fusion_features(model: MultimodalModel, table: EncodedTable, batch_size: int = 256) -> dict[str, Feature]:
    """Modality -> what the fusion receives for every row (valid precomputed ``table.cached`` reused)."""
    model.eval()
    parts: dict[str, list[Feature]] = {m: [] for m in model.modalities}
    for batch in table.batches(batch_size):
        values, valid = model.fusion_inputs(batch)
        for m, v in values.items():
            parts[m].append(Feature(v.float(), (valid or {}).get(m)))
    return {m: concat_features(p) for m, p in parts.items()}


def encode_feature(model: MultimodalModel, modality: str, inputs: Inputs) -> Feature:
    """What the fusion receives from one modality's encoder for a batch of inputs (caches ignored):
    tokens and their validity for a token-level fusion (encoders that have them), else embeddings."""
    encoder = model.encoders[modality]
    if model.wants_tokens and has_tokens(encoder):
        tokens, valid = encoder.forward_tokens(inputs)  # type: ignore[operator]
        return Feature(tokens.float(), valid)
    return Feature(encoder(inputs).float())


def concat_features(parts: list[Feature]) -> Feature:
    """Row chunks as one Feature; token chunks are padded to the longest with invalid zero tokens."""
    if parts[0].valid is None:
        return Feature(torch.cat([p.values for p in parts]))
    tokens, valid = pad_tokens([(p.values, p.valid) for p in parts if p.valid is not None])
    return Feature(tokens, valid)
