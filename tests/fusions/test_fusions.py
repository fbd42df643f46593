"""Contract tests for every registered fusion: shapes, gradients, absent modalities, key order."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import polyfuse.fusions  # noqa: F401  (registers the fusions)
from polyfuse.fusions import profile_fusions
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


WEIGHING = [n for n in FUSIONS.names() if hasattr(FUSIONS.get(n), "modality_weights")]


def test_attention_like_fusions_weigh_modalities() -> None:
    expected = {"attention", "cross_attention", "gmu", "graph", "late", "perceiver"}
    assert expected | {"weighted_fixed", "weighted_learned"} <= set(WEIGHING)


@pytest.mark.parametrize("name", WEIGHING)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_modality_weights_of_the_last_forward_pass(name: str, mode: str) -> None:
    fusion = build(name).train(mode == "train")
    assert fusion.modality_weights() is None  # nothing to report before a forward pass
    embeddings, mask = make_inputs()
    mask["audio"][1] = mask["image"][1] = mask["text"][1] = False  # row 1: nothing present
    with torch.no_grad():
        fusion(embeddings, mask)
    weights = fusion.modality_weights()
    assert weights is not None and set(weights) == set(IN_DIMS)
    stacked = torch.stack([weights[m] for m in IN_DIMS], dim=1)  # [B, M]
    present = torch.stack([mask[m] for m in IN_DIMS], dim=1)
    assert stacked.shape == (B, len(IN_DIMS)) and (stacked >= 0).all()
    assert (stacked[~present] == 0).all()
    sums = stacked.sum(dim=1)
    torch.testing.assert_close(sums[present.any(1)], torch.ones(int(present.any(1).sum())))
    assert sums[1] == 0


def test_modality_weights_follow_the_learned_logits() -> None:
    fusion = build("weighted_learned").eval()
    with torch.no_grad():
        fusion.logits.copy_(torch.log(torch.tensor([1.0, 2.0, 5.0])))  # audio, image, text (sorted)
        embeddings, _ = make_inputs()
        mask = {m: torch.ones(B, dtype=torch.bool) for m in IN_DIMS}
        mask["text"][0] = False
        fusion(embeddings, mask)
    weights = fusion.modality_weights()
    torch.testing.assert_close(weights["text"][1:], torch.full((B - 1,), 5 / 8))
    torch.testing.assert_close(weights["audio"][0], torch.tensor(1 / 3))  # text absent: 1 : 2 over the rest


def test_late_stacking_has_no_modality_weights() -> None:
    fusion = FUSIONS.build("late", in_dims=IN_DIMS, combine="stacking").eval()
    embeddings, mask = make_inputs()
    with torch.no_grad():
        fusion(embeddings, mask)
    assert fusion.modality_weights() is None


def test_attention_keeps_cls_attention_as_an_alias() -> None:
    fusion = build("attention").eval()
    embeddings, mask = make_inputs()
    with torch.no_grad():
        fusion(embeddings, mask)
    alias, weights = fusion.cls_attention(), fusion.modality_weights()
    assert alias is not None and weights is not None
    assert all(torch.equal(alias[m], weights[m]) for m in IN_DIMS)


def test_profile_fusions_counts_parameters_and_times_every_fusion() -> None:
    dims = {"image": 6, "text": 4}
    rows = profile_fusions(dims, output_dim=10, batch_size=8, repeats=2)
    assert [row["name"] for row in rows] == FUSIONS.names()
    for row in rows:
        torch.manual_seed(0)
        fusion = FUSIONS.build(row["name"], in_dims=dims, output_dim=10)
        assert row["params"] == sum(p.numel() for p in fusion.parameters()) > 0
        assert row["output_dim"] == 10
        assert isinstance(row["latency_ms"], float) and row["latency_ms"] > 0
        assert row["doc"] and row["doc"] in FUSIONS.get(row["name"]).__doc__


def test_cli_fusions_list_shows_every_fusion_with_its_size() -> None:
    from typer.testing import CliRunner

    from polyfuse.cli import app

    runner = CliRunner()
    args = [
        "fusions",
        "list",
        "--dims",
        "image=8,text=4",
        "--output-dim",
        "6",
        "--batch-size",
        "4",
        "--repeats",
        "1",
    ]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    dims = {"image": 8, "text": 4}
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.output.splitlines()]
    first_lines = {cells[0]: cells for cells in rows if len(cells) == 5 and cells[0]}  # name, doc, params ...
    assert set(first_lines) == set(FUSIONS.names())
    for name, cells in first_lines.items():
        torch.manual_seed(0)
        params = sum(p.numel() for p in FUSIONS.build(name, in_dims=dims, output_dim=6).parameters())
        assert cells[2:4] == [f"{params:,}", "6"] and float(cells[4]) > 0, (name, cells)
    plain = runner.invoke(app, ["fusions"])  # the plain listing still works
    assert plain.exit_code == 0 and {line.split()[0] for line in plain.output.splitlines()} == set(
        FUSIONS.names()
    )
    bad = runner.invoke(app, ["fusions", "list", "--dims", "image=x"])
    assert bad.exit_code == 2 and "MODALITY=SIZE" in bad.output
