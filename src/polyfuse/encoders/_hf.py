"""Shared plumbing for the HuggingFace adapters: lazy loading, freezing, sizes.

``transformers`` is imported inside functions only, so ``import polyfuse.encoders`` stays light.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


def load_pretrained(pretrained: str) -> nn.Module:
    """``AutoModel.from_pretrained`` for a hub name or a local folder (never downloads for a folder).

    Args:
        pretrained: Hub name ("google/vit-base-patch16-224") or path to a saved model folder.
    """
    try:
        from transformers import AutoModel
    except ImportError as err:  # pragma: no cover - transformers is a core dependency
        raise ImportError("pretrained encoders need `transformers` (pip install polyfuse)") from err
    from transformers.utils import logging as hf_logging

    local = Path(pretrained).expanduser().is_dir()
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-tensor "Loading weights" bar would drown fit's output
    try:
        model = AutoModel.from_pretrained(str(pretrained), local_files_only=local)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    return model  # type: ignore[no-any-return]


def config_value(config: Any, *names: str, default: Any = None) -> Any:
    """The first attribute of ``config`` among ``names`` that is set (nested vision configs too)."""
    for source in (config, getattr(config, "vision_config", None)):
        for name in names:
            value = getattr(source, name, None) if source is not None else None
            if value is not None:
                return value
    return default


def hidden_size(model: nn.Module) -> int:
    """Width of the model's output features, read from its config."""
    size = config_value(model.config, "hidden_size", "hidden_dim", "d_model")
    if size is None:
        sizes = config_value(model.config, "hidden_sizes")  # ResNet / ConvNeXt style
        size = sizes[-1] if sizes else None
    if size is None:
        raise ValueError(f"cannot tell the output width of {type(model).__name__}; set output_dim")
    return int(size)


def freeze_(module: nn.Module) -> None:
    """Turn off gradients for every parameter of ``module`` (in place)."""
    for param in module.parameters():
        param.requires_grad_(False)


def masked_mean(tokens: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``tokens`` [B, T, D] over positions where ``valid`` [B, T] is True; zeros if none."""
    weights = valid.to(tokens.dtype).unsqueeze(-1)  # [B, T, 1]
    total = (tokens * weights).sum(dim=1)  # [B, D]
    return total / weights.sum(dim=1).clamp(min=1.0)


def all_valid(tokens: Tensor) -> Tensor:
    """Bool [B, T] of True for a token sequence [B, T, D] with no padding."""
    return torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)


def unmask_empty_rows(valid: Tensor) -> Tensor:
    """Mark the first position valid in rows with none, so attention never sees an all-masked row.

    Pooling still uses the original ``valid``, so such rows embed to zeros.
    """
    empty = ~valid.any(dim=1)  # [B]
    first = torch.arange(valid.shape[1], device=valid.device) == 0  # [T]
    return valid | (empty[:, None] & first[None, :])  # no data-dependent branch: ONNX export traces it


class PretrainedAdapter(nn.Module):
    """Base for adapters around a pretrained ``backbone`` followed by a trainable ``proj``.

    A frozen backbone also stays in eval mode (no dropout noise) when the module is trained.
    """

    backbone: nn.Module
    frozen: bool = False

    def _setup_backbone(self, backbone: nn.Module, freeze: bool) -> None:
        self.backbone = backbone
        self.frozen = freeze
        if freeze:
            freeze_(backbone)
            backbone.eval()

    def train(self, mode: bool = True) -> PretrainedAdapter:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def _backbone_grad(self) -> AbstractContextManager[None]:
        # A frozen backbone runs without autograd bookkeeping: faster and lighter.
        return torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen)
