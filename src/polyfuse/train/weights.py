"""Fit a late fusion's modality weights on held-out data after training.

A decision-level fusion trained on data where one modality is nearly perfect learns to trust it:
on AV-MNIST with speakers held out, the audio expert fits the training speakers almost exactly and
its confident logits drown the image expert's on a new speaker. The remedy of ensembling (e.g.
AutoGluon's weighted ensemble, Caruana et al., 2004, "Ensemble Selection from Libraries of
Models") is to choose the members' weights on held-out data: here the experts, encoders and heads
stay as trained, and only the M per-modality weights of ``LateFusion`` (``softmax(logits)``,
renormalised over each row's present modalities) are fit by minimising the training loss on the
validation split with L-BFGS. M - 1 free parameters leave little room to overfit thousands of rows.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyfuse.data.batch import EncodedTable
from polyfuse.eval.probe import fusion_features
from polyfuse.fusions.late import LateFusion
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.train.module import summed_loss

FITTABLE = ("mean", "learned")  # LateFusion combines whose weights fit_modality_weights sets


def can_fit_weights(model: MultimodalModel) -> bool:
    """Whether ``model``'s fusion has per-modality weights to fit (late fusion, mean or learned)."""
    return isinstance(model.fusion, LateFusion) and model.fusion.combine in FITTABLE


def fit_modality_weights(
    model: MultimodalModel,
    table: EncodedTable,
    losses: dict[str, nn.Module],
    batch_size: int = 512,
    max_iter: int = 100,
) -> dict[str, float]:
    """Set the late fusion's modality weights to minimise the summed head losses on ``table``.

    Args:
        model: A trained model whose fusion is ``LateFusion`` with combine ``mean`` or ``learned``.
        table: Held-out rows (the validation split), with targets for the heads in ``losses``.
        losses: Label -> loss module, as in training.
        batch_size: Rows per forward pass when computing the experts' outputs.
        max_iter: L-BFGS iterations.

    Returns:
        Modality -> weight (summing to 1) for rows where every modality is present.
    """
    if not can_fit_weights(model):
        raise ValueError(f"fit_modality_weights needs a late fusion with combine in {FITTABLE}")
    fusion: LateFusion = model.fusion  # type: ignore[assignment]
    was_training = model.training
    features = fusion_features(model, table, batch_size)  # what the fusion receives (puts model in eval)
    embeddings = {m: f.values for m, f in features.items()}
    with torch.no_grad():
        outs, here = fusion.expert_outputs(embeddings, {m: table.mask[m] for m in model.encoders})
    targets = {label: table.targets[label] for label in losses}
    logits = fusion.logits.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([logits], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        fused = fusion.mix(outs, here, logits)[0]
        loss = summed_loss(losses, {k: model.heads[k](fused) for k in losses}, targets)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    model.zero_grad(set_to_none=True)  # the heads took gradients too; only the weights change
    with torch.no_grad():
        fusion.logits.copy_(logits - logits.max())
    model.train(was_training)
    weights = torch.softmax(fusion.logits.detach(), dim=0)
    return {name: round(float(w), 4) for name, w in zip(fusion.names, weights, strict=True)}
