"""Tensors for a whole table, and the batches cut from it.

Every input is decoded once into one tensor (or a small dict of tensors) with the rows first, so a
batch is a gather by index: no per-sample Python work in the training loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

Inputs = Tensor | dict[str, Tensor]  # one modality's tensors, rows first


@dataclass
class Batch:
    """A batch as models and training steps see it."""

    inputs: dict[str, Inputs]  # modality -> tensor(s), [B, ...]
    mask: dict[str, Tensor]  # modality -> bool [B]: True where the modality is present
    targets: dict[str, Tensor] = field(default_factory=dict)  # label column -> [B] or [B, K]
    cached: dict[str, Tensor] = field(default_factory=dict)  # modality -> precomputed [B, D]
    rows: Tensor | None = None  # [B] the table rows it holds (``take``); None once its inputs changed

    def __len__(self) -> int:
        return int(next(iter(self.mask.values())).shape[0])


@dataclass
class EncodedTable:
    """A preprocessed table: every input as tensors, presence masks and targets."""

    inputs: dict[str, Inputs]
    mask: dict[str, Tensor]
    targets: dict[str, Tensor] = field(default_factory=dict)
    cached: dict[str, Tensor] = field(default_factory=dict)
    row_ids: list[Any] = field(default_factory=list)  # original table index of each row

    def __len__(self) -> int:
        return int(next(iter(self.mask.values())).shape[0])

    def take(self, index: Tensor | list[int]) -> Batch:
        """The rows at ``index`` as a Batch (also usable as a DataLoader ``collate_fn``)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return Batch(
            inputs={k: gather(v, idx) for k, v in self.inputs.items()},
            mask={k: v[idx] for k, v in self.mask.items()},
            targets={k: v[idx] for k, v in self.targets.items()},
            cached={k: v[idx] for k, v in self.cached.items()},
            rows=idx,
        )

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """The whole table as consecutive Batches of at most ``batch_size`` rows, in row order."""
        for rows in row_chunks(len(self), batch_size):
            yield self.take(torch.arange(rows.start, rows.stop))

    def subset(self, index: Tensor | list[int]) -> EncodedTable:
        batch = self.take(index)
        ids = [self.row_ids[i] for i in torch.as_tensor(index).tolist()] if self.row_ids else []
        return EncodedTable(batch.inputs, batch.mask, batch.targets, batch.cached, ids)

    def select(self, modalities: list[str]) -> EncodedTable:
        """Only the given modalities (targets and row ids kept)."""
        keep = set(modalities)
        return EncodedTable(
            inputs={k: v for k, v in self.inputs.items() if k in keep},
            mask={k: v for k, v in self.mask.items() if k in keep},
            targets=self.targets,
            cached={k: v for k, v in self.cached.items() if k in keep},
            row_ids=self.row_ids,
        )


def row_chunks(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive row ranges of at most ``batch_size`` covering ``range(n)``: how every pass over a
    whole table (inference, frozen-encoder caching, probing) is cut, never a copy of the table."""
    return (slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size))


def gather(value: Inputs, idx: Any) -> Inputs:
    """Rows ``idx`` (index tensor or slice) of one input: a tensor, or a dict of tensors (ids + mask)."""
    if isinstance(value, dict):
        return {k: v[idx] for k, v in value.items()}
    return value[idx]
