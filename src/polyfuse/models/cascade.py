"""Dynamic modality selection at inference: a confidence cascade over the modalities.

A row's modalities are encoded one at a time, cheapest first; after each stage the model predicts
from the modalities encoded so far (the others masked as absent, the case every fusion is trained
and tested for) and the row stops there when the prediction is confident enough. Only the rows
still running pay for the next, dearer encoder. This is the early-exit idea of cascades of
classifiers (Viola & Jones, CVPR 2001, "Rapid Object Detection using a Boosted Cascade of Simple
Features") applied to modalities, as in adaptive multimodal inference (Panda et al., ICCV 2021,
"AdaMML: Adaptive Multi-Modal Learning for Efficient Video Recognition", which learns the choice
instead; a threshold on confidence needs no training and is chosen on validation rows).

Confidence of a row: the probability of the predicted class (binary: max(p, 1 - p)); multilabel:
the least confident class; several labels: the least confident label. A regression label has no
confidence, so a model with one never stops early (every modality runs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polyfuse.data.batch import Batch, EncodedTable, gather
from polyfuse.errors import PolyfuseError
from polyfuse.models.build import fusion_input_dim
from polyfuse.models.multimodal import MultimodalModel, has_tokens

NEVER = 1.01  # a threshold no confidence reaches: every row runs every modality


@dataclass
class CascadeResult:
    """What a cascade pass gives: every label's outputs and how far each row went."""

    outputs: dict[str, Tensor]  # label -> probabilities [N, K] / [N] or values [N]
    stages: Tensor  # int [N]: how many modalities of the order were run for the row (1..M)


def confidence(outputs: dict[str, Tensor], tasks: dict[str, str]) -> Tensor:
    """Per row [B]: the least confident label's confidence (see the module docstring)."""
    per_label = []
    for label, out in outputs.items():
        task = tasks[label]
        if task == "multiclass":
            per_label.append(out.max(dim=1).values)
        elif task == "binary":
            per_label.append(torch.maximum(out, 1 - out).reshape(-1))
        elif task == "multilabel":
            per_label.append(torch.maximum(out, 1 - out).min(dim=1).values)
        else:  # regression: never confident
            per_label.append(torch.full((len(out),), float("-inf")))
    return torch.stack(per_label).min(dim=0).values


def head_tasks(model: MultimodalModel) -> dict[str, str]:
    """Label -> task, as each head says (``task`` attribute of heads and ensemble readouts)."""
    return {label: str(getattr(head, "task", "regression")) for label, head in model.heads.items()}


@torch.no_grad()
def cascade_predict(
    model: MultimodalModel, table: EncodedTable, order: list[str], threshold: float, batch_size: int = 256
) -> CascadeResult:
    """Every row's outputs from the cascade over ``order`` that stops at ``threshold`` confidence.

    ``order`` lists every modality of the model once (cheapest first). A threshold of 0 stops every
    row after the first modality; ``NEVER`` runs every modality, giving the model's usual outputs.
    """
    if sorted(order) != sorted(model.modalities):
        raise PolyfuseError(
            f"a cascade order must list the model's modalities {model.modalities}, got {order}"
        )
    if len(table) == 0:
        raise PolyfuseError("no rows left to predict on")
    model.eval()
    tasks = head_tasks(model)
    blanks = _blank_inputs(model)
    parts = [
        _cascade_batch(model, batch, order, threshold, tasks, blanks) for batch in table.batches(batch_size)
    ]
    outputs = {label: torch.cat([p.outputs[label] for p in parts]).float() for label in parts[0].outputs}
    return CascadeResult(outputs, torch.cat([p.stages for p in parts]))


def _cascade_batch(
    model: MultimodalModel,
    batch: Batch,
    order: list[str],
    threshold: float,
    tasks: dict[str, str],
    blanks: dict[str, tuple[Tensor, Tensor | None]],
) -> CascadeResult:
    """One batch through the cascade: each stage encodes one more modality for the rows still running."""
    n = len(batch)
    active = torch.arange(n)  # rows still running, as indices into the batch
    inputs = {m: blank[0].expand(n, *blank[0].shape[1:]).clone() for m, blank in blanks.items()}
    valid = {
        m: blank[1].expand(n, *blank[1].shape[1:]).clone()
        for m, blank in blanks.items()
        if blank[1] is not None
    }
    results: dict[str, Tensor] = {}
    stages = torch.zeros(n, dtype=torch.long)
    for k, modality in enumerate(order):
        _encode_rows(model, batch, modality, active, inputs, valid)
        shown = set(order[: k + 1])
        mask = {m: batch.mask[m][active].bool() & (m in shown) for m in model.modalities}
        rows_valid = {m: v[active] for m, v in valid.items()} if model.wants_tokens else None
        fused = model.fuse_inputs({m: x[active] for m, x in inputs.items()}, rows_valid, mask)
        out = model.readable(model.classify(fused))
        last = k == len(order) - 1
        done = torch.ones(len(active), dtype=torch.bool) if last else confidence(out, tasks) >= threshold
        for label, value in out.items():
            if label not in results:
                results[label] = torch.zeros((n, *value.shape[1:]), dtype=value.dtype)
            results[label][active[done]] = value[done]
        stages[active[done]] = k + 1
        active = active[~done]
        if len(active) == 0:
            break
    return CascadeResult(results, stages)


def _encode_rows(
    model: MultimodalModel,
    batch: Batch,
    modality: str,
    active: Tensor,
    inputs: dict[str, Tensor],
    valid: dict[str, Tensor],
) -> None:
    """Write ``modality``'s fusion input for the running rows that hold it into ``inputs``/``valid``."""
    rows = active[batch.mask[modality][active].bool()]
    if len(rows) == 0:
        return
    encoder = model.encoders[modality]
    x = gather(batch.inputs[modality], rows)
    if model.wants_tokens and has_tokens(encoder):
        tokens, ok = encoder.forward_tokens(x)  # type: ignore[operator]  # [r, T, D], [r, T]
        inputs[modality], valid[modality] = _fit_tokens(inputs[modality], valid[modality], rows, tokens, ok)
    else:
        inputs[modality][rows] = encoder(x).to(inputs[modality].dtype)  # [r, D]


def _fit_tokens(
    tokens: Tensor, valid: Tensor, rows: Tensor, new: Tensor, new_valid: Tensor
) -> tuple[Tensor, Tensor]:
    """Place ``new`` tokens [r, T', D] at ``rows`` of ``tokens`` [n, T, D], widening T as needed."""
    length = max(tokens.shape[1], new.shape[1])
    tokens = torch.nn.functional.pad(tokens, (0, 0, 0, length - tokens.shape[1]))
    valid = torch.nn.functional.pad(valid, (0, length - valid.shape[1]), value=False)
    tokens[rows] = torch.nn.functional.pad(new, (0, 0, 0, length - new.shape[1])).to(tokens.dtype)
    valid[rows] = torch.nn.functional.pad(new_valid, (0, length - new_valid.shape[1]), value=False)
    return tokens, valid


def _blank_inputs(model: MultimodalModel) -> dict[str, tuple[Tensor, Tensor | None]]:
    """Modality -> a zero fusion input for one row (tokens: one invalid token), standing in for rows
    not yet encoded; the fusion masks them as absent."""
    blanks: dict[str, tuple[Tensor, Tensor | None]] = {}
    for m, encoder in model.encoders.items():
        width = fusion_input_dim(encoder, model.wants_tokens)
        if model.wants_tokens and has_tokens(encoder):
            blanks[m] = (torch.zeros(1, 1, width), torch.zeros(1, 1, dtype=torch.bool))
        else:
            blanks[m] = (torch.zeros(1, width), None)
    return blanks
