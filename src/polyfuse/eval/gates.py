"""How open a model's feature gates are (``fusions.gates``): ``metrics.json``'s ``feature_gates``."""

from __future__ import annotations

from typing import Any

import torch

from polyfuse.data.batch import EncodedTable
from polyfuse.fusions.gates import HardConcreteGate, gate_modules
from polyfuse.models.multimodal import MultimodalModel


@torch.no_grad()
def gate_report(
    model: MultimodalModel, table: EncodedTable, processors: dict[str, Any], batch_size: int = 256
) -> dict[str, Any]:
    """Share of open gates (z > 0) on ``table``'s rows, in evaluation: ``embeddings`` (modality ->
    mean over the embedding's dimensions, on the rows where the modality is present) and ``columns``
    (tabular column -> share of rows where its gate is open, in the processor's column order); empty
    without gates."""
    gates = gate_modules(model)
    if not gates or len(table) == 0:
        return {}
    out: dict[str, Any] = {}
    for name, share in open_shares(model, gates, table, batch_size).items():
        parts = name.split(".")
        if parts[-2:-1] == ["gates"] and "fusion" in parts:  # fusion.gates.<modality>
            out.setdefault("embeddings", {})[parts[-1]] = round(float(share.mean()), 4)
        elif parts[0] == "encoders" and parts[-1] == "gate":  # encoders.<modality>.gate
            processor = processors.get(parts[1])
            names = [*getattr(processor, "numeric", []), *getattr(processor, "categorical", [])]
            if len(names) != len(share):
                names = [f"column {i}" for i in range(len(share))]
            out.setdefault("columns", {}).update(
                {c: round(float(v), 4) for c, v in zip(names, share, strict=True)}
            )
    return out


def open_shares(
    model: MultimodalModel, gates: dict[str, HardConcreteGate], table: EncodedTable, batch_size: int
) -> dict[str, torch.Tensor]:
    """Gate path -> share [G] of its counted rows (present rows, valid tokens) whose gate is open;
    a gate that counted no row (its modality absent throughout) is left out."""
    model.eval()
    opened: dict[str, torch.Tensor] = {}  # gate path -> open count [G]
    counted: dict[str, float] = {}  # gate path -> rows (or tokens) counted
    for gate in gates.values():
        gate.record = True
    try:
        for batch in table.batches(batch_size):
            model.predict(batch)
            for name, gate in gates.items():
                if gate.last_gates is not None:
                    z = gate.last_gates.reshape(-1, gate.last_gates.shape[-1])  # [rows (x tokens), G]
                    w = torch.ones(len(z)) if gate.last_present is None else gate.last_present.reshape(-1)
                    opened[name] = opened.get(name, 0) + ((z > 0).float() * w[:, None]).sum(0)  # [G]
                    counted[name] = counted.get(name, 0.0) + float(w.sum())
                gate.last_gates = gate.last_present = None  # a gate unused by the next batch counts once
    finally:
        for gate in gates.values():
            gate.record = False
    return {name: total / counted[name] for name, total in opened.items() if counted[name] > 0}
