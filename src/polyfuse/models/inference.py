"""Batched inference over an encoded table."""

from __future__ import annotations

import torch

from polyfuse.data.batch import EncodedTable
from polyfuse.errors import PolyfuseError
from polyfuse.models.aligned import AlignedModel
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


@torch.no_grad()
def aligned_table(
    model: AlignedModel, table: EncodedTable, batch_size: int = 256
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Modality -> unit embeddings [N, dim] in the shared space of every row, and modality -> which
    rows hold it (bool [N]), in order."""
    if len(table) == 0:
        raise PolyfuseError("no rows left to embed")
    model.eval()
    parts = [(model.aligned(batch), batch.mask) for batch in table.batches(batch_size)]
    z = {m: torch.cat([p[0][m] for p in parts]).float() for m in parts[0][0]}
    present = {m: torch.cat([p[1][m] for p in parts]).bool() for m in z}
    return z, present
