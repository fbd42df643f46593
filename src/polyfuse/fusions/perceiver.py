"""Fusion by a small set of learned queries that read the modality tokens (an encoder-decoder).

Latent queries cross-attending to the inputs follow Jaegle et al., 2021, "Perceiver: General
Perception with Iterative Attention"; a few learned queries followed by self-attention are the
Q-Former of Li et al., 2023, "BLIP-2: Bootstrapping Language-Image Pre-training with Frozen Image
Encoders and Large Language Models".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyfuse.fusions._common import ModalityTokens, by_name, ordered, renormalise
from polyfuse.fusions.attention import _Block
from polyfuse.registry import FUSIONS


@FUSIONS.register("perceiver")
class PerceiverFusion(nn.Module):
    """A few learned queries cross-attend to the modality tokens (Perceiver, Q-Former).

    Project each modality to one token (plus a type embedding); ``num_queries`` learned queries
    cross-attend to those tokens, then a self-attention + MLP block mixes the queries, and their
    mean is projected to ``output_dim``.

    Absent modalities are removed from the keys with ``key_padding_mask``. One learned "null" key
    is always present, so no row's attention is ever entirely masked and rows with every modality
    absent still give finite output (the queries then read only the null key).
    ``modality_weights()`` gives the queries' mean attention to each modality in the last forward
    pass, renormalised over the present modalities (leaving out the null key).

    Args:
        in_dims: Modality -> embedding size.
        output_dim: Size of the fused vector (default ``hidden_dim``).
        hidden_dim: Token and query width d.
        num_heads: Attention heads.
        num_queries: Learned queries K.
        dropout: Dropout inside the attention blocks.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        output_dim: int | None = None,
        hidden_dim: int = 128,
        num_heads: int = 4,
        num_queries: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.names = ordered(in_dims)
        self.output_dim = output_dim or hidden_dim
        self.tokens = ModalityTokens(in_dims, hidden_dim)
        self.null = nn.Parameter(torch.randn(1, 1, hidden_dim) * 0.02)
        # Unit-scale queries start out distinct from one another; tiny ones trained noticeably slower.
        self.queries = nn.Parameter(torch.randn(1, num_queries, hidden_dim))  # [1, K, d]
        self.norm_q = nn.LayerNorm(hidden_dim)
        self.norm_kv = nn.LayerNorm(hidden_dim)
        self.cross = nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.block = _Block(hidden_dim, num_heads, dropout)
        self.norm = nn.LayerNorm(hidden_dim)
        self.proj_out = nn.Linear(hidden_dim, self.output_dim)
        self._weights: Tensor | None = None  # [B, M] of the last forward pass

    def _keys(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        tokens, here = self.tokens(embeddings, mask)  # [B, M, d], [B, M]
        batch = tokens.shape[0]
        keys = torch.cat([self.null.expand(batch, -1, -1), tokens], dim=1)
        return keys, ~torch.cat(
            [here.new_ones(batch, 1), here], dim=1
        )  # [B, 1 + M, d], [B, 1 + M] True = ignore

    def forward(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        keys, pad = self._keys(embeddings, mask)
        keys = self.norm_kv(keys)
        q = self.queries.expand(keys.shape[0], -1, -1)  # [B, K, d]
        out, attn = self.cross(self.norm_q(q), keys, keys, key_padding_mask=pad, need_weights=True)
        self._weights = renormalise(attn.detach().mean(dim=1)[:, 1:], ~pad[:, 1:])  # [B, M], null left out
        q = q + self.drop(out)  # [B, K, d]
        no_pad = torch.zeros(q.shape[:2], dtype=torch.bool, device=q.device)
        q = self.block(q, no_pad)  # [B, K, d]
        return self.proj_out(self.norm(q.mean(dim=1)))  # type: ignore[no-any-return]  # [B, output_dim]

    def modality_weights(self) -> dict[str, Tensor] | None:
        """Modality -> [B] attention of the queries (mean over queries and heads) in the last
        forward pass, renormalised over the present modalities (None before any forward pass)."""
        return by_name(self.names, self._weights)
