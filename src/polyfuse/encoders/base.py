"""The encoder contract.

An encoder maps one modality's batch tensors to one embedding per row::

    forward(x) -> Tensor[B, output_dim]

It has an ``output_dim`` attribute and a class attribute ``modality`` naming the kind of input it
takes ("image", "audio", "text", "tabular"). Encoders that can emit a token sequence also
implement ``forward_tokens(x) -> (Tensor[B, T, D], Tensor[B, T] bool valid)``; token-level fusions
(cross-attention) use it when present.

Constructors take keyword arguments only, from one shared vocabulary: what the processor reports
(``in_channels``, ``image_size``, ``n_mels``, ``num_frames``, ``sample_rate``, ``vocab_size``,
``max_length``, ``pad_id``, ``num_numeric``, ``cardinalities``) plus the user's choices
(``output_dim``, ``hidden_dim``, ``dropout``, ``pretrained``, ...). ``build_encoder`` passes each
constructor only the arguments it names, so encoders need not swallow ``**kwargs``.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol

from torch import Tensor, nn

from polyfuse.data.batch import Inputs
from polyfuse.registry import ENCODERS


class Encoder(Protocol):
    modality: str
    output_dim: int

    def __call__(self, x: Inputs) -> Tensor: ...


def build_encoder(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered encoder from the union of processor facts and user parameters."""
    cls = ENCODERS.get(name)
    accepted = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    chosen = {k: v for k, v in kwargs.items() if takes_any or k in accepted}
    return cls(**chosen)  # type: ignore[no-any-return]


def encoders_for(modality: str) -> list[str]:
    """Names of the registered encoders that accept this kind of modality."""
    return [name for name in ENCODERS.names() if ENCODERS.get(name).modality == modality]
