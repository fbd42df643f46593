"""Modality dropout: masking whole modalities of training rows, at per-modality rates, on a schedule.

ModDrop (Neverova, Wolf, Taylor & Nebout, 2015, "ModDrop: adaptive multi-modal gesture
recognition") drops each input modality of a training sample at random, so that the fused model
learns cross-modal redundancy and still works when a modality is missing at inference.
``TrainConfig.modality_dropout`` is one rate for every modality; ``modality_dropout_rates`` gives a
modality its own; ``modality_dropout_schedule`` names an entry of ``DROPOUT_SCHEDULES``, a function
``(rate, epoch, epochs) -> rate`` that sets each epoch's rate from the configured one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from polyfuse.config import TrainConfig
from polyfuse.data.batch import Batch
from polyfuse.data.errors import SchemaError
from polyfuse.errors import PolyfuseError
from polyfuse.registry import DROPOUT_SCHEDULES


@DROPOUT_SCHEDULES.register("constant")
def constant(rate: float, epoch: int, epochs: int) -> float:
    """The configured rate at every epoch (ModDrop as published)."""
    return rate


@DROPOUT_SCHEDULES.register("linear_warmup")
def linear_warmup(rate: float, epoch: int, epochs: int) -> float:
    """``rate * min(1, epoch / epochs)``: no dropout at epoch 0, the full rate from epoch ``epochs`` on.

    A curriculum (Bengio et al., 2009, "Curriculum learning"): every modality is learnt on complete
    rows first, then the task is made harder, as Curriculum Dropout does for unit dropout (Morerio
    et al., ICCV 2017, "Curriculum Dropout").
    """
    return rate * min(1.0, epoch / epochs)


@DROPOUT_SCHEDULES.register("cosine_decay")
def cosine_decay(rate: float, epoch: int, epochs: int) -> float:
    """``rate * (1 + cos(pi * min(epoch, epochs) / epochs)) / 2``: the full rate at epoch 0, none from
    epoch ``epochs`` on.

    Dropout early in training only, which Liu et al. (ICML 2023, "Dropout Reduces Underfitting")
    found to help models that underfit; the cosine shape is the learning rate's (``cosine``).
    """
    return rate * (1 + math.cos(math.pi * min(epoch, epochs) / epochs)) / 2


def uses_modality_dropout(cfg: TrainConfig) -> bool:
    """Does ``cfg`` drop any modality at all (at its configured, unscheduled rates)?"""
    return cfg.modality_dropout > 0 or any(r > 0 for r in cfg.modality_dropout_rates.values())


def epoch_rates(cfg: TrainConfig, modalities: list[str], epoch: int) -> dict[str, float]:
    """Each modality's dropout rate in ``epoch`` (from 0): its configured rate (its own, else
    ``modality_dropout``) through the schedule, over ``modality_dropout_epochs`` (default max_epochs)."""
    schedule = DROPOUT_SCHEDULES.get(cfg.modality_dropout_schedule)
    epochs = max(1, cfg.modality_dropout_epochs or cfg.max_epochs)
    rates = {m: cfg.modality_dropout_rates.get(m, cfg.modality_dropout) for m in modalities}
    return {m: float(schedule(rate, epoch, epochs)) for m, rate in rates.items()}


def check_dropout(cfg: TrainConfig, modalities: list[str] | None = None) -> None:
    """Fail early on a bad modality dropout setting.

    Without ``modalities`` (before the table is read): the schedule's name, each rate in [0, 1], a
    positive ``modality_dropout_epochs``. With them (the table's modalities): also that every
    modality ``modality_dropout_rates`` names is one of them.

    Raises:
        KeyError: an unknown schedule (the registry's message).
        TypeError: ``modality_dropout_rates`` is not a mapping.
        PolyfuseError: a rate outside [0, 1] or epochs below 1 (``SchemaError``: an unknown modality).
    """
    DROPOUT_SCHEDULES.get(cfg.modality_dropout_schedule)
    rates = cfg.modality_dropout_rates
    if not isinstance(rates, Mapping):
        raise TypeError(f"modality_dropout_rates maps modality -> rate, e.g. {{'image': 0.3}}, not {rates!r}")
    bad = {m: r for m, r in rates.items() if not 0.0 <= r <= 1.0}
    if bad:
        raise PolyfuseError(f"modality_dropout_rates must lie in [0, 1]: {bad}")
    if cfg.modality_dropout_epochs is not None and cfg.modality_dropout_epochs < 1:
        raise PolyfuseError(f"modality_dropout_epochs must be at least 1, not {cfg.modality_dropout_epochs}")
    unknown = sorted(set(rates) - set(modalities)) if modalities is not None else []
    if unknown:
        raise SchemaError(
            f"modality_dropout_rates names unknown modalities {unknown} (the table's: {modalities})"
        )


def drop_modalities(batch: Batch, rate: float | Mapping[str, float]) -> Batch:
    """Mask each present modality of each row with probability ``rate`` (one for all modalities, or
    modality -> rate, 0 for one it omits), keeping one per row.

    Trains the fusion to cope with absent inputs, which also makes masking a modality at
    inference a meaningful "what if it were missing" question.
    """
    names = list(batch.mask)
    present = torch.stack([batch.mask[n] for n in names], dim=1)  # [B, M]
    rates = [rate.get(n, 0.0) for n in names] if isinstance(rate, Mapping) else [rate] * len(names)
    threshold = torch.tensor(rates, device=present.device)  # [M], broadcast over rows
    keep = present & (torch.rand(present.shape, device=present.device) >= threshold)
    # Rows that lost every present modality get one of their present ones back, at random.
    lost = (present.any(1) & ~keep.any(1)).nonzero(as_tuple=True)[0]
    if len(lost):
        pick = torch.rand(present.shape, device=present.device).masked_fill(~present, -1).argmax(1)
        keep[lost, pick[lost]] = True
    kept = {n: keep[:, i] for i, n in enumerate(names)}
    return Batch(batch.inputs, kept, batch.targets, batch.cached, batch.rows)
