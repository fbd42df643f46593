"""What every saved directory of encoders shares (a pre-trained model, a text generator): reading its
``config.json``, processors and encoders, and loading the weights into the model built from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from polyfuse.config import EncoderConfig, FusionConfig, ModelConfig, from_dict, load_json, save_json, to_dict
from polyfuse.data.preprocess import Preprocessor
from polyfuse.errors import PolyfuseError
from polyfuse.formats import read_versioned
from polyfuse.models.build import build_model


@dataclass
class SavedParts:
    config: dict[str, Any]  # config.json
    pre: Preprocessor
    encoders: dict[str, EncoderConfig]
    built: dict[str, nn.Module]  # the encoders, built (weights still initial)
    metrics: dict[str, Any]  # metrics.json, {} when absent


def read_parts(folder: Path, supported: int, kind: str, what: str) -> SavedParts:
    """The parts of a directory of ``kind`` (config.json's "kind"; ``what`` names it in messages, e.g.
    "a pre-trained model (polyfuse pretrain)"), its format checked against ``supported``."""
    if not (folder / "config.json").is_file():
        raise PolyfuseError(f"{folder} is not {what}: no config.json")
    config = read_versioned(folder / "config.json", supported)
    if config.get("kind") != kind:
        raise PolyfuseError(f"{folder} is not {what}: it holds a {config.get('kind', 'fitted')} model")
    pre = Preprocessor.from_state(load_json(folder / "preprocessor.json"))
    encoders = {m: from_dict(EncoderConfig, e) for m, e in config["encoders"].items()}
    built = dict(build_model(ModelConfig(encoders, FusionConfig(), []), pre).encoders)
    metrics = load_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else {}
    return SavedParts(config, pre, encoders, built, metrics)


def load_weights(model: nn.Module, folder: Path) -> None:
    """``folder/model.safetensors`` into ``model``, then evaluation mode."""
    from safetensors.torch import load_model

    load_model(model, str(folder / "model.safetensors"))
    model.eval()


def write_parts(
    out: Path,
    head: dict[str, Any],
    encoders: dict[str, EncoderConfig],
    rest: dict[str, Any],
    pre: Preprocessor,
    model: nn.Module,
    metrics: dict[str, Any],
) -> Path:
    """The inverse of ``read_parts``: config.json (``head``: format and kind first, then the
    polyfuse version, the encoders and ``rest``), preprocessor.json, model.safetensors, metrics.json."""
    from safetensors.torch import save_model

    from polyfuse import __version__

    out.mkdir(parents=True, exist_ok=True)
    encoded = {m: to_dict(e) for m, e in encoders.items()}
    save_json({**head, "polyfuse_version": __version__, "encoders": encoded, **rest}, out / "config.json")
    save_json(pre.state(), out / "preprocessor.json")
    save_model(model, str(out / "model.safetensors"))
    save_json(metrics, out / "metrics.json")
    return out
