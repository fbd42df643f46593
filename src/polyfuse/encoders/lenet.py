"""LeNet-style CNN of MultiBench, for parity with its AV-MNIST baselines.

LeCun et al., 1998, "Gradient-Based Learning Applied to Document Recognition"; the variant of
Liang et al., 2021, "MultiBench: Multiscale Benchmarks for Multimodal Representation Learning"
(``unimodals/common_models.LeNet``): a 5x5 conv, then ``additional_layers`` 3x3 convs doubling the
channels, each followed by BatchNorm, ReLU and a 2x2 max-pool; Kaiming-uniform conv weights.
At MultiBench's sizes the last feature map is 1x1 (28 px with 3 extra layers, 112 px with 5) and
its channels are the embedding; other sizes stop pooling at 1 px and average the last map.

Input: [B, 1, H, W] (or [B, H, W]), uint8 0..255 or float 0..1, e.g. an image or a spectrogram.

Speed on CPU: the weight gradient of a one-channel first conv goes through ``SingleChannelConv``
(see there); NCHW is the default layout because BatchNorm over LeNet's few channels runs slower
in channels-last on CPU (timings: ``python -m benchmarks.avmnist.profile``).
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.grad import conv2d_input

from polyfuse.encoders.image import as_float_image
from polyfuse.registry import ENCODERS


class SingleChannelConv(torch.autograd.Function):
    """Stride-1 conv whose weight gradient is itself a convolution with batch and channels swapped.

    For a one-channel input, oneDNN's weight-gradient kernel is slow on CPU (MultiBench's first audio
    conv: 5x5, 1 -> 6 channels over 112 px). The gradient ``dW[o, i] = sum_b corr(x[b, i], g[b, o])``
    is the forward conv of x with batch and channels swapped under g likewise swapped as weights,
    which oneDNN runs faster: MultiBench's AV-MNIST late-fusion training step takes 6-10% less time
    (``python -m benchmarks.avmnist.profile``). Forward and input gradient are torch's own. Not
    twice differentiable.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, padding: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv2d(x, weight, padding=padding)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor, None]:
        x, weight = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = conv2d_input(x.shape, weight, grad, padding=ctx.padding)
        # [C_in, B, H, W] * [C_out, B, H', W'] -> [C_in, C_out, k, k]
        grad_w = F.conv2d(x.transpose(0, 1), grad.transpose(0, 1), padding=ctx.padding).transpose(0, 1)
        return grad_x, grad_w, None


def _conv(layer: nn.Conv2d, x: Tensor) -> Tensor:
    """``layer(x)``; through ``SingleChannelConv`` where that is faster and exact: a plain conv (stride
    1, no dilation, groups or bias, equal zero padding, as LeNet's are) of a one-channel fp32 input
    on CPU that needs a weight gradient."""
    plain = (
        layer.stride == (1, 1)
        and layer.dilation == (1, 1)
        and layer.groups == 1
        and layer.bias is None
        and layer.padding_mode == "zeros"
        and isinstance(layer.padding, tuple)
        and layer.padding[0] == layer.padding[1]
    )
    fast = (
        plain
        and x.shape[1] == 1
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and layer.weight.requires_grad
        and torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
    )
    if not fast:
        return layer(x)
    return SingleChannelConv.apply(x, layer.weight, layer.padding[0])


@ENCODERS.register("lenet")
class LeNet(nn.Module):
    """LeNet of MultiBench: ``channels * 2**additional_layers`` outputs.

    Args:
        in_channels: Input channels.
        channels: Channels of the first conv.
        additional_layers: 3x3 conv blocks after the first (3 for 28 px, 5 for 112 px).
        channels_last: Run in channels-last memory format (slower on CPU here, see above).
    """

    modality = "image"

    def __init__(
        self, in_channels: int = 1, channels: int = 6, additional_layers: int = 3, channels_last: bool = False
    ) -> None:
        super().__init__()
        widths = [in_channels] + [channels * 2**i for i in range(additional_layers + 1)]
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, 5 if i == 0 else 3, padding=2 if i == 0 else 1, bias=False)
            for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:], strict=True))
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for c in widths[1:])
        self.output_dim = widths[-1]
        self.channels_last = channels_last
        for conv in self.convs:
            nn.init.kaiming_uniform_(conv.weight)  # type: ignore[arg-type]

    @property
    def token_dim(self) -> int:
        return self.output_dim

    def feature_maps(self, x: Tensor) -> Tensor:
        out = as_float_image(x)  # [B, C, H, W]
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        for layer, bn in zip(self.convs, self.bns, strict=True):
            out = bn(_conv(cast(nn.Conv2d, layer), out))
            if min(out.shape[-2:]) >= 2:
                out = F.max_pool2d(out, 2)  # halves H and W
            # ReLU after the pool: max-pool and ReLU commute exactly (values and gradients), and
            # ReLU then touches 4x fewer elements than in MultiBench's conv-BN-ReLU-pool order.
            out = F.relu(out)
        return out  # [B, output_dim, h, w]; 1x1 at MultiBench's sizes

    def forward(self, x: Tensor) -> Tensor:
        return self.feature_maps(x).mean(dim=(2, 3))  # [B, output_dim]

    def forward_tokens(self, x: Tensor) -> tuple[Tensor, Tensor]:
        tokens = self.feature_maps(x).flatten(2).transpose(1, 2)  # [B, h*w, output_dim]
        return tokens, tokens.new_ones(tokens.shape[:2], dtype=torch.bool)
