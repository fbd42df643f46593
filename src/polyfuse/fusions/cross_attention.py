"""Fusion by crossmodal attention between token sequences, as in the Multimodal Transformer (MulT).

Tsai, Bai, Liang, Kolter, Morency & Salakhutdinov, 2019, "Multimodal Transformer for Unaligned
Multimodal Language Sequences": each target modality's tokens query the other modalities' tokens
through crossmodal Transformer layers, so sequences need no alignment in time or space.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from polyfuse.fusions._common import by_name, ordered, used_tokens
from polyfuse.registry import FUSIONS


def sinusoid(length: int, dim: int, like: Tensor) -> Tensor:
    """Fixed sinusoidal positions [length, dim] (Vaswani et al., 2017), as MulT adds to its tokens."""
    pos = torch.arange(length, dtype=like.dtype, device=like.device).unsqueeze(1)  # [T, 1]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=like.dtype, device=like.device) * (-math.log(1e4) / dim))
    table = like.new_zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


def masked_mean(x: Tensor, keep: Tensor) -> Tensor:
    """Mean of ``x`` [B, T, d] over the tokens where ``keep`` [B, T]; zeros in rows with none."""
    total = torch.where(keep.unsqueeze(-1), x, x.new_zeros(())).sum(dim=1)  # [B, d]
    return total / keep.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)


class _CrossBlock(nn.Module):
    """Pre-norm crossmodal layer: target tokens query source tokens, then a feed-forward block."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, source: Tensor, pad: Tensor) -> Tensor:
        kv = self.norm_kv(source)  # [B, S, d]
        out, _ = self.attn(self.norm_q(x), kv, kv, key_padding_mask=pad, need_weights=False)
        x = x + self.drop(out)  # [B, T, d]
        return x + self.drop(self.ff(self.norm_ff(x)))  # [B, T, d]


@FUSIONS.register("cross_attention")
class CrossAttentionFusion(nn.Module):
    """Crossmodal attention (MulT): each modality's tokens query every other modality's tokens.

    For each target modality, crossmodal Transformer layers in which its tokens query the tokens
    of every other modality; each target's tokens are then mean-pooled, and the pooled vectors are
    combined by a softmax over the present modalities (attention pooling) and projected.

    Tokens: each modality's tokens are projected to ``hidden_dim``, normalised, and given a learned
    modality-type embedding and fixed sinusoidal positions. The fusion sets ``wants_tokens``, so a
    model hands it token sequences [B, T_m, D_m] and their validity (``tokens_valid``); a plain
    embedding [B, D_m] is one token, so the usual fusion contract holds too.

    Masking: a token is used only where its modality is present and the token is valid (padding of
    text is not); unused tokens are zeroed before any maths and removed from the keys. One learned
    "null" key is always present, so no query's attention is ever entirely masked (a single
    modality, or every other modality absent, still gives finite output). A modality with no used
    token gets weight 0 in the combination; rows with none at all fuse to one fixed, finite vector.
    ``modality_weights()`` gives the combination's weights of the last forward pass.

    Unlike MulT, which runs one crossmodal Transformer per (source, target) pair, each target
    attends to the concatenated tokens of all other modalities at once: M stacks instead of
    M (M - 1), the same keys. Each target's result is pooled rather than self-attended.

    Args:
        in_dims: Modality -> token (or embedding) size.
        output_dim: Size of the fused vector (default ``hidden_dim``).
        hidden_dim: Token width d.
        num_heads: Attention heads.
        num_layers: Crossmodal layers per target modality.
        dropout: Dropout inside the layers.
    """

    wants_tokens = True

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
        self.proj = nn.ModuleDict({m: self._projection(in_dims[m], hidden_dim) for m in self.names})
        self.type_embed = nn.Parameter(torch.randn(len(self.names), hidden_dim) * 0.02)  # [M, d]
        self.null = nn.Parameter(torch.randn(1, 1, hidden_dim) * 0.02)
        self.cross = nn.ModuleDict(
            {
                m: nn.ModuleList(_CrossBlock(hidden_dim, num_heads, dropout) for _ in range(num_layers))
                for m in self.names
            }
        )
        self.norms = nn.ModuleDict({m: nn.LayerNorm(hidden_dim) for m in self.names})
        self.score = nn.Linear(hidden_dim, 1)  # attention pooling over the modalities
        self.norm = nn.LayerNorm(hidden_dim)
        self.proj_out = nn.Linear(hidden_dim, self.output_dim)
        self._weights: Tensor | None = None  # [B, M] of the last forward pass

    @staticmethod
    def _projection(in_dim: int, hidden_dim: int) -> nn.Module:
        # The norm puts tokens of very different scales (a pretrained model, a fresh CNN) on a par.
        return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.LayerNorm(hidden_dim))

    def _tokens(
        self, embeddings: dict[str, Tensor], mask: dict[str, Tensor], tokens_valid: dict[str, Tensor] | None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Modality -> projected tokens [B, T_m, d] and used tokens [B, T_m] (present and valid)."""
        tokens, keep = {}, {}
        for i, m in enumerate(self.names):
            x, used = used_tokens(m, embeddings, mask, tokens_valid)  # [B, T_m, D_m], [B, T_m]
            h = self.proj[m](x) + self.type_embed[i] + sinusoid(x.shape[1], self.type_embed.shape[1], x)
            tokens[m], keep[m] = h, used  # [B, T_m, d], [B, T_m]
        return tokens, keep

    def _attend(self, target: str, tokens: dict[str, Tensor], keep: dict[str, Tensor]) -> Tensor:
        """The target's tokens after its crossmodal layers, mean-pooled over its used tokens: [B, d]."""
        x = tokens[target]  # [B, T, d]
        batch = x.shape[0]
        others = [m for m in self.names if m != target]
        source = torch.cat([self.null.expand(batch, -1, -1), *(tokens[m] for m in others)], dim=1)
        pad = ~torch.cat([keep[target].new_ones(batch, 1), *(keep[m] for m in others)], dim=1)
        for block in self.cross[target]:  # type: ignore[attr-defined]  # an nn.ModuleList
            x = block(x, source, pad)  # [B, T, d]; keys: null + other modalities' tokens [B, S, d]
        return masked_mean(self.norms[target](x), keep[target])  # [B, d]

    def forward(
        self,
        embeddings: dict[str, Tensor],
        mask: dict[str, Tensor],
        tokens_valid: dict[str, Tensor] | None = None,
    ) -> Tensor:
        tokens, keep = self._tokens(embeddings, mask, tokens_valid)
        pooled = torch.stack([self._attend(m, tokens, keep) for m in self.names], dim=1)  # [B, M, d]
        here = torch.stack([keep[m].any(dim=1) for m in self.names], dim=1)  # [B, M]
        scores = self.score(pooled).squeeze(-1)  # [B, M]
        scores = torch.where(here, scores, torch.full_like(scores, float("-inf")))
        scores = torch.where(here.any(dim=1, keepdim=True), scores, torch.zeros_like(scores))  # no all -inf
        weights = torch.softmax(scores, dim=1) * here.to(scores.dtype)  # [B, M], 0 where absent
        self._weights = weights.detach()
        fused = (weights.unsqueeze(-1) * pooled).sum(dim=1)  # [B, d]
        return self.proj_out(self.norm(fused))  # type: ignore[no-any-return]  # [B, output_dim]

    def modality_weights(self) -> dict[str, Tensor] | None:
        """Modality -> [B] weight of its pooled crossmodal representation in the last forward pass
        (softmax over the present modalities, 0 where absent); None before any forward pass."""
        return by_name(self.names, self._weights)
