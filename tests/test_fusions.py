"""Contract tests for every registered fusion: shapes, gradients, absent modalities, key order."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import polyfuse.fusions  # noqa: F401  (registers the fusions)
from polyfuse.registry import FUSIONS

B = 6
IN_DIMS = {"text": 5, "image": 7, "audio": 3}


def build(name: str, in_dims: dict[str, int] = IN_DIMS) -> nn.Module:
    torch.manual_seed(0)
    return FUSIONS.build(name, in_dims=in_dims)  # type: ignore[no-any-return]


def make_inputs(seed: int = 0) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    embeddings = {m: torch.randn(B, d, generator=gen) for m, d in IN_DIMS.items()}
    mask = {m: torch.rand(B, generator=gen) > 0.3 for m in IN_DIMS}
    mask["text"][0] = True  # at least one row with something present
    return embeddings, mask


def reverse(d: dict[str, Tensor]) -> dict[str, Tensor]:
    return dict(reversed(list(d.items())))


@pytest.mark.parametrize("name", FUSIONS.names())
def test_shape_and_backward(name: str) -> None:
    fusion = build(name).train()
    embeddings, mask = make_inputs()
    embeddings = {m: e.requires_grad_() for m, e in embeddings.items()}
    out = fusion(embeddings, mask)
    assert out.shape == (B, fusion.output_dim)
    assert torch.isfinite(out).all()
    out.pow(2).mean().backward()
    assert all(e.grad is not None for e in embeddings.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in fusion.parameters())


@pytest.mark.parametrize("name", FUSIONS.names())
def test_key_order_does_not_matter(name: str) -> None:
    fusion = build(name).eval()
    embeddings, mask = make_inputs()
    with torch.no_grad():
        expected = fusion(embeddings, mask)
        torch.testing.assert_close(fusion(reverse(embeddings), reverse(mask)), expected)
        # The order of in_dims at construction does not matter either (same seed, same weights).
        rebuilt = build(name, dict(reversed(list(IN_DIMS.items())))).eval()
        torch.testing.assert_close(rebuilt(embeddings, mask), expected)


@pytest.mark.parametrize("name", FUSIONS.names())
@pytest.mark.parametrize("absent", list(IN_DIMS))
def test_absent_modality_has_no_influence(name: str, absent: str) -> None:
    fusion = build(name).eval()
    embeddings, mask = make_inputs()
    mask[absent] = torch.zeros(B, dtype=torch.bool)
    changed = dict(embeddings)
    changed[absent] = torch.randn(B, IN_DIMS[absent]) * 100
    changed[absent][0] = float("nan")  # not even NaN may leak from an absent modality
    with torch.no_grad():
        out = fusion(embeddings, mask)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(fusion(changed, mask), out)


@pytest.mark.parametrize("name", FUSIONS.names())
def test_all_absent_rows_are_finite(name: str) -> None:
    fusion = build(name).train()
    embeddings, _ = make_inputs()
    embeddings = {m: e.requires_grad_() for m, e in embeddings.items()}
    mask = {m: torch.zeros(B, dtype=torch.bool) for m in IN_DIMS}
    out = fusion(embeddings, mask)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in fusion.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", FUSIONS.names())
def test_nan_in_absent_rows_keeps_gradients_finite(name: str) -> None:
    fusion = build(name).train()
    embeddings, mask = make_inputs()
    embeddings["image"][1] = float("nan")
    mask["image"][1] = False
    fusion(embeddings, mask).pow(2).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in fusion.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", FUSIONS.names())
def test_single_modality(name: str) -> None:
    fusion = build(name, {"tabular": 4}).eval()
    with torch.no_grad():
        out = fusion({"tabular": torch.randn(3, 4)}, {"tabular": torch.tensor([True, False, True])})
    assert out.shape == (3, fusion.output_dim) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", FUSIONS.names())
def test_has_a_paper_citation(name: str) -> None:
    module = __import__(FUSIONS.get(name).__module__, fromlist=["_"])
    doc = (module.__doc__ or "") + (FUSIONS.get(name).__doc__ or "")
    assert any(str(year) in doc for year in range(1990, 2031)), "cite the paper (author, year, title)"
