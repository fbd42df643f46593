"""Fusion by a relation network over pairs of tokens, conditioned on the other modalities.

Santoro, Raposo, Barrett, Malinowski, Pascanu, Battaglia & Lillicrap, 2017, "A simple neural
network module for relational reasoning" (NeurIPS): RN(O) = f(sum over pairs (i, j) of
g(o_i, o_j, q)), where the objects o are the cells of a CNN's feature map and q is the question's
embedding; on Sort-of-CLEVR it answers relational questions at ~94% where a CNN + MLP reaches ~63%.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from polyfuse.fusions._common import ordered, used_tokens
from polyfuse.fusions.cross_attention import masked_mean, sinusoid
from polyfuse.registry import FUSIONS


def _projection(in_dim: int, hidden_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.LayerNorm(hidden_dim))


@FUSIONS.register("relation")
class RelationFusion(nn.Module):
    """Relation network (Santoro et al.): an MLP over every pair of object tokens and the condition.

    Objects: the tokens of the modalities named in ``objects`` (default: every modality), e.g. the
    positions of an image CNN's last feature map; each is projected to ``hidden_dim``, normalised,
    and given a learned modality-type embedding and fixed sinusoidal positions (the index of a
    feature-map cell says where it lies). Condition: each other modality's tokens, projected and
    normalised the same way and mean-pooled, concatenated in sorted order (e.g. the question);
    none when every modality is an object.

    For every ordered pair (i, j) of used object tokens g([o_i, o_j, q]) (an MLP of ``num_layers``
    layers; its first layer is applied to o_i, o_j and q apart and summed, which is the same
    linear map at a fraction of the cost), averaged over the pairs (Santoro et al. sum; a mean
    keeps the scale when the number of tokens varies), then f (two layers with dropout) to
    ``output_dim``. Cost grows with the square of the number of object tokens: a 4x4 feature map
    makes 256 pairs.

    Masking: a token is used where its modality is present and the token is valid; unused tokens
    are zeroed before any maths and pairs with one are left out of the mean. An absent condition
    modality pools to zeros. A row with no used object pair averages nothing (zeros) and still gives
    a finite output through f.

    Args:
        in_dims: Modality -> token (or embedding) size.
        output_dim: Size of the fused vector (default ``hidden_dim``).
        hidden_dim: Width of the tokens and of g and f.
        num_layers: Layers of g.
        dropout: Dropout in f.
        objects: Modalities whose tokens are the objects (default: all); a list or "image,audio".
    """

    wants_tokens = True

    def __init__(
        self,
        in_dims: dict[str, int],
        output_dim: int | None = None,
        hidden_dim: int = 128,
        num_layers: int = 3,
        dropout: float = 0.1,
        objects: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.names = ordered(in_dims)
        objects = objects.split(",") if isinstance(objects, str) else objects
        unknown = sorted(set(objects or ()) - set(self.names))
        if unknown:
            raise ValueError(f"relation fusion: objects {unknown} are not among the modalities {self.names}")
        self.objects = ordered(objects or self.names)
        self.conditions = [m for m in self.names if m not in self.objects]
        self.output_dim = output_dim or hidden_dim
        self.proj = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(in_dims[m], hidden_dim), nn.LayerNorm(hidden_dim))
                for m in self.names
            }
        )
        self.type_embed = nn.Parameter(torch.randn(len(self.objects), hidden_dim) * 0.02)  # [M_o, d]
        # g's first layer, split by its inputs: left object, right object, condition.
        self.left = nn.Linear(hidden_dim, hidden_dim)
        self.right = nn.Linear(hidden_dim, hidden_dim, bias=False)
        self.condition = (
            nn.Linear(hidden_dim * len(self.conditions), hidden_dim, bias=False) if self.conditions else None
        )
        later: list[nn.Module] = []
        for _ in range(num_layers - 1):
            later += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
        self.g = nn.Sequential(*later)
        self.f = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, self.output_dim),
        )

    def _projected(
        self, name: str, embeddings: dict[str, Tensor], mask: dict[str, Tensor], valid: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """A modality's tokens projected [B, T, d] and which are used [B, T]."""
        x, used = used_tokens(name, embeddings, mask, valid)
        return self.proj[name](x), used

    def _objects(
        self, embeddings: dict[str, Tensor], mask: dict[str, Tensor], valid: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Every object token [B, T, d] (modalities in sorted order) and which are used [B, T]."""
        tokens, keep = [], []
        for i, m in enumerate(self.objects):
            h, used = self._projected(m, embeddings, mask, valid)
            h = h + self.type_embed[i] + sinusoid(h.shape[1], h.shape[2], h)
            tokens.append(torch.where(used.unsqueeze(-1), h, h.new_zeros(())))
            keep.append(used)
        return torch.cat(tokens, dim=1), torch.cat(keep, dim=1)

    def forward(
        self,
        embeddings: dict[str, Tensor],
        mask: dict[str, Tensor],
        tokens_valid: dict[str, Tensor] | None = None,
    ) -> Tensor:
        valid = tokens_valid or {}
        objects, keep = self._objects(embeddings, mask, valid)  # [B, T, d], [B, T]
        first = self.left(objects).unsqueeze(2) + self.right(objects).unsqueeze(1)  # [B, T, T, d]
        if self.condition is not None:
            pooled = [masked_mean(*self._projected(m, embeddings, mask, valid)) for m in self.conditions]
            first = first + self.condition(torch.cat(pooled, dim=-1))[:, None, None, :]  # [B, d]
        pairs = keep.unsqueeze(2) & keep.unsqueeze(1)  # [B, T, T]
        related = self.g(torch.relu(first))  # [B, T, T, d]
        related = torch.where(pairs.unsqueeze(-1), related, related.new_zeros(()))
        count = pairs.flatten(1).sum(dim=1, keepdim=True).clamp(min=1).to(related.dtype)  # [B, 1]
        return self.f(related.flatten(1, 2).sum(dim=1) / count)  # type: ignore[no-any-return]  # [B, output_dim]
