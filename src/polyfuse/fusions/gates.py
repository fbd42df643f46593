"""Dynamic feature selection: per-sample hard-concrete gates (``TrainConfig.feature_gates``).

A gate multiplies each feature by z in [0, 1] that is exactly 0 or 1 with positive probability: the
hard-concrete distribution of Louizos, Welling & Kingma (ICLR 2018, "Learning Sparse Neural Networks
through L0 Regularization"), a binary-concrete sample stretched to (GAMMA, ZETA) and clipped to
[0, 1]. Its expected L0 norm, the probability that each gate is not 0, is differentiable, so the
training loss adds ``TrainConfig.feature_gate_l0`` times it and learns to close gates. Here the gate
logits are computed from the sample itself (a linear layer), so each row opens its own features:
*dynamic* selection (as in Yamada et al., ICML 2020, "Feature Selection using Stochastic Gates", with
the logits made input-dependent). In evaluation the gate is deterministic:
``clip(sigmoid(logit) (ZETA - GAMMA) + GAMMA, 0, 1)``.

Two places take gates: the tabular encoder's columns (``TabularMLP(column_gates=True)``, one gate per
column, a row's numbers and category embeddings gated before the MLP), and every modality's embedding
before the fusion (``GatedFusion``, one gate per embedding dimension). Each gate keeps, after a pass,
its open probability per row (``open_probability``) for the L0 penalty and for reporting. Rows whose
modality is absent (and a token-level fusion's padding tokens) count in neither: their embedding is a
placeholder the fusion masks, so its gates are neither penalised nor reported.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

GAMMA, ZETA, BETA = -0.1, 1.1, 2 / 3  # the paper's stretch limits and temperature
INIT_OPEN = 1.0  # initial logit bias: every gate starts open (z = 0.78 in evaluation, P(z > 0) = 0.93)
# The gate logits learn this many times faster than the network: to shut, a gate's logit must fall
# by about 3.4 (to -2.4, where z reaches 0 in evaluation), which at a network's learning rate under
# Adam (about lr per step) takes thousands of steps, more than a fit runs.
LR_SCALE = 25.0


class HardConcreteGate(nn.Module):
    """Per-sample gates: ``forward(x [..., in_dim]) -> z [..., num_gates]``."""

    def __init__(self, in_dim: int, num_gates: int):
        super().__init__()
        self.logits = nn.Linear(in_dim, num_gates)
        nn.init.zeros_(self.logits.weight)
        nn.init.constant_(self.logits.bias, INIT_OPEN)
        self.open_probability: Tensor | None = None  # [..., num_gates] of the last training pass
        self.present: Tensor | None = None  # [...] float: which rows of that pass count (None: all)
        self.last_gates: Tensor | None = None  # [..., num_gates]: the last recorded pass's z, detached
        self.last_present: Tensor | None = None  # [...] float: which rows of last_gates count
        self.record = False  # keep each evaluation pass's z in last_gates (``eval.gates``)

    def forward(self, x: Tensor, present: Tensor | None = None) -> Tensor:
        """Gates z [..., G] for features x [..., in_dim]; ``present`` (bool [...], default all) says
        which rows count in the L0 penalty and in the recorded open share."""
        log_alpha = self.logits(x)  # [..., G]
        weight = (
            None  # [...]: which rows count, kept only in training or recording (an export traces neither)
        )
        if present is not None and (self.training or self.record):
            weight = present.to(log_alpha.dtype).expand(log_alpha.shape[:-1])
        if self.training:  # attributes are set only here and when recording: an export traces neither
            self.open_probability = torch.sigmoid(log_alpha - BETA * math.log(-GAMMA / ZETA))  # P(z != 0)
            self.present = weight
            u = torch.rand_like(log_alpha).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
        else:
            s = torch.sigmoid(log_alpha)
        z = (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)
        if self.record:
            self.last_gates = z.detach()
            self.last_present = None if weight is None else weight.detach()
        return z

    def l0(self) -> Tensor:
        """Expected number of open gates per row, averaged over the last pass's present rows (0 when
        none was present)."""
        if self.open_probability is None:
            return torch.zeros(())
        per_row = self.open_probability.sum(-1)  # [...]
        if self.present is None:
            return per_row.mean()
        return (per_row * self.present).sum() / self.present.sum().clamp(min=1.0)


class GatedFusion(nn.Module):
    """A fusion whose every embedding (or token) first passes through its own per-sample gates.

    Attributes other than its own are the wrapped fusion's (``output_dim``, ``wants_tokens``,
    attention weights), so callers see the fusion they asked for.
    """

    def __init__(self, inner: nn.Module, in_dims: dict[str, int]):
        super().__init__()
        self.inner = inner
        self.gates = nn.ModuleDict({m: HardConcreteGate(d, d) for m, d in in_dims.items()})

    def forward(self, inputs: dict[str, Tensor], mask: dict[str, Tensor], **kwargs: Any) -> Tensor:
        valid = kwargs.get("tokens_valid") or {}
        gated = {m: self._gated(m, x, mask, valid) for m, x in inputs.items()}  # [B, D_m] or [B, T_m, D_m]
        return self.inner(gated, mask, **kwargs)  # type: ignore[no-any-return]

    def _gated(self, m: str, x: Tensor, mask: dict[str, Tensor], valid: dict[str, Tensor]) -> Tensor:
        """Modality ``m``'s embedding (or tokens) times its gates; which rows count is worked out only
        when a gate keeps it (training, recording), so an export traces none of it."""
        if m not in self.gates:
            return x
        gate = self.gates[m]
        rows = present(mask.get(m), valid.get(m), x) if gate.training or gate.record else None
        return x * gate(x, rows)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("inner"), name)


def present(mask: Tensor | None, valid: Tensor | None, x: Tensor) -> Tensor | None:
    """Which rows of ``x`` ([B, D] or tokens [B, T, D]) are real: the modality's presence [B], and
    for tokens their validity [B, T]; None when nothing says."""
    if mask is None:
        return valid
    if x.dim() == 3:  # [B, T, D]: a present row's valid tokens
        rows = mask.unsqueeze(1)  # [B, 1]
        return rows if valid is None else rows & valid.bool()
    return mask  # [B]


def gate_modules(model: nn.Module) -> dict[str, HardConcreteGate]:
    """Every gate of ``model`` by its module path."""
    return {name: m for name, m in model.named_modules() if isinstance(m, HardConcreteGate)}


def gate_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of the model's gates (trained at ``LR_SCALE`` times the learning rate)."""
    return [p for gate in gate_modules(model).values() for p in gate.parameters()]


def l0_penalty(model: nn.Module) -> Tensor:
    """The sum over the model's gates of their expected open count per row (last pass)."""
    gates = gate_modules(model).values()
    return sum((g.l0() for g in gates), torch.zeros(()))
