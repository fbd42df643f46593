"""Prototypical modal rebalance (``pmr``): class prototypes measure and speed up the slow modality.

Fan, Xu, Wei, Qiao & Wang, CVPR 2023, "PMR: Prototypical Modal Rebalance for Multimodal Learning".
Each modality's embeddings define class prototypes (the mean embedding of each class), and through
them a classifier with no parameters: ``p_m(k | x) = softmax_k(-||z_m - c_m^k||)``. That classifier
measures how far each modality has learned, independently of the fusion and of the other
modalities; the slow modality is then pulled toward its prototypes by a prototypical cross-entropy
(PCE), and the dominant one is kept from converging early by rewarding the entropy of its prototype
distribution.

Why this one, of the candidates of the issue (AGM, PMR, MLA, ReconBoost): PMR has no parameters of
its own and changes nothing in the fusion (it acts on each encoder's embedding through prototypes),
extends to M modalities and any fusion (prototypes are per modality), and costs no extra forward pass
here (the prototypes come from the training steps' own embeddings, below). MLA needs one head shared
by all modalities, so equal embedding widths, and alternating unimodal steps; ReconBoost trains the
modalities alternately on a boosting schedule; AGM needs masked forward passes at every step (M + 1
forwards per step).

As implemented, for M modalities and any fusion:

* Embedding ``z_m``: the modality's fusion inputs, token sequences mean-pooled over the valid tokens
  (``base.pooled``), on the rows that hold m.
* Prototypes ``c_m^k``: the mean ``z_m`` of the class-k rows of the previous epoch's training steps,
  accumulated (detached) from what ``loss`` sees, so no extra pass over the data; after the first
  epoch blended with the older ones, ``c <- (1 - MOMENTUM) mean + MOMENTUM c`` (the paper's code
  recomputes them after each epoch in eval mode on a tenth of the training set, with momentum 0.2).
  During the first epoch a step uses the means of the epoch's earlier steps. A class with no
  prototype yet is left out of the softmax, and so are rows of that class.
* Distance: Euclidean, no temperature (as the paper's code).
* Score ``s_m``: the mean over the step's rows holding m of ``p_m(true class)`` (the paper sums over
  the batch; with absent rows the modalities' row counts differ, so the mean).
* Imbalance ratio ``rho_m = s_m / mean(s_j for the other modalities j)``; for two modalities the
  paper's ``rho_a = s_a / s_v`` and ``rho_v = 1 / rho_a`` (the same generalisation as ``ogm_ge``; a
  modality absent from every row of the step is left out).
* Slow modality (``rho_m < 1``): ``+ beta_m PCE_m`` with ``beta_m = ALPHA clip(1 / rho_m - 1, 0, 1)``.
  Dominant modality (``rho_m > 1``): ``- MU clip(rho_m - 1, 0, 1) H_m`` (``H_m``: the mean entropy of
  its prototype distribution), for epochs below ``ENTROPY_EPOCHS`` only. For two modalities both
  coefficients follow one value ``clip(rho_dominant - 1, 0, 1)``, as in the paper, where the weak
  modality's PCE and the dominant one's entropy term share a coefficient. (The paper's code uses a
  coefficient of 0 or ALPHA, jumping at rho = 1, and leaves the entropy term out; the clipped form is
  GeWu-Lab's BalanceBenchmark's reading of the paper's.)
* Labels: each multiclass or binary label (two classes) has its prototypes, ratios and terms, weighed
  by ``Balancer.label_weights`` and summed; regression and multilabel labels have no class per row
  and are left out. Without a classification label, or with one modality, the factory returns None
  (plain training), so that a search over every strategy never fails on a regression table.

Coefficients are computed without gradient; the terms reach each encoder through ``z_m``. The mean
``rho_m`` and ``beta_m`` of each modality over an epoch's steps (and labels) are logged as
``pmr_rho_<modality>`` and ``pmr_beta_<modality>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from polyfuse.config import HeadConfig
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.registry import BALANCERS
from polyfuse.train.balancers.base import Balancer, pooled

# ALPHA: the paper's code's default (its CLI's --alpha). MOMENTUM: its prototype momentum. MU and
# ENTROPY_EPOCHS (the paper's E_r, "the early training stage") are ours: the paper's code omits the
# entropy term, and its values could not be checked here.
ALPHA = 1.0
MU = 0.01
ENTROPY_EPOCHS = 10
MOMENTUM = 0.2
CLASS_TASKS = ("multiclass", "binary")


def pce_coefficient(rho: Tensor, alpha: float = ALPHA) -> Tensor:
    """``alpha clip(1 / rho - 1, 0, 1)``: the weight of a slow modality's PCE (0 at rho >= 1)."""
    return alpha * (1 / rho.clamp(min=1e-8) - 1).clamp(0, 1)


def entropy_coefficient(rho: Tensor, mu: float = MU) -> Tensor:
    """``mu clip(rho - 1, 0, 1)``: the weight of a dominant modality's entropy reward (0 at rho <= 1)."""
    return mu * (rho - 1).clamp(0, 1)


def imbalance_ratios(scores: dict[str, Tensor]) -> dict[str, Tensor]:
    """``rho_m = s_m / mean of the other scores``; all 1 when fewer than two modalities have a score."""
    if len(scores) < 2:
        return {name: torch.ones(()) for name in scores}
    total = torch.stack(list(scores.values())).sum()
    return {
        name: score / ((total - score) / (len(scores) - 1)).clamp(min=1e-8) for name, score in scores.items()
    }


def prototype_log_probs(z: Tensor, prototypes: Tensor) -> Tensor:
    """[R, K] ``log softmax_k(-||z - c^k||)`` of embeddings [R, D] against prototypes [K, D]."""
    squared = (z.unsqueeze(1) - prototypes.unsqueeze(0)).pow(2).sum(-1)  # [R, K]
    return torch.log_softmax(-squared.clamp(min=1e-12).sqrt(), dim=1)


@dataclass
class ClassMeans:
    """One modality's embeddings for one label: per class, their sum and count over the current
    epoch's steps, and the prototypes of the epochs before (None during the first epoch)."""

    sums: Tensor  # [K, D]
    counts: Tensor  # [K]
    prototypes: Tensor | None = None  # [K, D]
    known: Tensor | None = None  # [K] bool: the class has a prototype

    def add(self, z: Tensor, y: Tensor) -> None:
        self.sums.index_add_(0, y, z.detach().to(self.sums.dtype))
        self.counts += torch.bincount(y, minlength=len(self.counts)).to(self.counts.dtype)

    def current(self) -> tuple[Tensor, Tensor]:
        """(prototypes [K, D], known [K]): the earlier epochs', or in the first epoch the means so far."""
        if self.prototypes is not None and self.known is not None:
            return self.prototypes, self.known
        return self.sums / self.counts.clamp(min=1).unsqueeze(1), self.counts > 0

    def close_epoch(self, momentum: float = MOMENTUM) -> None:
        """Prototypes <- this epoch's means, blended with the older ones; the sums start again."""
        seen = self.counts > 0
        means = self.sums / self.counts.clamp(min=1).unsqueeze(1)
        if self.prototypes is None or self.known is None:
            self.prototypes, self.known = torch.where(seen.unsqueeze(1), means, 0.0), seen
        else:
            blended = torch.where(
                self.known.unsqueeze(1), (1 - momentum) * means + momentum * self.prototypes, means
            )
            self.prototypes = torch.where(seen.unsqueeze(1), blended, self.prototypes)
            self.known = self.known | seen
        self.sums, self.counts = torch.zeros_like(self.sums), torch.zeros_like(self.counts)


@dataclass
class ModalityTerms:
    score: Tensor  # s_m, no gradient
    pce: Tensor  # prototypical cross-entropy, mean over the rows
    entropy: Tensor  # mean entropy of the prototype distribution


def modality_terms(means: ClassMeans, z: Tensor, y: Tensor) -> ModalityTerms | None:
    """The score, PCE and entropy of embeddings [R, D] with classes [R] against ``means``' current
    prototypes, on the rows whose class has one (None: fewer than two prototypes, or no such row)."""
    prototypes, known = means.current()
    keep = known[y]
    if int(known.sum()) < 2 or not bool(keep.any()):
        return None
    column = known.long().cumsum(0) - 1  # class -> its column among the known ones
    log_p = prototype_log_probs(z[keep], prototypes[known])  # [R', K']
    target = column[y[keep]]
    true = log_p.gather(1, target.unsqueeze(1)).squeeze(1)  # [R']
    entropy = -(log_p.exp() * log_p).sum(1).mean()
    return ModalityTerms(true.detach().exp().mean(), -true.mean(), entropy)


class PrototypicalRebalance(Balancer):
    """PMR for M modalities and any fusion (see the module's docstring)."""

    def __init__(self, classes: dict[str, int], alpha: float = ALPHA, mu: float = MU) -> None:
        super().__init__()
        self.classes = classes  # label -> number of classes
        self.alpha, self.mu = alpha, mu
        self.means: dict[tuple[str, str], ClassMeans] = {}  # (label, modality) -> its class means
        self.epoch = 0  # the epoch being trained (epoch_end moves it on)
        self._logged: dict[str, list[Tensor]] = {}  # "pmr_rho_<m>" ... -> the epoch's values

    def loss(
        self,
        inputs: dict[str, Tensor],
        valid: dict[str, Tensor] | None,
        mask: dict[str, Tensor],
        targets: dict[str, Tensor],
    ) -> Tensor:
        """Sum over classification labels (times their ``label_weights``) of the modalities' PCE and
        entropy terms; the step's embeddings then join the class means."""
        total = next(iter(inputs.values())).new_zeros(())
        for label in self.classes:
            terms = self._label_terms(label, inputs, valid, mask, targets[label].long().reshape(-1))
            weight = (self.label_weights or {}).get(label, 1.0)
            total = self._weighted(terms, total, weight)
        return total

    def _label_terms(
        self,
        label: str,
        inputs: dict[str, Tensor],
        valid: dict[str, Tensor] | None,
        mask: dict[str, Tensor],
        y: Tensor,
    ) -> dict[str, ModalityTerms]:
        """Modality -> its terms for one label, from the prototypes before this step's embeddings."""
        out = {}
        for name, features in inputs.items():
            rows = mask[name]
            if not bool(rows.any()):
                continue
            z = pooled(features, (valid or {}).get(name))[rows]  # [R, D]
            means = self._class_means(label, name, z)
            terms = modality_terms(means, z, y[rows])
            if terms is not None:
                out[name] = terms
            means.add(z, y[rows])
        return out

    def _weighted(self, terms: dict[str, ModalityTerms], total: Tensor, weight: float) -> Tensor:
        """``total + weight sum_m (beta_m PCE_m - [early] mu clip(rho_m - 1, 0, 1) H_m)``; logs rho, beta."""
        ratios = imbalance_ratios({name: t.score for name, t in terms.items()})
        for name, t in terms.items():
            rho = ratios[name].to(t.pce)
            beta = pce_coefficient(rho, self.alpha)
            total = total + weight * beta * t.pce
            if self.epoch < ENTROPY_EPOCHS:
                total = total - weight * entropy_coefficient(rho, self.mu) * t.entropy
            if len(terms) > 1:
                self._logged.setdefault(f"pmr_rho_{name}", []).append(rho.detach().cpu())
                self._logged.setdefault(f"pmr_beta_{name}", []).append(beta.detach().cpu())
        return total

    def _class_means(self, label: str, name: str, z: Tensor) -> ClassMeans:
        key = (label, name)
        if key not in self.means:
            k = self.classes[label]
            self.means[key] = ClassMeans(z.new_zeros(k, z.shape[1]).float(), z.new_zeros(k).float())
        return self.means[key]

    def epoch_end(self, model: MultimodalModel, epoch: int) -> dict[str, float]:
        """Turns the epoch's class means into prototypes; the epoch's mean rho and beta per modality."""
        for means in self.means.values():
            means.close_epoch()
        self.epoch = epoch + 1
        logged = {key: float(torch.stack(values).mean()) for key, values in self._logged.items()}
        self._logged = {}
        return logged


def class_count(head: HeadConfig) -> int:
    """Classes of a classification head: its outputs (multiclass) or 2 (binary)."""
    return 2 if head.task == "binary" else head.num_outputs


@BALANCERS.register("pmr")
def prototypical_rebalance(model: MultimodalModel, heads: list[HeadConfig], losses: Any) -> Balancer | None:
    """PMR (``PrototypicalRebalance``); nothing to balance for one modality or without a class label."""
    classes = {h.label: class_count(h) for h in heads if h.task in CLASS_TASKS}
    if len(model.encoders) < 2 or not classes:
        return None
    return PrototypicalRebalance(classes)
