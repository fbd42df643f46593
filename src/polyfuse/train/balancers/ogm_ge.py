"""On-the-fly gradient modulation with generalisation enhancement (``ogm_ge``).

Peng, Wei, Deng, Wang & Hu, CVPR 2022, "Balanced Multimodal Learning via On-the-fly Gradient
Modulation". After each backward pass, the encoder of a modality that currently dominates has its
gradient scaled down by a coefficient ``k`` < 1, so the other encoders catch up; Gaussian noise as
large as the gradient's own spread then restores the gradient's strength and helps generalisation
(GE). The paper's code handles two modalities through a concat fusion's halves; this version works
for M modalities and any fusion, as follows.

Score of modality m on a step's batch, ``s_m``: the fused model's probability of the true class
when only m is present (the fusion run again on the same fusion inputs with every other modality
masked; no second encoder pass), averaged over the batch's rows that hold m and over the model's
labels. A binary or multilabel label counts the probability given to the true value of each of its
outputs. Regression labels have no such probability and are left out; a model with regression
labels only is not modulated (the factory returns None). That extra pass runs without gradient and
in eval mode, so it changes no running statistics.

Dominance: ``ratio_m = s_m / mean(s_j for the other modalities j)`` (for two modalities this is the
paper's ``s_a / s_v``); ``k_m = 1 - tanh(ALPHA * relu(ratio_m - 1))``, so only modalities that score
above the others' mean are slowed down, and ``k`` is continuous at ratio 1 (the paper's code uses
``1 - tanh(alpha * ratio)`` whenever ratio > 1, which jumps at 1). A modality absent from every row
of the batch keeps ``k = 1`` and is left out of the others' means.

Modulation, as in the paper's code, touches the encoders' weight tensors of two or more dimensions
(the code: convolution kernels), for epochs 0 to ``MODULATION_ENDS`` inclusive: ``g <- k_m g +
N(0, std(g))``, the noise drawn for every modality's encoder (also at ``k = 1``). The mean ``k`` of
each modality over an epoch's steps is logged as ``ogm_coeff_<modality>``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from polyfuse.config import HeadConfig
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.registry import BALANCERS
from polyfuse.train.balancers.base import Balancer

# The paper's repository recommends alpha 0.8 for CREMA-D, its dataset with the strongest imbalance
# (0.1 for VGGSound); modulation runs from epoch 0 to epoch 50 by default there (of 100 epochs).
ALPHA = 0.8
MODULATION_ENDS = 50
PROBABILITY_TASKS = ("multiclass", "binary", "multilabel")

Step = tuple[dict[str, Tensor], dict[str, Tensor] | None, dict[str, Tensor], dict[str, Tensor]]


def modulation_coefficients(scores: dict[str, Tensor], alpha: float = ALPHA) -> dict[str, Tensor]:
    """``k_m = 1 - tanh(alpha * relu(s_m / mean of the other scores - 1))`` per modality; all 1 when
    fewer than two modalities have a score."""
    if len(scores) < 2:
        return {name: torch.ones(()) for name in scores}
    total = torch.stack(list(scores.values())).sum()
    coeffs = {}
    for name, score in scores.items():
        others = (total - score) / (len(scores) - 1)
        ratio = score / others.clamp(min=1e-8)
        coeffs[name] = 1 - torch.tanh(alpha * torch.relu(ratio - 1))
    return coeffs


def true_class_probability(task: str, logits: Tensor, target: Tensor) -> Tensor:
    """[R] probability the head gives the true value: the true class (multiclass), or the true 0/1 of
    each output, averaged over outputs (binary, multilabel)."""
    if task == "multiclass":
        return torch.softmax(logits, -1).gather(1, target.long().reshape(-1, 1)).squeeze(1)
    p = torch.sigmoid(logits).reshape(len(logits), -1)  # [R, K]
    y = target.to(p.dtype).reshape(len(logits), -1)
    return (y * p + (1 - y) * (1 - p)).mean(1)


@torch.no_grad()
def modality_scores(model: MultimodalModel, step: Step) -> dict[str, Tensor]:
    """``s_m`` per modality present in the batch: the mean true-class probability of the fused model
    with only m present, over the rows holding m and the probability labels."""
    inputs, valid, mask, targets = step
    tasks = {label: str(head.task) for label, head in model.heads.items()}
    labels = [label for label, task in tasks.items() if task in PROBABILITY_TASKS]
    scores = {}
    for name in model.encoders:
        rows = mask[name]
        if not bool(rows.any()):
            continue
        alone = {other: rows[rows] if other == name else ~rows[rows] for other in mask}  # all True / False
        sliced = {other: x[rows] for other, x in inputs.items()}  # [R, ...]
        kept = None if valid is None else {other: v[rows] for other, v in valid.items()}
        logits = model.classify(model.fuse_inputs(sliced, kept, alone))
        probs = [true_class_probability(tasks[k], logits[k], targets[k][rows]) for k in labels]
        scores[name] = torch.stack(probs).mean()
    return scores


def modulate(parameters: Any, coeff: Tensor) -> None:
    """``g <- coeff g + N(0, std(g))`` on each parameter of two or more dimensions with a gradient."""
    for param in parameters:
        if param.grad is None or param.dim() < 2:
            continue
        spread = param.grad.std() if param.grad.numel() > 1 else param.grad.new_zeros(())
        noise = torch.randn_like(param.grad) * spread
        param.grad = param.grad * coeff.to(param.grad) + noise


class GradientModulation(Balancer):
    """OGM-GE for M modalities and any fusion (see the module's docstring); adds no loss."""

    def __init__(self, alpha: float = ALPHA, ends: int = MODULATION_ENDS) -> None:
        super().__init__()
        self.alpha, self.ends = alpha, ends
        self._step: Step | None = None  # the batch whose gradients the next backward leaves
        self._coeff_sums: dict[str, Tensor] = {}  # modality -> summed k over the epoch's steps
        self._steps = 0

    def loss(
        self,
        inputs: dict[str, Tensor],
        valid: dict[str, Tensor] | None,
        mask: dict[str, Tensor],
        targets: dict[str, Tensor],
    ) -> Tensor:
        """Remembers the step's fusion inputs for ``after_backward``; adds nothing to the loss."""
        self._step = ({k: v.detach() for k, v in inputs.items()}, valid, mask, targets)
        return next(iter(inputs.values())).new_zeros(())

    def after_backward(self, model: MultimodalModel, epoch: int) -> None:
        step, self._step = self._step, None
        if step is None or epoch > self.ends:
            return
        training = model.training
        model.eval()
        try:
            coeffs = modulation_coefficients(modality_scores(model, step), self.alpha)
        finally:
            model.train(training)
        for name, encoder in model.encoders.items():
            coeff = coeffs.get(name, torch.ones(()))
            modulate(encoder.parameters(), coeff)
            self._coeff_sums[name] = self._coeff_sums.get(name, torch.zeros(())) + coeff.detach()
        self._steps += 1

    def epoch_end(self, model: MultimodalModel, epoch: int) -> dict[str, float]:
        """The epoch's mean ``k`` per modality as ``ogm_coeff_<modality>`` (nothing once modulation ended)."""
        means = {f"ogm_coeff_{name}": float(total) / self._steps for name, total in self._coeff_sums.items()}
        self._coeff_sums, self._steps = {}, 0
        return means


@BALANCERS.register("ogm_ge")
def gradient_modulation(model: MultimodalModel, heads: list[HeadConfig], losses: Any) -> Balancer | None:
    """OGM-GE (``GradientModulation``); nothing to balance for one modality or without a probability label."""
    if len(model.encoders) < 2 or not any(h.task in PROBABILITY_TASKS for h in heads):
        return None
    return GradientModulation()
