"""Planning and measuring the modality cascade (``polyfuse.models.cascade``).

``plan_cascade`` runs at the end of ``fit`` on the validation rows: it times each modality's
encoder (milliseconds per row, measured), orders the modalities cheapest first, and for a grid of
confidence thresholds simulates the cascade from the outputs of each prefix of that order (every
encoder runs once): the validation score and the expected milliseconds per row of each threshold.
That curve is what a compute budget is read against (``threshold_for``). ``measured_curve`` runs
the real cascade for a few thresholds and times it end to end: what ``explain`` reports.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from polyfuse.config import LabelSpec
from polyfuse.data.batch import EncodedTable, gather, row_chunks
from polyfuse.eval.probe import Feature, concat_features, encode_feature
from polyfuse.eval.selection import selection_score
from polyfuse.models.cascade import NEVER, cascade_predict, confidence, head_tasks
from polyfuse.models.multimodal import MultimodalModel

THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999, NEVER)
MEASURED = (0.0, 0.8, 0.9, 0.95, 0.99, 0.999, NEVER)  # thresholds explain runs for real


@torch.no_grad()
def timed_features(
    model: MultimodalModel, table: EncodedTable, batch_size: int = 256
) -> tuple[dict[str, Feature], dict[str, float]]:
    """Modality -> what the fusion receives for every row of ``table``, and the milliseconds per row
    its encoder took to compute it (caches ignored; one warm-up batch first), in one pass."""
    model.eval()
    features, costs = {}, {}
    for m in model.modalities:
        chunks = list(row_chunks(len(table), batch_size))
        encode_feature(model, m, gather(table.inputs[m], chunks[0]))  # warm-up
        start = time.perf_counter()
        parts = [encode_feature(model, m, gather(table.inputs[m], chunk)) for chunk in chunks]
        costs[m] = 1000 * (time.perf_counter() - start) / len(table)
        features[m] = concat_features(parts)
    return features, costs


@torch.no_grad()
def prefix_outputs(
    model: MultimodalModel, features: dict[str, Feature], present: dict[str, torch.Tensor], order: list[str],
    batch_size: int = 256,
) -> list[dict[str, torch.Tensor]]:  # fmt: skip
    """For k = 1..M: every label's outputs with only ``order[:k]`` shown (the data's absences kept)."""
    out = []
    for k in range(1, len(order) + 1):
        shown = set(order[:k])
        mask = {m: present[m] & (m in shown) for m in model.modalities}
        out.append(_fused_outputs(model, features, mask, batch_size))
    return out


def _fused_outputs(
    model: MultimodalModel, features: dict[str, Feature], mask: dict[str, torch.Tensor], batch_size: int
) -> dict[str, torch.Tensor]:
    parts = []
    n = len(next(iter(mask.values())))
    for chunk in row_chunks(n, batch_size):
        rows = torch.arange(chunk.start, chunk.stop)
        taken = {m: f.take(rows) for m, f in features.items()}
        valid = {m: f.valid for m, f in taken.items() if f.valid is not None} if model.wants_tokens else None
        fused = model.fuse_inputs(
            {m: f.values for m, f in taken.items()}, valid, {m: k[rows] for m, k in mask.items()}
        )
        parts.append(model.readable(model.classify(fused)))
    return {label: torch.cat([p[label] for p in parts]).float() for label in parts[0]}


def simulate(
    prefixes: list[dict[str, torch.Tensor]],
    order: list[str],
    costs: dict[str, float],
    present: dict[str, torch.Tensor],
    tasks: dict[str, str],
    threshold: float,
) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray]:
    """The cascade's outputs, stage per row (1..M) and encoder milliseconds per row at ``threshold``,
    from the outputs of each prefix of ``order`` (what ``cascade_predict`` would give, without timing)."""
    n = len(next(iter(present.values())))
    stage = np.full(n, len(order))
    for k in range(len(order) - 1, 0, -1):  # the earliest confident stage wins
        sure = (confidence(prefixes[k - 1], tasks) >= threshold).numpy()
        stage[sure] = k
    outputs = {
        label: torch.stack([p[label] for p in prefixes])[torch.as_tensor(stage - 1), torch.arange(n)]
        for label in prefixes[0]
    }
    spent = np.zeros(n)
    for k, m in enumerate(order):
        spent += np.where((stage > k) & present[m].numpy(), costs[m], 0.0)
    return outputs, stage, spent


def plan_cascade(
    model: MultimodalModel, table: EncodedTable, specs: list[LabelSpec], batch_size: int = 256
) -> dict[str, Any]:
    """metrics.json's ``cascade`` block, measured on labelled (validation) rows: the order, each
    encoder's milliseconds per row, and the simulated curve (threshold, validation score, encoder
    milliseconds per row, share of rows that ran every modality)."""
    features, costs = timed_features(model, table, batch_size)
    order = sorted(model.modalities, key=lambda m: costs[m])
    present = {m: table.mask[m].bool() for m in model.modalities}
    prefixes = prefix_outputs(model, features, present, order, batch_size)
    tasks = head_tasks(model)
    targets = {s.column: table.targets[s.column].numpy() for s in specs}
    curve = []
    for threshold in THRESHOLDS:
        outputs, stage, spent = simulate(prefixes, order, costs, present, tasks, threshold)
        score = selection_score(specs, targets, {k: v.numpy() for k, v in outputs.items()})
        curve.append(
            {
                "threshold": threshold,
                "val_score": round(float(score), 6),
                "ms_per_row": round(float(spent.mean()), 4),
                "full_share": round(float((stage == len(order)).mean()), 4),
            }
        )
    return {
        "order": order,
        "encoder_ms": {m: round(c, 4) for m, c in costs.items()},
        "rows": len(table),
        "curve": curve,
    }


def threshold_for(plan: dict[str, Any], budget_ms: float) -> float:
    """The threshold of the plan's curve with the best validation score among those whose encoder
    milliseconds per row fit ``budget_ms`` (ties: the cheaper); the cheapest point when none fits."""
    curve = plan["curve"]
    fitting = [p for p in curve if p["ms_per_row"] <= budget_ms]
    if not fitting:
        return float(min(curve, key=lambda p: p["ms_per_row"])["threshold"])
    best = max(fitting, key=lambda p: (p["val_score"], -p["ms_per_row"]))
    return float(best["threshold"])


def threshold_within(plan: dict[str, Any], tolerance: float) -> float:
    """The cheapest threshold whose validation score is within ``tolerance`` of running everything."""
    curve = plan["curve"]
    full = curve[-1]["val_score"]
    fitting = [p for p in curve if p["val_score"] >= full - tolerance]
    return float(min(fitting, key=lambda p: (p["ms_per_row"], -p["val_score"]))["threshold"])


def measured_curve(
    model: MultimodalModel,
    table: EncodedTable,
    specs: list[LabelSpec],
    order: list[str],
    thresholds: tuple[float, ...] = MEASURED,
    batch_size: int = 256,
) -> list[dict[str, float]]:
    """The real cascade at each threshold on labelled rows, timed end to end (encoders, fusion and
    heads, every stage): score, milliseconds per row and the share of rows that ran every modality."""
    targets = {s.column: table.targets[s.column].numpy() for s in specs}
    cascade_predict(
        model, table.subset(list(range(min(len(table), batch_size)))), order, NEVER, batch_size
    )  # warm-up
    points = []
    for threshold in thresholds:
        start = time.perf_counter()
        result = cascade_predict(model, table, order, threshold, batch_size)
        ms = 1000 * (time.perf_counter() - start) / len(table)
        score = selection_score(specs, targets, {k: v.numpy() for k, v in result.outputs.items()})
        points.append(
            {
                "threshold": threshold,
                "score": round(float(score), 6),
                "ms_per_row": round(ms, 4),
                "full_share": round(float((result.stages == len(order)).float().mean()), 4),
            }
        )
    return points
