"""Training: the Lightning module, callbacks and the fit loop (the only package importing lightning).

Importing this package registers the optimizers and learning-rate schedules (``OPTIMIZERS``,
``SCHEDULERS`` in ``polyfuse.registry``) that ``TrainConfig`` names. To add one: a factory registered
in ``optimizers.py`` or ``schedulers.py`` (or in a new module imported below).
"""

from polyfuse.train import (
    optimizers,  # noqa: F401  (each import registers its entries)
    schedulers,  # noqa: F401
)
