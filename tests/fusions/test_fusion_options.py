"""Options of single fusions beyond the registry-wide contract (parity settings for benchmarks)."""

from __future__ import annotations

import torch

import polyfuse.fusions  # noqa: F401  (registers the fusions)
from polyfuse.registry import FUSIONS

IN_DIMS = {"image": 4, "audio": 6}


def test_plain_concat_is_torch_cat_in_sorted_order() -> None:
    fusion = FUSIONS.build("concat", in_dims=IN_DIMS, norm=False, project=False)
    emb = {"image": torch.randn(3, 4), "audio": torch.randn(3, 6)}
    mask = {m: torch.tensor([True, True, False]) for m in emb}
    out = fusion(emb, mask)
    assert fusion.output_dim == 10 and out.shape == (3, 10)
    torch.testing.assert_close(out[:2], torch.cat([emb["audio"], emb["image"]], dim=1)[:2])
    assert torch.equal(out[2], torch.zeros(10))  # absent embeddings become zeros
    assert sum(p.numel() for p in fusion.parameters()) == 0  # as MultiBench's Concat


def test_lmf_without_norm_sees_the_raw_scale() -> None:
    torch.manual_seed(0)
    plain = FUSIONS.build("lmf", in_dims=IN_DIMS, output_dim=5, rank=3, norm=False, dropout=0.0).eval()
    emb = {"image": torch.randn(2, 4), "audio": torch.randn(2, 6)}
    mask = {m: torch.ones(2, dtype=torch.bool) for m in emb}
    scaled = {m: 10 * e for m, e in emb.items()}
    # Without the norm, scaling the inputs changes the output (with LayerNorm it would not).
    assert not torch.allclose(plain(emb, mask), plain(scaled, mask))
    torch.manual_seed(0)
    normed = FUSIONS.build("lmf", in_dims=IN_DIMS, output_dim=5, rank=3, dropout=0.0).eval()
    torch.testing.assert_close(normed(emb, mask), normed(scaled, mask), atol=1e-3, rtol=1e-3)
