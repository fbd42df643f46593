"""Modality imbalance diagnostics: how much each encoder learned inside the fused model.

A fused network that leans on its easiest modality leaves the other encoders under-trained (Wang,
Tran & Feiszli, CVPR 2020; Peng et al., CVPR 2022). The linear-probe test of that (as in Du et al.,
ICML 2023, "On Uni-Modal Feature Learning in Supervised Multi-Modal Learning"): fit a linear model
on one modality's embedding from the fused model's encoder, and the same on the embedding from that
modality's own single-modality model; a probe that scores well below its single-modality twin means
the fused training starved that encoder. Probes are fit on the training split and scored on the
validation split (the test split stays untouched), for every classification or regression label
(the mean over labels of accuracy or R², as ``selection.selection_score``); multilabel labels are
left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from polyfuse.config import LabelSpec
from polyfuse.data.batch import EncodedTable
from polyfuse.eval.probe import fusion_features, metric_value
from polyfuse.models.multimodal import MultimodalModel

PROBED_TASKS = ("multiclass", "binary", "regression")


def embeddings(model: MultimodalModel, table: EncodedTable) -> dict[str, np.ndarray]:
    """Modality -> one vector per row [N, D] from the model's encoders (tokens mean-pooled)."""
    return {m: f.pooled().numpy() for m, f in fusion_features(model, table).items()}


def probe_score(
    specs: list[LabelSpec], train: tuple[np.ndarray, EncodedTable], val: tuple[np.ndarray, EncodedTable]
) -> float | None:
    """Mean over the probed labels of a linear probe's validation score (None: no label to probe)."""
    scores = []
    for spec in specs:
        if spec.task not in PROBED_TASKS:
            continue
        x, table = train
        probe = _fit(spec.task, x, table.targets[spec.column].numpy())
        x_val, val_table = val
        y_val = val_table.targets[spec.column].numpy()
        out = probe.predict_proba(x_val) if spec.task != "regression" else probe.predict(x_val)
        if spec.task == "binary":
            out = out[:, 1]
        elif spec.task == "multiclass":
            out = _all_classes(out, probe.classes_, len(spec.classes))
        scores.append(metric_value(spec.task, y_val, out))
    return float(np.mean(scores)) if scores else None


def _fit(task: str, x: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = Ridge(alpha=1.0) if task == "regression" else LogisticRegression(max_iter=300, C=1.0)
    return make_pipeline(StandardScaler(), model).fit(
        x, y.astype(float) if task == "regression" else y.astype(int)
    )


def _all_classes(proba: np.ndarray, seen: np.ndarray, k: int) -> np.ndarray:
    """Probabilities over every class index (a class absent from the probe's training rows gets 0)."""
    out = np.zeros((len(proba), k))
    out[:, seen.astype(int)] = proba
    return out


def probe_gaps(
    specs: list[LabelSpec],
    fused: MultimodalModel,
    singles: dict[str, MultimodalModel],
    tables: dict[str, EncodedTable],
) -> dict[str, dict[str, float | None]]:
    """Modality -> ``{"fused", "single", "gap"}``: the probe's validation score on the fused model's
    embedding of the modality, on its single-modality model's, and single minus fused."""
    inside = {split: embeddings(fused, tables[split]) for split in ("train", "val")}
    out: dict[str, dict[str, float | None]] = {}
    for m, model in singles.items():
        alone = {split: embeddings(model, tables[split].select([m]))[m] for split in ("train", "val")}
        a = probe_score(specs, (inside["train"][m], tables["train"]), (inside["val"][m], tables["val"]))
        b = probe_score(specs, (alone["train"], tables["train"]), (alone["val"], tables["val"]))
        gap = None if a is None or b is None else round(b - a, 6)
        out[m] = {"fused": _round(a), "single": _round(b), "gap": gap}
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def grad_shares(history: list[dict[str, float]]) -> dict[str, list[float]]:
    """Modality -> its share of the encoders' gradient norm per epoch, from a fit's history
    (``grad_share_<modality>``, logged by the ``modality_grad_share`` callback)."""
    shares: dict[str, list[float]] = {}
    for row in history:
        for key, value in row.items():
            if key.startswith("grad_share_"):
                shares.setdefault(key.removeprefix("grad_share_"), []).append(round(float(value), 6))
    return shares
