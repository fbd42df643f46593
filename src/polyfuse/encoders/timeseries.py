"""Time-series encoders: a small InceptionTime-style 1-D CNN, a bidirectional GRU, a patch
transformer in the PatchTST style and MiniRocket features under a linear layer.

Input: the timeseries processor's ``{"values": [B, C, L], "valid": bool [B, L]}`` (a bare tensor
[B, C, L] counts as all valid). Invalid steps (padding, NaN) are zeroed at the input and left out
of the pooling, so a series padded to the learnt length embeds as it would unpadded, up to the
convolutions' view across its end.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyfuse.data.batch import Inputs
from polyfuse.registry import ENCODERS

MAX_TOKENS = 64  # longest token sequence ``forward_tokens`` emits (steps are average-pooled down to it)


def unpack(x: Inputs) -> tuple[Tensor, Tensor]:
    """The processor's dict (or a bare [B, C, L] tensor, all valid) -> (values with invalid steps
    zeroed [B, C, L], valid [B, L])."""
    if isinstance(x, dict):
        values, valid = x["values"].float(), x["valid"].bool()
    else:
        values = x.float()
        valid = torch.ones(values.shape[0], values.shape[-1], dtype=torch.bool, device=values.device)
    return values * valid[:, None, :], valid


def pool_tokens(h: Tensor, valid: Tensor, limit: int = MAX_TOKENS) -> tuple[Tensor, Tensor]:
    """Features [B, D, L] -> at most ``limit`` tokens [B, T', D], each the mean of a window of valid
    steps, and their validity [B, T'] (a window with no valid step is invalid and holds zeros)."""
    window = -(-h.shape[-1] // limit)  # ceil
    weight = valid[:, None, :].float()
    if window > 1:
        summed = F.avg_pool1d(h * weight, window, ceil_mode=True)
        counts = F.avg_pool1d(weight, window, ceil_mode=True)
        h, weight = summed / counts.clamp_min(1e-6), counts
    return (h * (weight > 0)).transpose(1, 2), weight[:, 0] > 0


def masked_mean(h: Tensor, valid: Tensor) -> Tensor:
    """Features [B, D, L] -> their mean over the valid steps [B, D] (0 for a row with none)."""
    weight = valid[:, None, :].float()
    return (h * weight).sum(dim=-1) / weight.sum(dim=-1).clamp_min(1.0)


class _Inception(nn.Module):
    """Bottleneck 1x1 conv, parallel convs of three kernel sizes and a max-pool branch, BN + ReLU."""

    def __init__(self, in_ch: int, filters: int, kernels: tuple[int, ...], bottleneck: int) -> None:
        super().__init__()
        self.bottleneck = nn.Conv1d(in_ch, bottleneck, 1, bias=False) if in_ch > 1 else nn.Identity()
        width = bottleneck if in_ch > 1 else in_ch
        self.convs = nn.ModuleList(nn.Conv1d(width, filters, k, padding=k // 2, bias=False) for k in kernels)
        self.pool_conv = nn.Conv1d(in_ch, filters, 1, bias=False)
        self.bn = nn.BatchNorm1d(filters * (len(kernels) + 1))

    def forward(self, x: Tensor) -> Tensor:
        z = self.bottleneck(x)  # [B, bottleneck, L]
        branches = [conv(z) for conv in self.convs]
        branches.append(self.pool_conv(F.max_pool1d(x, 3, stride=1, padding=1)))
        return F.relu(self.bn(torch.cat(branches, dim=1)))  # [B, filters * 4, L]


@ENCODERS.register("ts_cnn")
class InceptionTimeEncoder(nn.Module):
    """InceptionTime (Ismail Fawaz et al., 2020, "InceptionTime: Finding AlexNet for Time Series
    Classification"), one network and smaller: ``depth`` inception modules with a residual shortcut
    every three, global average pooling over the valid steps only, then a projection.

    The paper uses kernels (10, 20, 40), 32 filters and depth 6 in an ensemble of five; odd kernels
    (9, 19, 39) keep the length under "same" padding, and 8 filters with depth 3 keep it quick on a
    CPU (a training step on 32 series of 60 steps: ~0.1 s on 2 busy cores, against ~0.25 s with 16).

    Args:
        in_channels: Channels of the series.
        output_dim: Embedding size.
        filters: Filters per branch (a module outputs 4x as many channels).
        depth: Inception modules.
        kernels: Kernel sizes of the parallel convolutions.
        bottleneck: Channels of the 1x1 bottleneck.
        dropout: Dropout before the projection.
    """

    modality = "timeseries"

    def __init__(
        self,
        in_channels: int = 1,
        output_dim: int = 128,
        filters: int = 8,
        depth: int = 3,
        kernels: tuple[int, ...] = (9, 19, 39),
        bottleneck: int = 8,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.output_dim = output_dim
        width = filters * (len(kernels) + 1)
        self.blocks = nn.ModuleList()
        self.shortcuts = nn.ModuleDict()
        ch, res_ch = in_channels, in_channels
        for i in range(depth):
            self.blocks.append(_Inception(ch, filters, tuple(kernels), bottleneck))
            ch = width
            if i % 3 == 2:  # residual from the input of the last three modules
                self.shortcuts[str(i)] = nn.Sequential(
                    nn.Conv1d(res_ch, width, 1, bias=False), nn.BatchNorm1d(width)
                )
                res_ch = width
        self.token_dim = width
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(width, output_dim)

    def _feature_map(self, x: Inputs) -> tuple[Tensor, Tensor]:
        """x -> (features [B, D, L], valid [B, L])."""
        h, valid = unpack(x)  # invalid steps hold zeros  [B, C, L]
        residual = h
        for i, block in enumerate(self.blocks):
            h = block(h)
            if str(i) in self.shortcuts:
                h = F.relu(h + self.shortcuts[str(i)](residual))
                residual = h
        return h, valid

    def forward_tokens(self, x: Inputs) -> tuple[Tensor, Tensor]:
        """One token per window of steps (at most ``MAX_TOKENS``), valid where any step in it is."""
        return pool_tokens(*self._feature_map(x))

    def forward(self, x: Inputs) -> Tensor:
        pooled = masked_mean(*self._feature_map(x))  # [B, D]; absent rows: 0
        return self.proj(self.dropout(pooled))  # type: ignore[no-any-return]  # [B, output_dim]


def _patch_stem(in_channels: int, width: int, patch: int) -> nn.Module:
    """A strided convolution that embeds each patch of ``patch`` steps (kernel = stride), reading the
    validity mask as one more channel."""
    return nn.Conv1d(in_channels + 1, width, patch, stride=patch)


def _patches(stem: nn.Module, x: Inputs, patch: int) -> tuple[Tensor, Tensor]:
    """x -> (one embedding per patch [B, D, ceil(L / patch)], patch validity: any valid step in it).
    The series is padded (invalid) to a whole number of patches, so its last steps are kept."""
    values, valid = unpack(x)
    extra = -values.shape[-1] % patch
    if extra:
        values, valid = F.pad(values, (0, extra)), F.pad(valid, (0, extra), value=False)
    z = stem(torch.cat([values, valid[:, None, :].float()], dim=1))
    if patch > 1:
        valid = F.max_pool1d(valid[:, None, :].float(), patch, stride=patch)[:, 0] > 0
    return z, valid


@ENCODERS.register("ts_gru")
class GRUEncoder(nn.Module):
    """A bidirectional GRU over patches of the series (Cho et al., 2014; the recurrent baseline of
    time-series classification).

    A strided convolution first cuts the series into at most ``max_steps`` patches (a recurrence
    over a thousand steps is slow on a CPU and forgets its start); the validity mask rides along as
    one more input channel, so a gap or padding is seen as such. The embedding is the mean of the
    GRU's outputs over the valid patches with the last hidden state of each direction; the tokens
    are its outputs.

    Args:
        in_channels: Channels of the series.
        num_steps: Steps of a series (the processor's learnt length).
        output_dim: Embedding size.
        hidden: GRU units per direction.
        layers: Stacked GRU layers.
        max_steps: Most patches the GRU runs over.
        dropout: Dropout before the projection.
    """

    modality = "timeseries"

    def __init__(
        self,
        in_channels: int = 1,
        num_steps: int = 128,
        output_dim: int = 128,
        hidden: int = 64,
        layers: int = 1,
        max_steps: int = 64,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.patch = max(1, -(-num_steps // max_steps))
        self.stem = _patch_stem(in_channels, hidden, self.patch)
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.token_dim = 2 * hidden
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(4 * hidden, output_dim)

    def _run(self, x: Inputs) -> tuple[Tensor, Tensor, Tensor]:
        """x -> (outputs [B, P, 2H], patch validity [B, P], last states [B, 2H])."""
        z, valid = _patches(self.stem, x, self.patch)  # [B, H, P], [B, P]
        out, last = self.gru(F.gelu(z).transpose(1, 2))  # [B, P, 2H], [layers * 2, B, H]
        return out, valid, torch.cat([last[-2], last[-1]], dim=-1)

    def forward_tokens(self, x: Inputs) -> tuple[Tensor, Tensor]:
        out, valid, _ = self._run(x)
        return pool_tokens(out.transpose(1, 2), valid)

    def forward(self, x: Inputs) -> Tensor:
        out, valid, last = self._run(x)
        pooled = masked_mean(out.transpose(1, 2), valid)  # [B, 2H]
        return self.proj(self.dropout(torch.cat([pooled, last], dim=-1)))  # type: ignore[no-any-return]


@ENCODERS.register("ts_patch")
class PatchTransformerEncoder(nn.Module):
    """A patch transformer in the style of PatchTST (Nie et al., ICLR 2023, "A Time Series is Worth
    64 Words"): the series is cut into patches, each patch is one token, a transformer encoder reads
    the tokens with learnt positions.

    PatchTST embeds each channel on its own ("channel independence") for forecasting; for
    classifying a handful of channels the patches here embed all channels together, so a token sees
    how the axes move with each other and the sequence stays one per series. Padding and gaps are
    masked out of the attention (a patch with no valid step is a padding token) and of the pooling.
    Patches of 8 steps, not the paper's 16: classified series are often short (a planted 12-step
    motif in 40-60 steps: 0.875 test accuracy with 16, above 0.9 with 8 in the motif test).

    Args:
        in_channels: Channels of the series.
        num_steps: Steps of a series (the processor's learnt length).
        output_dim: Embedding size.
        d_model: Token width.
        heads: Attention heads.
        layers: Transformer layers.
        patch: Steps per patch (more when a series would give more than ``max_tokens`` patches).
        max_tokens: Most patches.
        dropout: Dropout in the transformer and before the projection.
    """

    modality = "timeseries"

    def __init__(
        self,
        in_channels: int = 1,
        num_steps: int = 128,
        output_dim: int = 128,
        d_model: int = 64,
        heads: int = 4,
        layers: int = 2,
        patch: int = 8,
        max_tokens: int = MAX_TOKENS,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.patch = max(patch, -(-num_steps // max_tokens))
        self.stem = _patch_stem(in_channels, d_model, self.patch)
        self.position = nn.Parameter(torch.zeros(1, -(-num_steps // self.patch), d_model))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, 2 * d_model, dropout, batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.token_dim = d_model
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(d_model, output_dim)

    def _run(self, x: Inputs) -> tuple[Tensor, Tensor]:
        """x -> (tokens [B, P, D], validity [B, P])."""
        z, keep = _patches(self.stem, x, self.patch)
        tokens = z.transpose(1, 2)  # [B, P, D]
        if tokens.shape[1] > self.position.shape[1]:
            raise ValueError(
                f"{tokens.shape[1]} patches; this encoder was built for {self.position.shape[1]}"
            )
        tokens = tokens + self.position[:, : tokens.shape[1]]
        pad = ~keep & keep.any(
            dim=1, keepdim=True
        )  # a row with no valid patch attends to all (then pooled to 0)
        return self.norm(self.transformer(tokens, src_key_padding_mask=pad)), keep

    def forward_tokens(self, x: Inputs) -> tuple[Tensor, Tensor]:
        tokens, keep = self._run(x)
        return tokens * keep[..., None], keep

    def forward(self, x: Inputs) -> Tensor:
        tokens, keep = self._run(x)
        pooled = masked_mean(tokens.transpose(1, 2), keep)  # [B, D]
        return self.proj(self.dropout(pooled))  # type: ignore[no-any-return]  # [B, output_dim]


def _minirocket_kernels() -> Tensor:
    """MiniRocket's 84 kernels: length 9, weight -1 everywhere but 2 at three of the nine places."""
    from itertools import combinations

    kernels = torch.full((84, 1, 9), -1.0)
    for k, places in enumerate(combinations(range(9), 3)):
        kernels[k, 0, list(places)] = 2.0
    return kernels


@ENCODERS.register("ts_minirocket")
class MiniRocketEncoder(nn.Module):
    """MiniRocket features (Dempster, Schmidt & Webb, KDD 2021) with a trainable linear layer on top.

    The transform is fixed: MiniRocket's 84 kernels at ``dilations`` exponentially spaced dilations,
    each reading the sum of a random subset of the channels (as the paper's multivariate version),
    and ``quantiles`` biases per kernel and dilation taken from quantiles of its output on the first
    training batch (MiniRocket draws them from training examples the same way; they are buffers,
    saved with the model). Each feature is a proportion of positive values (PPV) over the valid
    steps, standardised with the first batch's mean and deviation. Only the projection to
    ``output_dim`` learns (the paper fits a ridge classifier on standardised features): a frozen,
    cheap transform, strong on small training sets.

    The paper's 9,996 features come from up to 32 dilations and more biases; 84 x 6 x 2 = 1,008 by
    default here, in one implementation in torch (no numba, no sktime).

    Args:
        in_channels: Channels of the series.
        num_steps: Steps of a series (the largest dilation keeps the kernel inside it).
        output_dim: Embedding size.
        dilations: Dilations, from 1 to (num_steps - 1) / 8, exponentially spaced.
        quantiles: Biases per kernel and dilation.
        seed: Seeds the channel subsets and the quantile levels.
    """

    modality = "timeseries"

    def __init__(
        self,
        in_channels: int = 1,
        num_steps: int = 128,
        output_dim: int = 128,
        dilations: int = 6,
        quantiles: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.output_dim = output_dim
        largest = max(1.0, (num_steps - 1) / 8)
        self.dilations = sorted({int(d) for d in torch.logspace(0, math.log2(largest), dilations, base=2)})
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("kernels", _minirocket_kernels(), persistent=False)
        masks = torch.zeros(len(self.dilations), 84, in_channels)  # which channels each kernel reads
        for d in range(len(self.dilations)):
            for k in range(84):
                size = int(torch.randint(1, min(in_channels, 9) + 1, (1,), generator=gen))
                masks[d, k, torch.randperm(in_channels, generator=gen)[:size]] = 1.0
        self.register_buffer("channel_masks", masks, persistent=False)
        golden = (torch.arange(1, quantiles + 1) * ((math.sqrt(5) + 1) / 2)) % 1  # low-discrepancy levels
        self.register_buffer("levels", golden, persistent=False)
        self.register_buffer("biases", torch.zeros(len(self.dilations), 84, quantiles))
        self.fitted = False  # True once the biases come from data (the first batch, or a loaded model)
        self.token_dim = output_dim
        features = len(self.dilations) * 84 * quantiles
        # PPVs vary by a few hundredths: standardised with the first batch's statistics, as for ridge
        # (a batch norm's running statistics lag far behind on a few batches per epoch)
        self.register_buffer("feature_mean", torch.zeros(features))
        self.register_buffer("feature_std", torch.ones(features))
        self.proj = nn.Linear(features, output_dim)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        self.fitted = self.fitted or prefix + "biases" in state_dict

    def _responses(self, values: Tensor, d: int) -> Tensor:
        """Each kernel at dilation index ``d`` on its channel subset: [B, 84, L] ("same" padding)."""
        b, c, length = values.shape
        dilation = self.dilations[d]
        kernels, masks = self.get_buffer("kernels"), self.get_buffer("channel_masks")
        conv = F.conv1d(values.reshape(b * c, 1, length), kernels, padding=4 * dilation, dilation=dilation)
        return torch.einsum("bckl,kc->bkl", conv.reshape(b, c, 84, length), masks[d])

    def _fit_biases(self, values: Tensor, valid: Tensor) -> None:
        biases, levels = self.get_buffer("biases"), self.get_buffer("levels")
        for d in range(len(self.dilations)):
            response = self._responses(values, d).transpose(0, 1)[:, valid]  # [84, valid steps]
            if response.shape[1] > 0:
                biases[d] = torch.quantile(response, levels, dim=1).T
        ppv = masked_mean(*self._indicators_with(values, valid))
        self.get_buffer("feature_mean").copy_(ppv.mean(dim=0))
        self.get_buffer("feature_std").copy_(ppv.std(dim=0, correction=0).clamp_min(0.01))
        self.fitted = True

    def _indicators(self, x: Inputs) -> tuple[Tensor, Tensor]:
        """x -> (positive-value indicators [B, F, L], valid [B, L])."""
        values, valid = unpack(x)
        if self.training and not self.fitted:  # the first training batch (not a sanity or shape check)
            with torch.no_grad():
                self._fit_biases(values, valid)
        return self._indicators_with(values, valid)

    def _indicators_with(self, values: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        biases = self.get_buffer("biases")
        parts = [
            (self._responses(values, d)[:, :, None, :] > biases[d][None, :, :, None]).flatten(1, 2)
            for d in range(len(self.dilations))
        ]
        return torch.cat(parts, dim=1).float(), valid  # [B, D * 84 * Q, L]

    def forward_tokens(self, x: Inputs) -> tuple[Tensor, Tensor]:
        tokens, valid = pool_tokens(*self._indicators(x))  # windowed PPV [B, T', F]
        return self.proj(self._standard(tokens)) * valid[..., None], valid

    def forward(self, x: Inputs) -> Tensor:
        return self.proj(self._standard(masked_mean(*self._indicators(x))))  # type: ignore[no-any-return]

    def _standard(self, ppv: Tensor) -> Tensor:
        return (ppv - self.get_buffer("feature_mean")) / self.get_buffer("feature_std")
