"""A weighted ensemble of trained models, built as one ``MultimodalModel``.

``fit`` trains a fused network and one single-modality model per modality; a greedy ensemble chosen
on validation (Caruana, Niculescu-Mizil, Crew & Ksikes, ICML 2004, "Ensemble Selection from
Libraries of Models"; ``polyfuse.eval.selection``) averages their outputs. Built as a
``MultimodalModel`` of its own, the ensemble predicts, explains, serves and exports like any other:

- ``encoders``: per modality, a ``StackedEncoder`` of the members' encoders of that modality, their
  embeddings side by side. A frozen encoder that several members share by config (a pretrained
  MiniLM, say) is kept and run once.
- ``fusion``: an ``EnsembleFusion`` holding each member's fusion and heads. Each member reads its
  slice of the stacked embeddings; a member counts in a row only when one of its modalities is
  present there, so masking a modality (explain's Shapley values, a missing input) drops the
  members that depend on it and reweighs the rest.
- ``heads``: parameter-free ``Readout`` heads. The fusion returns, per label, values whose head
  ``predict`` gives the weighted mean of the members' predictions: log-probabilities (multiclass),
  log-odds (binary, multilabel) or values (regression).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from polyfuse.config import EncoderConfig, FusionConfig, HeadConfig, MemberConfig, ModelConfig
from polyfuse.models.multimodal import MultimodalModel

EPS = 1e-7  # probabilities are kept in [EPS, 1 - EPS] before their logarithm


class StackedEncoder(nn.Module):
    """Several encoders of one modality on the same input: embeddings [B, sum of D_u], side by side."""

    def __init__(self, units: list[nn.Module]):
        super().__init__()
        self.units = nn.ModuleList(units)
        self.output_dim = sum(int(u.output_dim) for u in units)  # type: ignore[arg-type,misc]

    def forward(self, x: object) -> Tensor:
        return torch.cat([u(x) for u in self.units], dim=-1)  # [B, sum D_u]


def encoder_units(encoder: nn.Module) -> list[nn.Module]:
    """The encoders that read one input: a ``StackedEncoder``'s units, or the encoder itself (for
    code that reaches inside an encoder, such as explain's token attributions)."""
    return list(encoder.units) if isinstance(encoder, StackedEncoder) else [encoder]


class Readout(nn.Module):
    """An ensemble's head for one label: its slice [start, start + num_outputs) of the fusion's output,
    read (``predict``) the way the task's own head reads logits."""

    def __init__(self, task: str, num_outputs: int, start: int):
        from polyfuse.registry import HEADS

        super().__init__()
        self.task, self.num_outputs, self.start = task, num_outputs, start
        self._read = HEADS.get(task).predict  # the task head's reading, looked up once

    def forward(self, x: Tensor) -> Tensor:
        return x[:, self.start : self.start + self.num_outputs]  # [B, num_outputs]

    def predict(self, logits: Tensor) -> Tensor:
        return self._read(self, logits)  # type: ignore[no-any-return]


def as_logits(task: str, mean: Tensor) -> Tensor:
    """Averaged predictions (a head's ``predict`` output) -> values whose ``predict`` gives them back."""
    if task == "multiclass":
        return torch.log(mean.clamp(min=EPS))  # softmax(log p) = p, as p sums to 1  # [B, K]
    if task in ("binary", "multilabel"):
        p = mean.clamp(EPS, 1 - EPS)
        return _columns(torch.log(p) - torch.log1p(-p))  # log-odds [B, K]
    return _columns(mean)  # regression values [B, K]


def _columns(x: Tensor) -> Tensor:
    """[B] -> [B, 1]; [B, K] as it is (no ``len``: a traced export must keep the batch size free)."""
    return x.unsqueeze(1) if x.dim() == 1 else x


@dataclass
class Slot:
    """Where one member reads one modality: columns [start, stop) of the stacked embedding."""

    start: int
    stop: int


class EnsembleFusion(nn.Module):
    """The members' fusions and heads; output: per label, the weighted mean of their predictions
    as ``as_logits`` values, concatenated [B, sum of num_outputs]."""

    def __init__(
        self,
        fusions: list[nn.Module],
        heads: list[nn.ModuleDict],
        weights: list[float],
        slots: list[dict[str, Slot]],
        labels: list[HeadConfig],
    ):
        super().__init__()
        self.fusions = nn.ModuleList(fusions)
        self.member_heads = nn.ModuleList(heads)
        self.weights, self.slots, self.labels = list(weights), slots, labels
        self.output_dim = sum(h.num_outputs for h in labels)

    def forward(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        first = next(iter(embeddings.values()))
        total: dict[str, Tensor] = {}
        norm = torch.zeros_like(first[:, 0])  # [B] sum of the weights of members that count in a row
        for fusion, heads, weight, slots in zip(
            self.fusions, self.member_heads, self.weights, self.slots, strict=True
        ):
            inputs = {m: embeddings[m][:, s.start : s.stop] for m, s in slots.items()}  # [B, D_m] each
            here = {m: mask[m] for m in slots}
            fused = fusion(inputs, here)
            counts = weight * torch.stack(list(here.values()), dim=1).any(dim=1).to(first.dtype)  # [B]
            norm = norm + counts
            for label, head in cast(nn.ModuleDict, heads).items():
                p = head.predict(head(fused))  # type: ignore[operator]  # [B] or [B, K]
                w = counts if p.dim() == 1 else counts.unsqueeze(1)
                total[label] = total[label] + w * p if label in total else w * p
        out = []
        for spec in self.labels:
            scale = norm.clamp(min=EPS)
            mean = total[spec.label] / (scale if total[spec.label].dim() == 1 else scale.unsqueeze(1))
            out.append(as_logits(spec.task, mean))
        return torch.cat(out, dim=1)  # [B, sum K]


def unit_key(index: int, encoder: EncoderConfig) -> object:
    """Members' encoders of one modality with the same key are one module: frozen ones with equal
    configs hold the same pretrained weights (``fitting`` checks it before it builds an ensemble)."""
    if encoder.freeze:
        return ("frozen", encoder.name, repr(sorted(encoder.params.items())))
    return ("own", index)


def assemble(
    members: list[MemberConfig], models: list[MultimodalModel], heads: list[HeadConfig]
) -> MultimodalModel:
    """The ensemble of trained (or freshly built, for loading) member models, by ``members``' weights."""
    units: dict[str, dict[object, tuple[nn.Module, Slot]]] = {}  # modality -> key -> (module, slot)
    slots: list[dict[str, Slot]] = []
    for i, (member, model) in enumerate(zip(members, models, strict=True)):
        mine = {}
        for m, cfg in member.model.encoders.items():
            known = units.setdefault(m, {})
            key = unit_key(i, cfg)
            if key not in known:
                start = sum(slot.stop - slot.start for _, slot in known.values())
                encoder = model.encoders[m]
                known[key] = (encoder, Slot(start, start + int(encoder.output_dim)))  # type: ignore[arg-type]
            mine[m] = known[key][1]
        slots.append(mine)
    encoders = {m: StackedEncoder([module for module, _ in known.values()]) for m, known in units.items()}
    fusion = EnsembleFusion(
        [model.fusion for model in models],
        [model.heads for model in models],
        [member.weight for member in members],
        slots,
        heads,
    )
    readouts, start = {}, 0
    for h in heads:
        readouts[h.label] = Readout(h.task, h.num_outputs, start)
        start += h.num_outputs
    return MultimodalModel(encoders, fusion, readouts)  # type: ignore[arg-type]


def ensemble_config(members: list[MemberConfig], heads: list[HeadConfig]) -> ModelConfig:
    """The saved config of an ensemble: ``members`` with their weights; ``encoders`` lists, per
    modality, the first member's encoder (what ``info`` and ``metrics.json`` show)."""
    encoders: dict[str, EncoderConfig] = {}
    for member in members:
        for m, cfg in member.model.encoders.items():
            encoders.setdefault(m, cfg)
    return ModelConfig(encoders, FusionConfig("ensemble"), heads, members=members)
