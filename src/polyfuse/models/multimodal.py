"""MultimodalModel: encoders per modality -> one fusion -> one head per label."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyfuse.data.batch import Batch


class MultimodalModel(nn.Module):
    """Composes parts that are already built; ``build_model`` does the wiring from configs."""

    def __init__(self, encoders: dict[str, nn.Module], fusion: nn.Module, heads: dict[str, nn.Module]):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.heads = nn.ModuleDict(heads)

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders.keys())

    def embed(self, batch: Batch) -> dict[str, Tensor]:
        """One embedding [B, D_m] per modality; frozen encoders' outputs may come precomputed."""
        return {
            name: batch.cached[name] if name in batch.cached else enc(batch.inputs[name])
            for name, enc in self.encoders.items()
        }

    def fuse(self, batch: Batch) -> Tensor:
        mask = {name: batch.mask[name] for name in self.encoders}
        return self.fusion(self.embed(batch), mask)  # [B, D]

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        fused = self.fuse(batch)
        return {label: head(fused) for label, head in self.heads.items()}  # label -> logits

    @torch.no_grad()
    def predict(self, batch: Batch) -> dict[str, Tensor]:
        """Label -> what a user reads: probabilities or values (heads' ``predict``)."""
        return self.readable(self(batch))

    def readable(self, logits: dict[str, Tensor]) -> dict[str, Tensor]:
        """Label -> probabilities or values from that label's logits (heads' ``predict``)."""
        return {label: self.heads[label].predict(out) for label, out in logits.items()}  # type: ignore[operator]

    def frozen_modalities(self) -> list[str]:
        """Modalities whose encoder has no trainable parameter (their outputs can be cached)."""
        return [
            name for name, enc in self.encoders.items() if not any(p.requires_grad for p in enc.parameters())
        ]
