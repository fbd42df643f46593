"""MultimodalModel: encoders per modality -> one fusion -> one head per label.

A fusion with ``wants_tokens = True`` receives token sequences instead of one embedding per
modality (see ``polyfuse.fusions.base``): the model then calls each encoder's ``forward_tokens``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyfuse.data.batch import Batch


def has_tokens(encoder: nn.Module) -> bool:
    """Whether ``encoder`` offers ``forward_tokens(x) -> (tokens [B, T, token_dim], valid [B, T])``."""
    return callable(getattr(encoder, "forward_tokens", None))


def pack_tokens(tokens: Tensor, valid: Tensor) -> Tensor:
    """Tokens [N, T, D] and validity [N, T] as one tensor [N, T, D + 1] (validity last), so a cache
    of tokens is gathered, subset and selected like any other cached tensor."""
    return torch.cat([tokens, valid.unsqueeze(-1).to(tokens.dtype)], dim=-1)


def unpack_tokens(packed: Tensor) -> tuple[Tensor, Tensor]:
    """The inverse of ``pack_tokens``."""
    return packed[..., :-1], packed[..., -1] > 0.5


def pad_tokens(parts: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Concatenate chunks of (tokens [n, T_i, D], valid [n, T_i]) along rows, padding every chunk
    to the longest T with invalid zero tokens (text chunks are trimmed to their own longest row)."""
    length = max(t.shape[1] for t, _ in parts)
    tokens = [nn.functional.pad(t, (0, 0, 0, length - t.shape[1])) for t, _ in parts]
    valid = [nn.functional.pad(v, (0, length - v.shape[1]), value=False) for _, v in parts]
    return torch.cat(tokens), torch.cat(valid)


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

    @property
    def wants_tokens(self) -> bool:
        """Whether the fusion takes token sequences (``forward_tokens``) rather than embeddings."""
        return bool(getattr(self.fusion, "wants_tokens", False))

    def embed(self, batch: Batch, names: list[str] | None = None) -> dict[str, Tensor]:
        """One embedding [B, D_m] per modality (of ``names``, default all); frozen encoders' outputs may
        come precomputed."""
        out = {}
        usable = self._usable_caches(batch)
        for name, enc in self.encoders.items():
            if names is not None and name not in names:
                continue
            cached = self._cached(batch, name, 2, usable)
            out[name] = enc(batch.inputs[name]) if cached is None else cached
        return out

    def tokens(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Per modality: tokens [B, T_m, D_m] and their validity [B, T_m] (``forward_tokens``, or
        packed tokens cached for a frozen encoder). An encoder without ``forward_tokens`` gives its
        embedding [B, D_m], which token-level fusions read as a single valid token."""
        tokens, valid = {}, {}
        usable = self._usable_caches(batch)
        for name, enc in self.encoders.items():
            cached = self._cached(batch, name, 3 if has_tokens(enc) else 2, usable)
            if not has_tokens(enc):
                tokens[name] = enc(batch.inputs[name]) if cached is None else cached  # [B, D_m]
            elif cached is not None:
                tokens[name], valid[name] = unpack_tokens(cached)
            else:
                tokens[name], valid[name] = enc.forward_tokens(batch.inputs[name])  # type: ignore[operator]
        return tokens, valid

    def _usable_caches(self, batch: Batch) -> set[str]:
        """Modalities whose cached outputs may stand in for their encoder: only still-frozen ones (a
        table may carry caches left by another model). Scans parameters only when there is a cache."""
        return {name for name in batch.cached if name in self.encoders and self.is_cacheable(name)}

    def _cached(self, batch: Batch, name: str, dims: int, usable: set[str]) -> Tensor | None:
        """The batch's cached output for ``name`` when it is usable and of the wanted kind (2-D
        embeddings or 3-D packed tokens)."""
        cached = batch.cached.get(name)
        if cached is None or name not in usable or not self.cache_fits(name, cached, dims):
            return None
        return cached

    def cache_fits(self, name: str, cached: Tensor, dims: int) -> bool:
        """Whether a cache is of the wanted kind (2-D embeddings or 3-D packed tokens) and, for
        embeddings, of this encoder's width (another model's cache of the modality may be wider)."""
        if cached.dim() != dims:
            return False
        width = getattr(self.encoders[name], "output_dim", None)
        return dims != 2 or width is None or cached.shape[-1] == width

    def caches_tokens(self, name: str) -> bool:
        """Whether a cache of modality ``name``'s frozen encoder should hold tokens (3-D, packed)."""
        return self.wants_tokens and has_tokens(self.encoders[name])

    def fusion_inputs(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
        """What ``fuse`` hands the fusion: embeddings [B, D_m] and None, or, for a token-level
        fusion, tokens [B, T_m, D_m] and their validity (pass it as ``tokens_valid=``)."""
        if self.wants_tokens:
            return self.tokens(batch)
        return self.embed(batch), None

    def fuse(self, batch: Batch) -> Tensor:
        inputs, valid = self.fusion_inputs(batch)
        return self.fuse_inputs(inputs, valid, batch.mask)

    def fuse_inputs(
        self, inputs: dict[str, Tensor], valid: dict[str, Tensor] | None, mask: dict[str, Tensor]
    ) -> Tensor:
        """The fusion over ``fusion_inputs``' output (for callers that also use the inputs)."""
        mask = {name: mask[name] for name in self.encoders}
        if valid is not None:
            return self.fusion(inputs, mask, tokens_valid=valid)  # type: ignore[no-any-return]  # [B, D]
        return self.fusion(inputs, mask)  # type: ignore[no-any-return]  # [B, D]

    def classify(self, fused: Tensor) -> dict[str, Tensor]:
        """Label -> logits of each head on the fused representation [B, D]."""
        return {label: head(fused) for label, head in self.heads.items()}

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        return self.classify(self.fuse(batch))  # label -> logits

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

    def cacheable_modalities(self) -> list[str]:
        """Modalities whose input to the fusion never changes in training, so it can be computed once:
        fully frozen encoders and, for a token-level fusion, pretrained adapters with a frozen
        backbone (their tokens come before the trainable projection, which the fusion skips)."""
        return [name for name in self.encoders if self.is_cacheable(name)]

    def is_cacheable(self, name: str) -> bool:
        """One modality's test of ``cacheable_modalities``."""
        enc = self.encoders[name]
        if not any(p.requires_grad for p in enc.parameters()):
            return True
        return self.caches_tokens(name) and bool(getattr(enc, "frozen", False))
