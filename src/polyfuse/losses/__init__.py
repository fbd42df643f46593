"""Loss modules, registered in ``LOSSES``; ``default_loss(task)`` names the usual one."""

from polyfuse.losses import standard  # noqa: F401  (registers cross_entropy, bce, mse)
from polyfuse.losses.standard import BCELoss, CrossEntropyLoss, MSELoss, default_loss, training_losses

__all__ = ["BCELoss", "CrossEntropyLoss", "MSELoss", "default_loss", "training_losses"]
