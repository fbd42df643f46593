"""Loss weighting: how the losses of several labels combine into one training objective, chosen by name.

``TrainConfig.loss_weighting`` names an entry of ``LOSS_WEIGHTINGS`` (contract: ``base.LossWeighting``);
one module per method, each imported below to register it. ``sum`` (the default) is the plain sum of
the labels' losses; with one label every weighting is that sum (the factories return None).
"""

from polyfuse.train.weighting import (
    base,  # noqa: F401  (each import registers its entry)
    dwa,  # noqa: F401
    gradnorm,  # noqa: F401
    pcgrad,  # noqa: F401
    uncertainty,  # noqa: F401
)
from polyfuse.train.weighting.base import LossWeighting, Shared

__all__ = ["LossWeighting", "Shared"]
