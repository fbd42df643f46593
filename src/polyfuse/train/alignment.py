"""An alignment loss between paired sequences: soft-DTW between the token sequences of each pair
of sequence modalities of a row (``TrainConfig.align_sequences``).

Two recordings of one event (an accelerometer and a gyroscope on one wrist, a vibration and the
machine's sound) unfold on one clock, but their encoders need not agree on when things happen. Each
modality's tokens are projected to a shared space (unit length) and the soft-DTW divergence
(``data.alignment.soft_dtw_divergence``, Cuturi & Blondel 2017; Blondel et al. 2021) between the
two projected sequences is added to the loss, per pair, over the rows where both are present and
divided by the sequences' summed length: the encoders learn token sequences that can be aligned,
whatever their rates and lengths. Its projections live in the training task only; the saved model
is the encoders, fusion and heads as ever.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyfuse.data.alignment import soft_dtw_divergence
from polyfuse.data.batch import Batch
from polyfuse.models.multimodal import MultimodalModel

SEQUENCE_KINDS = ("timeseries", "audio")  # modalities whose tokens are steps in time
SHARED_DIM = 32  # width of the space the sequences are aligned in
GAMMA = 0.1  # soft-DTW's smoothing


class SequenceAlignment(nn.Module):
    """The soft-DTW alignment loss of every pair of sequence modalities (none: 0)."""

    def __init__(self, model: MultimodalModel, gamma: float = GAMMA) -> None:
        super().__init__()
        names = [
            name
            for name, enc in model.encoders.items()
            if getattr(enc, "modality", None) in SEQUENCE_KINDS and hasattr(enc, "forward_tokens")
        ]
        self.encoders: dict[str, Any] = {n: model.encoders[n] for n in names}  # the model's, not submodules
        self.proj = nn.ModuleDict({n: nn.Linear(int(self.encoders[n].token_dim), SHARED_DIM) for n in names})
        self.pairs = list(combinations(names, 2))
        self.gamma = gamma

    def forward(self, batch: Batch) -> Tensor:
        device = next(iter(self.proj.parameters())).device if len(self.proj) else torch.device("cpu")
        total = torch.zeros((), device=device)
        if not self.pairs:
            return total
        tokens = {name: self._projected(name, batch) for name in self.encoders}
        for a, b in self.pairs:
            rows = batch.mask[a] & batch.mask[b]
            if rows.any():
                x, y = tokens[a][rows], tokens[b][rows]
                total = total + soft_dtw_divergence(x, y, self.gamma).mean() / (x.shape[1] + y.shape[1])
        return total / len(self.pairs)

    def _projected(self, name: str, batch: Batch) -> Tensor:
        tokens, valid = self.encoders[name].forward_tokens(batch.inputs[name])  # [B, T, D], [B, T]
        return F.normalize(self.proj[name](tokens), dim=-1) * valid[..., None]
