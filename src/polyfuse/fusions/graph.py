"""Fusion by message passing on a graph whose nodes are the modalities.

Attention-weighted messages between nodes follow Veličković et al., 2018, "Graph Attention
Networks" (GAT), written in plain torch: with a handful of modalities the graph is fully connected
and small enough for a dense [B, M, M] attention matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from polyfuse.fusions._common import ModalityTokens, by_name, ordered, renormalise
from polyfuse.registry import FUSIONS


class _GATLayer(nn.Module):
    """One multi-head GAT round over a dense graph, with a residual update of the node states."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by num_heads {num_heads}")
        self.heads, self.head_dim = num_heads, dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.lin = nn.Linear(dim, dim, bias=False)
        # GAT scores e_ij = LeakyReLU(a_src . W h_j + a_dst . W h_i), one vector pair per head.
        self.att_src = nn.Parameter(torch.randn(num_heads, self.head_dim) * 0.1)
        self.att_dst = nn.Parameter(torch.randn(num_heads, self.head_dim) * 0.1)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.weights: Tensor | None = None  # [B, M_dst, M_src], mean over heads, before dropout

    def forward(self, h: Tensor, allowed: Tensor) -> Tensor:
        batch, nodes, _ = h.shape
        wh = self.lin(self.norm(h)).view(batch, nodes, self.heads, self.head_dim)  # [B, M, H, d/H]
        src = (wh * self.att_src).sum(-1)  # [B, M, H]
        dst = (wh * self.att_dst).sum(-1)  # [B, M, H]
        scores = F.leaky_relu(dst.unsqueeze(2) + src.unsqueeze(1), 0.2)  # [B, M_dst, M_src, H]
        scores = scores.masked_fill(~allowed.unsqueeze(-1), float("-inf"))
        alpha = scores.softmax(dim=2)  # each row keeps its self-loop, so never all -inf
        self.weights = alpha.detach().mean(dim=-1)
        alpha = self.drop(alpha)
        msg = torch.einsum("bijh,bjhd->bihd", alpha, wh).reshape(batch, nodes, -1)  # [B, M, d]
        return h + self.drop(self.out(F.elu(msg)))  # [B, M, d]


@FUSIONS.register("graph")
class GraphFusion(nn.Module):
    """Graph attention (GAT) message passing between one node per modality.

    Each modality is a node: its embedding projected to ``hidden_dim`` plus a learned node-type
    embedding. Two rounds of GAT message passing run over the fully connected graph; absent nodes
    neither send nor receive messages (they keep only their self-loop). The readout is the mean of
    the present node states together with a learned bias token, so a row with every modality
    absent reads out the bias token alone and stays finite. ``modality_weights()`` gives the
    attention each modality received in the last round of the last forward pass, averaged over the
    present receiving nodes and the heads.

    Args:
        in_dims: Modality -> embedding size.
        output_dim: Size of the fused vector (default ``hidden_dim``).
        hidden_dim: Node state width.
        num_heads: Attention heads per GAT round.
        num_layers: Rounds of message passing.
        dropout: Dropout on attention weights and messages.
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
        self.nodes = ModalityTokens(in_dims, hidden_dim)  # node states with a node-type embedding
        self.layers = nn.ModuleList(_GATLayer(hidden_dim, num_heads, dropout) for _ in range(num_layers))
        self.bias_token = nn.Parameter(torch.zeros(hidden_dim))
        self.norm = nn.LayerNorm(hidden_dim)
        self.proj_out = nn.Linear(hidden_dim, self.output_dim)
        self._weights: Tensor | None = None  # [B, M] of the last forward pass

    def forward(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        h, here = self.nodes(embeddings, mask)  # [B, M, d], [B, M]
        eye = torch.eye(len(self.names), dtype=torch.bool, device=h.device)
        allowed = (here.unsqueeze(2) & here.unsqueeze(1)) | eye  # [B, M_dst, M_src]
        for layer in self.layers:
            h = layer(h, allowed)
        self._weights = self._received(here)
        weight = here.unsqueeze(-1).to(h.dtype)  # [B, M, 1]
        summed = torch.where(here.unsqueeze(-1), h, h.new_zeros(())).sum(dim=1) + self.bias_token
        pooled = summed / (weight.sum(dim=1) + 1)  # [B, d]
        return self.proj_out(self.norm(pooled))  # type: ignore[no-any-return]  # [B, output_dim]

    def _received(self, here: Tensor) -> Tensor | None:
        """Mean over present receivers of the last round's attention to each sender [B, M]."""
        last = self.layers[-1] if len(self.layers) else None
        if not isinstance(last, _GATLayer) or last.weights is None:
            return None
        receivers = here.unsqueeze(-1).to(last.weights.dtype)  # [B, M_dst, 1]
        # Present receivers only attend to present senders, so absent senders get 0.
        return renormalise((last.weights * receivers).sum(dim=1), here)

    def modality_weights(self) -> dict[str, Tensor] | None:
        """Modality -> [B] attention it received (see the class docstring); None before any forward."""
        return by_name(self.names, self._weights)
