"""Contract tests for every registered loss: accepts head-shaped logits, finite, differentiable."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import polyfuse.losses  # noqa: F401  (registers the losses)
from polyfuse.config import TASKS
from polyfuse.losses import default_loss
from polyfuse.registry import LOSSES

B = 6


def case(task: str, outputs: int) -> tuple[Tensor, Tensor]:
    """Logits as a head emits them and targets as a batch holds them, for one task."""
    logits = torch.randn(B, outputs, requires_grad=True)
    if task == "multiclass":
        return logits, torch.randint(0, outputs, (B,))
    if task == "binary":
        return logits, torch.randint(0, 2, (B,)).float()
    if task == "multilabel":
        return logits, torch.randint(0, 2, (B, outputs)).float()
    return logits, torch.randn(B) if outputs == 1 else torch.randn(B, outputs)


CASES = {
    "multiclass": [("multiclass", 3)],
    "binary": [("binary", 1)],
    "multilabel": [("multilabel", 4)],
    "regression": [("regression", 1), ("regression", 2)],
}
# Tasks each loss serves: the ones it is the default for, plus any listed here.
EXTRA_TASKS: dict[str, list[str]] = {}


def tasks_for(loss: str) -> list[str]:
    return [t for t in TASKS if default_loss(t) == loss] + EXTRA_TASKS.get(loss, [])


def test_every_task_has_a_registered_default() -> None:
    assert all(default_loss(task) in LOSSES for task in TASKS)
    with pytest.raises(KeyError):
        default_loss("ranking")


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_is_finite_scalar_and_differentiable(name: str) -> None:
    tasks = tasks_for(name)
    assert tasks, f"loss {name!r} serves no task: add it to EXTRA_TASKS"
    for task in tasks:
        for task_name, outputs in CASES[task]:
            logits, target = case(task_name, outputs)
            loss = LOSSES.build(name)(logits, target)
            assert loss.dim() == 0 and torch.isfinite(loss)
            loss.backward()
            assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_binary_shapes_match_elementwise() -> None:
    logits = torch.tensor([[2.0], [-1.0]])
    target = torch.tensor([1.0, 0.0])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], target)
    torch.testing.assert_close(LOSSES.build("bce")(logits, target), expected)


def test_mse_does_not_broadcast() -> None:
    logits = torch.tensor([[1.0], [3.0]])
    assert LOSSES.build("mse")(logits, torch.tensor([1.0, 3.0])).item() == 0.0


def test_label_smoothing_raises_loss_of_confident_correct_prediction() -> None:
    logits, target = torch.tensor([[10.0, -10.0]]), torch.tensor([0])
    plain = LOSSES.build("cross_entropy")(logits, target)
    smooth = LOSSES.build("cross_entropy", label_smoothing=0.1)(logits, target)
    assert smooth > plain
