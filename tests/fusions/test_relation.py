"""The relation fusion reasons over pairs of tokens: a planted relational question that pooling cannot
answer, its options, and its condition modalities."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import polyfuse.fusions  # noqa: F401  (registers the fusions)
from polyfuse.fusions.cross_attention import masked_mean
from polyfuse.registry import FUSIONS

OBJECTS, COLOURS = 4, 4


def scenes(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Rows of 4 objects, one of each colour in a random order, each at a random x; the label says
    whether colour 0 lies left of colour 1. Every row holds the same colours, and the x values are
    exchangeable, so any pooled summary of the set carries no information about the label."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.argsort(torch.rand(n, OBJECTS, generator=gen), dim=1)  # [n, T]: each object's colour
    colour = nn.functional.one_hot(order, COLOURS).float()  # [n, T, C]
    x = torch.rand(n, OBJECTS, 1, generator=gen)  # [n, T, 1]
    x0 = (x.squeeze(-1) * (order == 0)).sum(dim=1)
    x1 = (x.squeeze(-1) * (order == 1)).sum(dim=1)
    return torch.cat([colour, x], dim=-1), (x0 < x1).long()


def accuracy_after_training(fusion: nn.Module, pool: bool, steps: int = 300) -> float:
    torch.manual_seed(0)
    head = nn.Linear(fusion.output_dim, 2)
    params = [*fusion.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=3e-3)
    tokens, labels = scenes(2048, seed=0)
    for step in range(steps):
        rows = torch.arange(step * 128, (step + 1) * 128) % len(labels)
        loss = nn.functional.cross_entropy(head(run(fusion, tokens[rows], pool)), labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test_tokens, test_labels = scenes(1000, seed=1)
    fusion.eval()
    with torch.no_grad():
        return float((head(run(fusion, test_tokens, pool)).argmax(1) == test_labels).float().mean())


def run(fusion: nn.Module, tokens: Tensor, pool: bool) -> Tensor:
    mask = {"image": torch.ones(len(tokens), dtype=torch.bool)}
    if pool:  # an embedding fusion sees the set's mean, as a pooling encoder would give it
        return fusion({"image": masked_mean(tokens, torch.ones(tokens.shape[:2], dtype=torch.bool))}, mask)
    return fusion({"image": tokens}, mask)


def test_relation_answers_a_question_about_two_objects_that_pooling_cannot() -> None:
    dims = {"image": COLOURS + 1}
    torch.manual_seed(0)
    relation = FUSIONS.build("relation", in_dims=dims, hidden_dim=32, dropout=0.0)
    torch.manual_seed(0)
    concat = FUSIONS.build("concat", in_dims=dims)
    assert accuracy_after_training(relation, pool=False) >= 0.95
    assert accuracy_after_training(concat, pool=True) <= 0.6  # chance: 0.5


def test_conditions_are_the_modalities_that_are_not_objects() -> None:
    dims = {"question": 3, "image": 5, "audio": 2}
    fusion = FUSIONS.build("relation", in_dims=dims, objects="image,audio", hidden_dim=8)
    assert fusion.objects == ["audio", "image"] and fusion.conditions == ["question"]
    assert FUSIONS.build("relation", in_dims=dims, hidden_dim=8).conditions == []  # all are objects
    gen = torch.Generator().manual_seed(0)
    inputs = {"question": torch.randn(4, 3, generator=gen), "image": torch.randn(4, 6, 5, generator=gen)}
    inputs["audio"] = torch.randn(4, 2, 2, generator=gen)
    mask = {m: torch.ones(4, dtype=torch.bool) for m in dims}
    fusion.eval()
    with torch.no_grad():
        out = fusion(inputs, mask)
        asked_otherwise = fusion({**inputs, "question": torch.randn(4, 3, generator=gen)}, mask)
    assert not torch.allclose(out, asked_otherwise)  # the condition enters every pair
    with pytest.raises(ValueError, match="not among the modalities"):
        FUSIONS.build("relation", in_dims=dims, objects=["video"])
