"""Training: the Lightning module, callbacks and the fit loop (the only package importing lightning).

Importing this package registers the optimizers, learning-rate schedules, training callbacks,
balancing strategies, loss weightings and modality dropout schedules (``OPTIMIZERS``,
``SCHEDULERS``, ``CALLBACKS``, ``BALANCERS``, ``LOSS_WEIGHTINGS``, ``DROPOUT_SCHEDULES`` in
``polyfuse.registry``) that ``TrainConfig`` names. To add one: a factory registered in
``optimizers.py``, ``schedulers.py``, ``callbacks.py`` or ``dropout.py`` (or in a new module imported
below), or a balancing strategy or a loss weighting as a new module of ``balancers/`` or
``weighting/`` imported in its ``__init__``; ``tests/train/test_train_registries.py``,
``tests/train/test_balance.py``, ``tests/train/test_weighting.py`` and ``tests/train/test_dropout.py``
then cover it.
"""

from polyfuse.config import TrainConfig
from polyfuse.registry import BALANCERS, CALLBACKS, LOSS_WEIGHTINGS, OPTIMIZERS, SCHEDULERS
from polyfuse.train import (
    balancers,  # noqa: F401  (each import registers its entries)
    callbacks,  # noqa: F401
    dropout,
    optimizers,  # noqa: F401
    schedulers,  # noqa: F401
    weighting,  # noqa: F401
)


def check_names(cfg: TrainConfig) -> None:
    """Fail before any work if ``cfg`` names an unregistered optimizer, scheduler, balancer, loss
    weighting, callback or modality dropout schedule, or sets a dropout rate outside [0, 1]
    (``dropout.check_dropout``).

    Raises:
        KeyError: naming the unknown entry and the known ones (the registries' message).
        TypeError: if ``cfg.callbacks`` is a single string rather than a list of names.
        PolyfuseError: a modality dropout rate outside [0, 1].
    """
    OPTIMIZERS.get(cfg.optimizer)
    SCHEDULERS.get(cfg.scheduler)
    BALANCERS.get(cfg.balance)
    LOSS_WEIGHTINGS.get(cfg.loss_weighting)
    if isinstance(cfg.callbacks, str):
        raise TypeError(f"callbacks is a list of names, e.g. [{cfg.callbacks!r}]")
    for name in cfg.callbacks:
        CALLBACKS.get(name)
    dropout.check_dropout(cfg)


__all__ = ["check_names"]
