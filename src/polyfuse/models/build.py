"""From configs (data) to a built MultimodalModel."""

from __future__ import annotations

from typing import Any, Protocol

from torch import nn

from polyfuse.config import ModelConfig
from polyfuse.models.multimodal import MultimodalModel, has_tokens


class KnowsInputs(Protocol):
    def encoder_kwargs(self, modality: str) -> dict[str, Any]: ...


def fusion_input_dim(encoder: nn.Module, wants_tokens: bool) -> int:
    """What the fusion receives from ``encoder``: its ``token_dim`` for a token-level fusion (when it
    has ``forward_tokens``), else its ``output_dim``."""
    if wants_tokens and has_tokens(encoder):
        return int(encoder.token_dim)  # type: ignore[arg-type]
    return int(encoder.output_dim)  # type: ignore[arg-type]


def encoder_arguments(modality: str, facts: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The data's facts (``in_channels``, ``vocab_size`` ...) and the user's parameters for one encoder.

    A parameter may repeat a fact (e.g. ``in_channels=1`` for grey images) but not contradict it: the
    encoder would not fit its inputs.
    """
    clash = {k: (params[k], facts[k]) for k in facts.keys() & params.keys() if params[k] != facts[k]}
    if clash:
        said = ", ".join(
            f"{k}={mine!r} (the data gives {theirs!r})" for k, (mine, theirs) in sorted(clash.items())
        )
        raise ValueError(f"encoder parameters of {modality!r} contradict its inputs: {said}")
    return {**facts, **params}


def build_model(config: ModelConfig, inputs: KnowsInputs) -> MultimodalModel:
    """Build encoders, fusion and heads named in ``config``; ``inputs`` reports tensor facts.

    An ensemble's config (``config.members``) builds each member and assembles them
    (``polyfuse.models.ensemble``).
    """
    if config.members:
        from polyfuse.models.ensemble import assemble

        models = [build_model(member.model, inputs) for member in config.members]
        return assemble(config.members, models, config.heads)
    import polyfuse.encoders  # noqa: F401  (registers the encoders)
    import polyfuse.fusions  # noqa: F401
    import polyfuse.heads  # noqa: F401
    from polyfuse.encoders.base import build_encoder
    from polyfuse.registry import FUSIONS, HEADS

    encoders = {
        name: build_encoder(
            cfg.name, **encoder_arguments(name, inputs.encoder_kwargs(name), cfg.params), freeze=cfg.freeze
        )
        for name, cfg in config.encoders.items()
    }
    wants_tokens = bool(getattr(FUSIONS.get(config.fusion.name), "wants_tokens", False))
    in_dims = {name: fusion_input_dim(enc, wants_tokens) for name, enc in encoders.items()}
    fusion = FUSIONS.build(config.fusion.name, in_dims=in_dims, **config.fusion.params)
    if config.fusion.gates:
        from polyfuse.fusions.gates import GatedFusion

        fusion = GatedFusion(fusion, in_dims)
    heads = {
        h.label: HEADS.build(h.task, in_dim=fusion.output_dim, num_outputs=h.num_outputs, **h.params)
        for h in config.heads
    }
    return MultimodalModel(encoders, fusion, heads)
