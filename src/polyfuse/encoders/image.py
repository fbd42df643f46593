"""Image encoders: a small CNN trained from scratch, and an adapter for HuggingFace vision models.

Input: [B, C, H, W], uint8 (0..255) or float (0..1). Absent rows hold zeros.
Both also offer ``forward_tokens(x) -> (tokens [B, T, token_dim], valid [B, T])``: the spatial
positions of the last feature map (CNN, conv backbones) or the backbone's hidden states (ViT).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyfuse.encoders._hf import (
    PretrainedAdapter,
    all_valid,
    config_value,
    hidden_size,
    load_pretrained,
)
from polyfuse.registry import ENCODERS


def as_float_image(x: Tensor) -> Tensor:
    """uint8 0..255 -> float 0..1; float passes through; [B, H, W] gains a channel axis."""
    if x.dim() == 3:
        x = x.unsqueeze(1)  # [B, 1, H, W]
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    return x.float()


def _side(image_size: int | Sequence[int] | None) -> int:
    if image_size is None:
        return 32
    if isinstance(image_size, int):
        return image_size
    return int(min(image_size))


class _ConvBlock(nn.Module):
    """conv3x3 + BN + ReLU, then 2x2 max-pool only while the feature map is larger than 4x4."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn(self.conv(x)))  # [B, C, H, W]
        # Deciding at run time keeps the encoder usable for any input size.
        return F.max_pool2d(x, 2) if min(x.shape[-2:]) > 4 else x


@ENCODERS.register("image_cnn")
class ImageCNN(nn.Module):
    """A small VGG-style CNN: conv blocks, global average pooling, a linear projection.

    Args:
        in_channels: Image channels (1 for grey, 3 for RGB).
        image_size: Side (or (H, W)) of the input images; sets the stem stride and number of blocks.
        output_dim: Embedding size.
        hidden_dim: Channels of the first block; later blocks double it up to 4x.
        dropout: Dropout before the projection.
    """

    modality = "image"

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int | Sequence[int] | None = 32,
        output_dim: int = 128,
        hidden_dim: int = 32,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.output_dim = output_dim
        side, num_pools = _side(image_size), 0
        # Images above 32 px start with a stride-2 conv: ~4x less compute, same accuracy class.
        stem_stride = 2 if side > 32 else 1
        side //= stem_stride
        while side > 4 and num_pools < 5:
            side, num_pools = side // 2, num_pools + 1
        widths = [hidden_dim * 2 ** min(i, 2) for i in range(num_pools + 1)]
        blocks, ch = [], in_channels
        for i, width in enumerate(widths):
            blocks.append(_ConvBlock(ch, width, stem_stride if i == 0 else 1))
            ch = width
        self.blocks = nn.Sequential(*blocks)
        self.token_dim = ch  # channels of the last feature map
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(ch, output_dim)

    def forward_tokens(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """One token per position of the last feature map, all valid."""
        fmap = self.blocks(as_float_image(x))  # [B, C', h, w]
        tokens = fmap.flatten(2).transpose(1, 2)  # [B, h * w, C']
        return tokens, all_valid(tokens)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(as_float_image(x))  # [B, C', h, w]
        x = x.mean(dim=(-2, -1))  # [B, C']
        return self.proj(self.dropout(x))  # type: ignore[no-any-return]  # [B, output_dim]


@ENCODERS.register("hf_image")
class HFImageEncoder(PretrainedAdapter):
    """Any HuggingFace vision backbone (ViT, DeiT, ConvNeXt, ResNet ...) + a linear projection.

    Inputs are resized to the model's ``image_size``, grey is repeated to 3 channels when the
    model wants colour, and pixels are normalised with ``image_mean`` / ``image_std``.

    Args:
        pretrained: Hub name or local folder of the model.
        in_channels: Channels of the input images.
        output_dim: Embedding size after the projection.
        freeze: Keep the backbone's weights fixed (the projection still trains).
        image_mean: Per-channel mean used for normalisation (default 0.5).
        image_std: Per-channel std used for normalisation (default 0.5).
        dropout: Dropout before the projection.
    """

    modality = "image"

    def __init__(
        self,
        pretrained: str,
        in_channels: int = 3,
        output_dim: int = 256,
        freeze: bool = False,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self._setup_backbone(load_pretrained(pretrained), freeze)
        config = self.backbone.config
        size = config_value(config, "image_size")
        self.image_size = (size, size) if isinstance(size, int) else (tuple(size) if size else None)
        self.num_channels = int(config_value(config, "num_channels", default=3))
        channels = self.num_channels
        mean = torch.tensor(image_mean if image_mean is not None else [0.5] * channels).view(1, -1, 1, 1)
        std = torch.tensor(image_std if image_std is not None else [0.5] * channels).view(1, -1, 1, 1)
        self.register_buffer("mean", mean.float(), persistent=False)
        self.register_buffer("std", std.float(), persistent=False)
        self.output_dim = output_dim
        self.token_dim = hidden_size(self.backbone)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(self.token_dim, output_dim)

    def _prepare(self, x: Tensor) -> Tensor:
        x = as_float_image(x)  # [B, C, H, W] in 0..1
        if x.shape[1] == 1 and self.num_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] == 3 and self.num_channels == 1:
            x = x.mean(dim=1, keepdim=True)
        if self.image_size is not None and tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std  # type: ignore[operator]

    def _backbone_out(self, x: Tensor) -> Any:
        pixels = self._prepare(x)  # [B, C, S, S]
        with self._backbone_grad():
            return self.backbone(pixel_values=pixels)

    def forward_tokens(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The backbone's last hidden states: patch tokens (ViT) or feature-map positions (conv nets)."""
        hidden = self._backbone_out(x).last_hidden_state  # [B, T, H] or [B, H, h, w]
        if hidden.dim() == 4:
            hidden = hidden.flatten(2).transpose(1, 2)  # [B, h * w, H]
        return hidden, all_valid(hidden)

    def forward(self, x: Tensor) -> Tensor:
        out = self._backbone_out(x)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            hidden = out.last_hidden_state  # [B, T, H] (transformers) or [B, H, h, w] (conv nets)
            pooled = hidden.mean(dim=(-2, -1)) if hidden.dim() == 4 else hidden.mean(dim=1)
        return self.proj(self.dropout(pooled.flatten(1)))  # type: ignore[no-any-return]  # [B, output_dim]
