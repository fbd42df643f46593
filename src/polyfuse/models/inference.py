"""Batched inference over an encoded table."""

from __future__ import annotations

import torch

from polyfuse.data.batch import EncodedTable
from polyfuse.errors import PolyfuseError
from polyfuse.models.multimodal import MultimodalModel


@torch.no_grad()
def predict_table(
    model: MultimodalModel, table: EncodedTable, batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """Label -> heads' ``predict`` outputs (probabilities or values) for every row, in order."""
    if len(table) == 0:
        raise PolyfuseError("no rows left to predict on")
    if model.training:  # eval() walks every module: a served one-row call paid ~5% of its time for it
        model.eval()
    outs = [model.predict(batch) for batch in table.batches(batch_size)]
    return {label: torch.cat([o[label] for o in outs]).float() for label in outs[0]}
