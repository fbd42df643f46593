"""Tabular encoder: numbers, their missing flags and embedded categories, through an MLP.

Input: {"numeric": float [B, N], "numeric_missing": float [B, N] (1 = missing),
"categorical": long [B, K] (0 = unknown or missing)}. Keys for empty groups may be left out.

``forward_tokens`` gives one token per column, laid out so that a single Linear layer downstream is
a per-column tokenizer (the feature tokenizer of Gorishniy et al., 2021, "Revisiting Deep Learning
Models for Tabular Data"): column j's token is the MLP's input vector with every other column's
slots zeroed, followed by a one-hot column id (which the Linear turns into a per-column bias).
The encoder itself gains no parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from polyfuse.fusions.gates import HardConcreteGate
from polyfuse.registry import ENCODERS


def embedding_dim(cardinality: int) -> int:
    """Embedding size of a categorical column with ``cardinality`` values (0 slot included)."""
    return max(1, min(16, (cardinality + 1) // 2))


@ENCODERS.register("tabular_mlp")
class TabularMLP(nn.Module):
    """Concatenate numbers, missing flags and category embeddings; a two-layer MLP on top.

    Missing flags let the network tell an imputed value from a real one (the processor fills
    missing numbers, typically with the training mean).

    Args:
        num_numeric: Numeric columns.
        cardinalities: Values per categorical column, each counting the 0 "unknown" slot.
        output_dim: Embedding size.
        hidden_dim: MLP width.
        dropout: Dropout inside the MLP.
        column_gates: Per-sample hard-concrete gates, one per column, computed from the row's own
            features and applied before the MLP (``polyfuse.fusions.gates``: dynamic feature selection).
    """

    modality = "tabular"

    def __init__(
        self,
        num_numeric: int = 0,
        cardinalities: Sequence[int] = (),
        output_dim: int = 64,
        hidden_dim: int = 128,
        dropout: float = 0.1,
        column_gates: bool = False,
    ) -> None:
        super().__init__()
        self.num_numeric = num_numeric
        self.cardinalities = [int(c) for c in cardinalities]
        self.output_dim = output_dim
        self.embeds = nn.ModuleList(nn.Embedding(c, embedding_dim(c)) for c in self.cardinalities)
        in_dim = 2 * num_numeric + sum(embedding_dim(c) for c in self.cardinalities)
        if in_dim == 0:
            raise ValueError("tabular_mlp needs at least one numeric or categorical column")
        self._owner = self._column_of_each_slot()  # [in_dim] column index of each input slot
        self.num_columns = num_numeric + len(self.cardinalities)
        self.token_dim = in_dim + self.num_columns
        self.gate = HardConcreteGate(in_dim, self.num_columns) if column_gates else None
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, output_dim),
        )

    def _column_of_each_slot(self) -> list[int]:
        """Column that owns each slot of the MLP input: [numbers | missing flags | embeddings]."""
        numeric = list(range(self.num_numeric))
        cats = [
            self.num_numeric + k for k, c in enumerate(self.cardinalities) for _ in range(embedding_dim(c))
        ]
        return numeric + numeric + cats

    def _features(self, x: dict[str, Tensor]) -> list[Tensor]:
        parts: list[Tensor] = []
        if self.num_numeric:
            numeric = x["numeric"].float()  # [B, N]
            missing = x.get("numeric_missing")
            parts += [numeric, missing.float() if missing is not None else torch.zeros_like(numeric)]
        if self.embeds:
            cats = x["categorical"].long()  # [B, K]
            for k, embed in enumerate(self.embeds):
                # Ids beyond the fitted vocabulary count as unknown (slot 0).
                ids = cats[:, k].clamp(min=0)
                ids = torch.where(ids < self.cardinalities[k], ids, torch.zeros_like(ids))
                parts.append(embed(ids))  # [B, e_k]
        return parts

    def _gated(self, x: dict[str, Tensor]) -> Tensor:
        """The MLP's input [B, S]: every column's slots, times that column's gate when gated."""
        features = torch.cat(self._features(x), dim=1)  # [B, S]
        if self.gate is None:
            return features
        owner = torch.tensor(self._owner, device=features.device)  # [S]
        return features * self.gate(features)[:, owner]  # a column's gate on each of its slots

    def forward_tokens(self, x: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """One token per column (numbers first, then categories), all valid."""
        features = self._gated(x)  # [B, S]
        owner = torch.tensor(self._owner, device=features.device)  # [S]
        columns = torch.arange(self.num_columns, device=features.device)  # [F]
        own = owner.unsqueeze(0) == columns.unsqueeze(1)  # [F, S]: slot s belongs to column j
        values = torch.where(own, features.unsqueeze(1), features.new_zeros(()))  # [B, F, S]
        ids = torch.eye(self.num_columns, dtype=features.dtype, device=features.device)  # [F, F]
        tokens = torch.cat([values, ids.expand(features.shape[0], -1, -1)], dim=2)  # [B, F, S + F]
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        features = self._gated(x)  # [B, 2N + sum(e_k)]
        return self.mlp(features)  # type: ignore[no-any-return]  # [B, output_dim]
