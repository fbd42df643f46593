"""Contract tests for every registered head: logits shapes and what ``predict`` returns."""

from __future__ import annotations

import pytest
import torch

import polyfuse.heads  # noqa: F401  (registers the heads)
from polyfuse.config import TASKS
from polyfuse.registry import HEADS

B, IN_DIM = 5, 12


def num_outputs(task: str) -> int:
    return 1 if task in ("binary", "regression") else 3


def test_every_task_has_a_head() -> None:
    assert sorted(TASKS) == HEADS.names()


@pytest.mark.parametrize("hidden_dim", [0, 16])
@pytest.mark.parametrize("task", HEADS.names())
def test_logits_and_backward(task: str, hidden_dim: int) -> None:
    head = HEADS.build(task, in_dim=IN_DIM, num_outputs=num_outputs(task), hidden_dim=hidden_dim, dropout=0.1)
    assert head.task == task and head.num_outputs == num_outputs(task)
    logits = head(torch.randn(B, IN_DIM))
    assert logits.shape == (B, num_outputs(task))
    logits.sum().backward()
    assert all(p.grad is not None for p in head.parameters())


@pytest.mark.parametrize("task", HEADS.names())
def test_predict(task: str) -> None:
    head = HEADS.build(task, in_dim=IN_DIM, num_outputs=num_outputs(task)).eval()
    logits = head(torch.randn(B, IN_DIM)) * 10
    pred = head.predict(logits)
    assert torch.isfinite(pred).all()
    if task == "multiclass":
        assert pred.shape == (B, 3) and (pred >= 0).all()
        torch.testing.assert_close(pred.sum(dim=1), torch.ones(B))
    elif task == "binary":
        assert pred.shape == (B,) and ((pred >= 0) & (pred <= 1)).all()
    elif task == "multilabel":
        assert pred.shape == (B, 3) and ((pred >= 0) & (pred <= 1)).all()
    elif task == "regression":
        assert pred.shape == (B,)
        torch.testing.assert_close(pred, logits[:, 0])


def test_regression_with_several_targets_keeps_columns() -> None:
    head = HEADS.build("regression", in_dim=IN_DIM, num_outputs=2)
    assert head.predict(head(torch.randn(B, IN_DIM))).shape == (B, 2)


def test_binary_rejects_two_outputs() -> None:
    with pytest.raises(ValueError, match="one output"):
        HEADS.build("binary", in_dim=IN_DIM, num_outputs=2)


def test_leaky_relu_head_uses_the_given_slope() -> None:
    head = HEADS.build(
        "multiclass", in_dim=4, num_outputs=3, hidden_dim=5, dropout=0.0, activation="leaky_relu"
    )
    acts = [m for m in head.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert len(acts) == 1 and acts[0].negative_slope == 0.2
    with pytest.raises(ValueError, match="swish"):
        HEADS.build("multiclass", in_dim=4, num_outputs=3, hidden_dim=5, activation="swish")


@pytest.mark.parametrize("task", TASKS)
def test_every_head_takes_the_same_options(task: str) -> None:
    outputs = 1 if task in ("binary", "regression") else 3
    head = HEADS.build(
        task, in_dim=4, num_outputs=outputs, hidden_dim=5, dropout=0.0, activation="leaky_relu"
    )
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in head.modules())
