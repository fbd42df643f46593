"""The balancing contract (``Balancer``), plain training (``none``) and the pooling the strategies share.

A fused model trained end to end can fit its training set through its easiest modality and stop
learning the others, and then generalise worse than that modality alone (Wang, Tran & Feiszli,
CVPR 2020, "What Makes Training Multi-modal Classification Networks Hard?"; Peng et al., CVPR 2022,
"Balanced Multimodal Learning via On-the-fly Gradient Modulation"). ``TrainConfig.balance`` names a
strategy in ``BALANCERS``: a factory ``(model, heads, losses) -> Balancer | None`` (None: nothing to
do). Its parameters train with the model and are not saved with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from polyfuse.config import HeadConfig
from polyfuse.data.batch import Batch, EncodedTable
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.registry import BALANCERS


class Balancer(nn.Module):
    """The contract: each training step's loss is ``fused_weight`` x the fused loss + ``loss(...)``.

    ``loss(inputs, valid, mask, targets)`` sees the step's fusion inputs (modality -> [B, D_m]
    embeddings, or [B, T_m, D_m] tokens with ``valid`` [B, T_m] for a token-level fusion; ``mask``
    says which rows hold each modality) and returns a scalar. The optional hooks, no-ops here:

    * ``after_backward(model, epoch)``: after each step's backward pass, before clipping and the
      optimizer step (gradient modulation);
    * ``epoch_end(model, epoch)``: after each epoch's validation pass; what it returns is logged
      (name -> value) in the epoch's row of the history and ``metrics.csv``;
    * ``holdout`` > 0: that share of the training rows is held out (``held_out_split``) and handed
      to ``use_rows(train_sample, held_out)`` before training; the model does not train on it.
      ``release()`` drops those rows after training.

    * ``see_batch(batch)``: called with each training step's batch (after augmentation and modality
      dropout) before ``loss`` (a strategy that runs models of its own on the inputs);
    * ``wants_teachers``: the strategy needs one trained single-modality model per modality, handed to
      ``use_teachers(model, teachers, train)`` with the training table before training (``fit`` passes
      its baselines; otherwise ``train_model`` trains them first). Its factory is marked ``@taught``.

    ``label_weights``: with several labels and a ``TrainConfig.loss_weighting`` that weighs their
    losses, the task sets it before each ``loss`` call (label -> weight, mean 1); a strategy with
    per-label losses of its own (unimodal heads) weighs them with it. None: weight 1 each.
    """

    holdout: float = 0.0  # share of the training rows the strategy needs held out of training
    wants_teachers: bool = False  # needs trained single-modality models (use_teachers)
    label_weights: dict[str, float] | None = None

    @property
    def fused_weight(self) -> float:
        """The weight of the fused model's loss in the step's loss."""
        return 1.0

    def loss(
        self,
        inputs: dict[str, Tensor],
        valid: dict[str, Tensor] | None,
        mask: dict[str, Tensor],
        targets: dict[str, Tensor],
    ) -> Tensor:
        raise NotImplementedError

    def after_backward(self, model: MultimodalModel, epoch: int) -> None:
        """Called with the step's gradients in place (``epoch`` counts from 0)."""

    def epoch_end(self, model: MultimodalModel, epoch: int) -> dict[str, float]:
        """Called after each epoch's validation pass; returns values to log (none here)."""
        return {}

    def use_rows(self, train_sample: EncodedTable, held_out: EncodedTable) -> None:
        """Receives the held-out rows and as many training rows (only when ``holdout`` > 0)."""

    def see_batch(self, batch: Batch) -> None:
        """Receives each training step's batch before ``loss``."""

    def use_teachers(
        self, model: MultimodalModel, teachers: dict[str, MultimodalModel], train: EncodedTable
    ) -> None:
        """Receives one trained single-modality model per modality (only when ``wants_teachers``)."""

    def release(self) -> None:
        """Drops whatever ``use_rows`` and ``use_teachers`` gave, after training."""


@BALANCERS.register("none")
def no_balancing(model: MultimodalModel, heads: list[HeadConfig], losses: Any) -> Balancer | None:
    """Plain end-to-end training of the fused loss (the default)."""
    return None


Factory = Callable[[MultimodalModel, list[HeadConfig], Any], Balancer | None]


def taught(factory: Factory) -> Factory:
    """Marks a strategy's factory as one whose balancer ``wants_teachers`` (see ``needs_teachers``)."""
    factory.wants_teachers = True  # type: ignore[attr-defined]
    return factory


def needs_teachers(name: str) -> bool:
    """Whether strategy ``name`` trains from single-modality teachers (so ``fit`` trains its
    baselines before the fused model and hands them over)."""
    return bool(getattr(BALANCERS.get(name), "wants_teachers", False))


def pooled(features: Tensor, valid: Tensor | None) -> Tensor:
    """[B, D] as it is; [B, T, D] tokens -> the mean of the valid ones (all of them without ``valid``)."""
    if features.dim() == 2:
        return features
    weights = torch.ones(features.shape[:2], device=features.device) if valid is None else valid.float()
    total = (features * weights.unsqueeze(-1)).sum(1)  # [B, D]
    return total / weights.sum(1, keepdim=True).clamp(min=1.0)


def held_out_split(rows: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(kept, held_out) row indices of a table of ``rows`` rows: a seeded random ``fraction`` of them
    (at least one, and never all) held out, sorted; the rest kept, in a seeded random order (so that
    its first rows are a random sample of the training rows)."""
    held = min(max(1, round(rows * fraction)), rows - 1)
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(seed)).tolist()
    return order[held:], sorted(order[:held])
