"""Optimizers by name: ``TrainConfig.optimizer`` is a key of ``OPTIMIZERS``.

Each entry is a factory ``(params, lr, weight_decay) -> torch.optim.Optimizer``; an optimizer's other
hyper-parameters are fixed here, so a saved config names its optimizer completely. To add one, register
a factory below (or in a new module imported by ``polyfuse.train``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from polyfuse.config import TrainConfig
from polyfuse.registry import OPTIMIZERS, SCHEDULERS

Params = Iterable[nn.Parameter]


@OPTIMIZERS.register("adamw")
def adamw(params: Params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter, 2019, "Decoupled Weight Decay Regularization"), torch's betas."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("adam")
def adam(params: Params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization"); decay as an L2 term."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("sgd")
def sgd(params: Params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Plain stochastic gradient descent, no momentum."""
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("sgd_momentum")
def sgd_momentum(params: Params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum 0.9 (Sutskever et al., 2013, "On the importance of initialization and
    momentum in deep learning")."""
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=0.9, nesterov=True)


@OPTIMIZERS.register("rmsprop")
def rmsprop(params: Params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """RMSprop (Tieleman & Hinton, 2012, "Lecture 6.5, rmsprop: divide the gradient by a running average
    of its recent magnitude"), torch's smoothing 0.99, no momentum; decay as an L2 term."""
    return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)


def make_optimizer(name: str, params: Params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``params``; an unknown name raises a KeyError listing the known ones."""
    return OPTIMIZERS.get(name)(params, lr, weight_decay)


def trainable_setup(model: nn.Module, cfg: TrainConfig) -> Any:
    """A Lightning ``configure_optimizers`` answer for ``model``'s trainable parameters: ``cfg``'s
    optimizer, with its scheduler when it names one."""
    params = [p for p in model.parameters() if p.requires_grad]
    return with_scheduler(make_optimizer(cfg.optimizer, params, cfg.lr, cfg.weight_decay), cfg)


def with_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    """Lightning's ``configure_optimizers`` answer for ``opt`` and ``cfg``'s scheduler: the optimizer
    alone without one; a schedule that follows a metric (``plateau``) reads ``val_loss``."""
    sched = SCHEDULERS.get(cfg.scheduler)(opt, cfg)
    if sched is None:
        return opt
    if isinstance(sched, ReduceLROnPlateau):
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss"}}
    return {"optimizer": opt, "lr_scheduler": sched}
