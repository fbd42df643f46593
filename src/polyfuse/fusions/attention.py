"""Fusion by self-attention over one token per modality plus a [CLS] token.

Transformer layers from Vaswani et al., 2017, "Attention Is All You Need"; one token per
modality with a learned type embedding and a classification token, as in the fusion transformers
of Nagrani et al., 2021, "Attention Bottlenecks for Multimodal Fusion" and Tsai et al., 2019,
"Multimodal Transformer for Unaligned Multimodal Language Sequences".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyfuse.fusions._common import ModalityTokens, by_name, ordered, renormalise
from polyfuse.registry import FUSIONS


class _Block(nn.Module):
    """Pre-norm Transformer layer that keeps its last attention weights for inspection."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
        )
        self.drop = nn.Dropout(dropout)
        self.weights: Tensor | None = None  # [B, T, T], averaged over heads

    def forward(self, x: Tensor, pad: Tensor) -> Tensor:
        h = self.norm1(x)  # [B, T, d]
        out, weights = self.attn(h, h, h, key_padding_mask=pad, need_weights=True)
        self.weights = weights.detach()
        x = x + self.drop(out)
        return x + self.drop(self.ff(self.norm2(x)))  # [B, T, d]


@FUSIONS.register("attention")
class AttentionFusion(nn.Module):
    """Self-attention over one token per modality plus a learned [CLS] token.

    Project each modality to width ``hidden_dim``, add a modality-type embedding, prepend a
    learned [CLS] token and run a small Transformer whose keys exclude absent modalities.

    The [CLS] token is never masked, so rows with every modality absent still give finite output.
    After a forward pass, ``modality_weights()`` gives how much [CLS] attended to each modality in
    the last layer (renormalised over the present modalities, leaving out [CLS] itself).

    Args:
        in_dims: Modality -> embedding size.
        output_dim: Size of the fused vector (default ``hidden_dim``).
        hidden_dim: Token width d.
        num_heads: Attention heads.
        num_layers: Transformer layers.
        dropout: Dropout inside the layers.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        output_dim: int | None = None,
        hidden_dim: int = 128,
        num_heads: int = 4,
        num_layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.names = ordered(in_dims)
        self.output_dim = output_dim or hidden_dim
        self.tokens = ModalityTokens(in_dims, hidden_dim)
        self.cls = nn.Parameter(torch.randn(1, 1, hidden_dim) * 0.02)
        self.blocks = nn.ModuleList(_Block(hidden_dim, num_heads, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden_dim)
        self.proj_out = nn.Linear(hidden_dim, self.output_dim)
        self._weights: Tensor | None = None  # [B, M] of the last forward pass

    def _tokens(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        tokens, here = self.tokens(embeddings, mask)  # [B, M, d], [B, M]
        batch = tokens.shape[0]
        seq = torch.cat([self.cls.expand(batch, -1, -1), tokens], dim=1)  # [B, 1 + M, d]
        pad = ~torch.cat([here.new_ones(batch, 1), here], dim=1)  # [B, 1 + M], True = ignore
        return seq, pad

    def forward(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        x, pad = self._tokens(embeddings, mask)  # [B, 1 + M, d], [B, 1 + M]
        for block in self.blocks:
            x = block(x, pad)
        last = self.blocks[-1] if len(self.blocks) else None
        if isinstance(last, _Block) and last.weights is not None:
            self._weights = renormalise(last.weights[:, 0, 1:], ~pad[:, 1:])  # [CLS] -> modalities
        return self.proj_out(self.norm(x[:, 0]))  # type: ignore[no-any-return]  # [B, output_dim]

    def modality_weights(self) -> dict[str, Tensor] | None:
        """Modality -> [B] attention of [CLS] to it in the last layer of the last forward pass,
        renormalised over the present modalities (None before any forward pass)."""
        return by_name(self.names, self._weights)

    def cls_attention(self) -> dict[str, Tensor] | None:
        """The former name of ``modality_weights``, kept so existing code keeps working."""
        return self.modality_weights()
