"""From configs (data) to a built MultimodalModel."""

from __future__ import annotations

from typing import Any, Protocol

from polyfuse.config import ModelConfig
from polyfuse.models.multimodal import MultimodalModel


class KnowsInputs(Protocol):
    def encoder_kwargs(self, modality: str) -> dict[str, Any]: ...


def build_model(config: ModelConfig, inputs: KnowsInputs) -> MultimodalModel:
    """Build encoders, fusion and heads named in ``config``; ``inputs`` reports tensor facts."""
    import polyfuse.encoders  # noqa: F401  (registers the encoders)
    import polyfuse.fusions  # noqa: F401
    import polyfuse.heads  # noqa: F401
    from polyfuse.encoders.base import build_encoder
    from polyfuse.registry import FUSIONS, HEADS

    encoders = {
        name: build_encoder(cfg.name, **inputs.encoder_kwargs(name), **cfg.params, freeze=cfg.freeze)
        for name, cfg in config.encoders.items()
    }
    in_dims = {name: int(enc.output_dim) for name, enc in encoders.items()}  # type: ignore[arg-type]
    fusion = FUSIONS.build(config.fusion.name, in_dims=in_dims, **config.fusion.params)
    heads = {
        h.label: HEADS.build(h.task, in_dim=fusion.output_dim, num_outputs=h.num_outputs, **h.params)
        for h in config.heads
    }
    return MultimodalModel(encoders, fusion, heads)
