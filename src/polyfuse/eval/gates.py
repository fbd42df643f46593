"""How open a model's feature gates are (``fusions.gates``): ``metrics.json``'s ``feature_gates``."""

from __future__ import annotations

from typing import Any

import torch

from polyfuse.data.batch import EncodedTable
from polyfuse.fusions.gates import gate_modules
from polyfuse.models.multimodal import MultimodalModel


@torch.no_grad()
def gate_report(
    model: MultimodalModel, table: EncodedTable, processors: dict[str, Any], batch_size: int = 256
) -> dict[str, Any]:
    """Share of open gates (z > 0) on ``table``'s rows, in evaluation: ``embeddings`` (modality ->
    mean over the embedding's dimensions) and ``columns`` (tabular column -> share of rows where its
    gate is open, in the processor's column order); empty without gates."""
    gates = gate_modules(model)
    if not gates or len(table) == 0:
        return {}
    model.eval()
    opened: dict[str, torch.Tensor] = {}
    counted: dict[str, int] = {}
    for gate in gates.values():
        gate.record = True
    try:
        for batch in table.batches(batch_size):
            model.predict(batch)
            for name, gate in gates.items():
                if gate.last_gates is not None:
                    z = gate.last_gates.reshape(-1, gate.last_gates.shape[-1])  # [rows (x tokens), G]
                    opened[name] = opened.get(name, torch.zeros(z.shape[-1])) + (z > 0).float().sum(0)
                    counted[name] = counted.get(name, 0) + len(z)
                gate.last_gates = None  # a gate left unused by the next batch must not count twice
    finally:
        for gate in gates.values():
            gate.record = False
    out: dict[str, Any] = {}
    for name, total in opened.items():
        share = total / counted[name]  # [G]
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
