"""Modality balancing: training strategies against modality competition, chosen by name.

``TrainConfig.balance`` names a strategy in ``BALANCERS`` (contract: ``base.Balancer``); one module
per strategy, each imported below to register it. The callback ``modality_grad_share`` shows what a
strategy changes: each encoder's share of the gradient.
"""

from polyfuse.train.balancers import (
    aux,  # noqa: F401  (each import registers its entry)
    base,  # noqa: F401
    gblend,  # noqa: F401
    ogm_ge,  # noqa: F401
    pmr,  # noqa: F401
    umt,  # noqa: F401
)
from polyfuse.train.balancers.base import Balancer

__all__ = ["Balancer"]
