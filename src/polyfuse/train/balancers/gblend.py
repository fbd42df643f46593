"""Gradient-Blending (``gblend``): one head per modality and the fused head, weighted by how well each
generalises.

Wang, Tran & Feiszli, CVPR 2020, "What Makes Training Multi-modal Classification Networks Hard?".
Besides the fused head, each modality's (pooled) fusion inputs predict every label through a linear
head of their own (``aux.AuxiliaryHeads``); the step's loss is ``sum_k w_k L_k`` over the M + 1
heads, each head's loss summed over labels (a unimodal one on the rows that hold its modality), the
weights summing to 1. They start equal. Online G-Blend (the paper's Algorithm 2) then re-estimates
them every ``WINDOW`` epochs from the last window: for head k,

* ``G_k`` (generalisation): the decrease of its held-out loss over the window;
* ``O_k`` (overfitting): the change of (held-out loss - training loss) over the window;
* ``w_k = max(G_k, 0) / O_k^2``, normalised to sum 1 (the paper's optimal blend, ``w_k ∝ G_k /
  sigma_k^2`` with ``sigma_k^2`` estimated by ``O_k^2``); a head whose held-out loss rose gets 0,
  and when every head's rose the weights stay as they were.

The held-out loss is measured on ``HOLDOUT`` of the training rows, chosen at random with the run's
seed and not trained on while this strategy is used (``Balancer.holdout``; the validation split,
which early stopping reads, is never used); the training loss on as many training rows. Both are
measured after each epoch's validation pass, in eval mode. The weights are logged every epoch as
``blend_<modality>`` and ``blend_fused``. The unimodal heads are dropped after training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor

from polyfuse.config import HeadConfig
from polyfuse.data.batch import Batch, EncodedTable
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.registry import BALANCERS
from polyfuse.train.balancers.aux import AuxiliaryHeads, feature_dims
from polyfuse.train.balancers.base import Balancer

HOLDOUT = 0.1  # share of the training rows held out to estimate the weights on
WINDOW = 2  # epochs between estimates (the paper's super-epoch)
FUSED = "fused"  # the fused head's key among the modalities' in the weights
EVAL_ROWS = 512  # rows per batch when measuring the losses
EPS = 1e-8  # floor of O_k^2


@dataclass(frozen=True)
class HeadLosses:
    train: float  # mean loss on the training sample
    held_out: float  # mean loss on the held-out rows


def blend_weights(before: dict[str, HeadLosses], after: dict[str, HeadLosses]) -> dict[str, float] | None:
    """Head -> ``w_k ∝ max(G_k, 0) / O_k^2`` over a window from ``before`` to ``after``, summing to 1
    (None if no head's held-out loss decreased)."""
    raw = {}
    for head in [head for head in after if head in before]:  # heads measured at both ends
        start, end = before[head], after[head]
        gain = start.held_out - end.held_out  # G_k
        overfit = (end.held_out - end.train) - (start.held_out - start.train)  # O_k
        raw[head] = max(gain, 0.0) / max(overfit**2, EPS)
    total = sum(raw.values())
    return None if total <= 0 else {head: value / total for head, value in raw.items()}


class GradientBlending(Balancer):
    """G-Blend's weighted sum of the unimodal and fused losses (see the module's docstring)."""

    holdout = HOLDOUT

    def __init__(self, dims: dict[str, int], heads: list[HeadConfig], losses: Any) -> None:
        super().__init__()
        self.unimodal = AuxiliaryHeads(dims, heads, losses)
        self.label_losses = dict(losses)  # shared with the task, not registered twice
        names = [*dims, FUSED]
        self.weights = {name: 1 / len(names) for name in names}
        self.history: list[dict[str, HeadLosses]] = []  # per epoch: head -> its losses
        self.rows: tuple[EncodedTable, EncodedTable] | None = None  # use_rows: (training sample, held out)

    @property
    def fused_weight(self) -> float:
        return self.weights[FUSED]

    def loss(
        self,
        inputs: dict[str, Tensor],
        valid: dict[str, Tensor] | None,
        mask: dict[str, Tensor],
        targets: dict[str, Tensor],
    ) -> Tensor:
        """The unimodal heads' part of the blend: ``sum_m w_m L_m`` (the task weighs the fused loss); with a
        loss weighting, ``L_m`` sums the labels' losses times their ``label_weights``."""
        per_modality = self.unimodal.modality_losses(inputs, valid, mask, targets, self.label_weights)
        total = next(iter(inputs.values())).new_zeros(())
        for name, per_label in per_modality.items():
            total = total + self.weights[name] * torch.stack(per_label).sum()
        return total

    def use_rows(self, train_sample: EncodedTable, held_out: EncodedTable) -> None:
        self.rows = (train_sample, held_out)

    def release(self) -> None:
        self.rows = None

    def epoch_end(self, model: MultimodalModel, epoch: int) -> dict[str, float]:
        """Measures the heads' losses, re-estimates the weights at the end of each window, logs them."""
        if self.rows is not None:
            train, held_out = (self.head_losses(model, table) for table in self.rows)
            self.history.append({k: HeadLosses(train[k], held_out[k]) for k in held_out if k in train})
            if len(self.history) > WINDOW and (len(self.history) - 1) % WINDOW == 0:  # a window ends
                new = blend_weights(self.history[-1 - WINDOW], self.history[-1])
                if new is not None:  # a head without rows to measure on gets 0
                    self.weights = {name: new.get(name, 0.0) for name in self.weights}
        return {f"blend_{name}": weight for name, weight in self.weights.items()}

    @torch.no_grad()
    def head_losses(self, model: MultimodalModel, table: EncodedTable) -> dict[str, float]:
        """Head -> its mean loss (summed over labels) on ``table``'s rows (a unimodal head's: on the rows
        holding its modality), in eval mode."""
        device = next(model.parameters()).device
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        modes = model.training, self.training
        model.eval()
        self.eval()
        try:
            for batch in table.batches(EVAL_ROWS):
                for name, (loss, rows) in self._batch_losses(
                    model, move_data_to_device(batch, device)
                ).items():
                    sums[name] = sums.get(name, 0.0) + loss * rows
                    counts[name] = counts.get(name, 0) + rows
        finally:
            model.train(modes[0])
            self.train(modes[1])
        return {name: sums[name] / counts[name] for name in sums}

    def _batch_losses(self, model: MultimodalModel, batch: Batch) -> dict[str, tuple[float, int]]:
        """Head -> (its mean loss summed over labels, the rows it was taken on) for one batch."""
        inputs, valid = model.fusion_inputs(batch)
        logits = model.classify(model.fuse_inputs(inputs, valid, batch.mask))
        fused = sum(float(self.label_losses[k](logits[k], batch.targets[k])) for k in logits)
        out = {FUSED: (fused, len(batch))}
        for name, per_label in self.unimodal.modality_losses(
            inputs, valid, batch.mask, batch.targets
        ).items():
            out[name] = (sum(float(t) for t in per_label), int(batch.mask[name].sum()))
        return out


@BALANCERS.register("gblend")
def gradient_blending(model: MultimodalModel, heads: list[HeadConfig], losses: Any) -> Balancer | None:
    """Gradient-Blending (``GradientBlending``); nothing to balance for one modality."""
    if len(model.encoders) < 2:
        return None
    if FUSED in model.encoders:
        raise ValueError(f"gblend names the fused head {FUSED!r}: a modality may not take that name")
    return GradientBlending(feature_dims(model), heads, losses)
