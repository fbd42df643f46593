"""Flat tensors in, logits out: the layout an exported model is called with.

An ONNX graph takes a flat list of named arrays, while a ``Batch`` holds nested dicts (a modality's
input may be a dict of tensors, e.g. tabular numbers + categories). The layout names every array
once: ``<modality>`` or ``<modality>.<key>`` for inputs, ``mask.<modality>`` for presence masks and
``logits.<label>`` for outputs, in an order fixed at export time and recorded in the sidecar.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from torch import Tensor, nn

from polyfuse.data.batch import Batch, EncodedTable, Inputs
from polyfuse.errors import PolyfuseError
from polyfuse.models.multimodal import MultimodalModel

BATCH_AXIS = "batch"  # the name of the dynamic axis 0 of every input and output


@dataclass
class InputInfo:
    """One array of the exported graph's inputs."""

    name: str  # graph input name: "<modality>", "<modality>.<key>" or "mask.<modality>"
    modality: str
    key: str | None  # the key inside a dict input; None for a plain tensor (and for masks)
    kind: str  # "input" or "mask"
    dtype: str  # numpy dtype name: "float32", "uint8", "int64", "bool"
    shape: list[int | str]  # BATCH_AXIS where the axis is dynamic, else the fixed size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def input_layout(table: EncodedTable | Batch, modalities: list[str]) -> list[InputInfo]:
    """Inputs of every modality (in the model's order), then their masks.

    Only the batch axis is dynamic: the preprocessor pads text to its ``max_length`` and resizes
    images and audio to fixed sizes, so every other axis is fixed by the saved model's options.
    """
    layout = []
    for modality in modalities:
        value = table.inputs[modality]
        parts = value.items() if isinstance(value, dict) else [(None, value)]
        for key, tensor in parts:
            name = modality if key is None else f"{modality}.{key}"
            layout.append(InputInfo(name, modality, key, "input", _dtype(tensor), _shape(tensor)))
    for modality in modalities:
        mask = table.mask[modality]
        layout.append(InputInfo(f"mask.{modality}", modality, None, "mask", "bool", _shape(mask)))
    names = [info.name for info in layout]
    if len(set(names)) != len(names):
        raise PolyfuseError(f"modality names give clashing ONNX input names: {names}")
    return layout


def _dtype(tensor: Tensor) -> str:
    return str(tensor[:0].detach().cpu().numpy().dtype)  # "float32", "uint8", "int64", "bool"


def _shape(tensor: Tensor) -> list[int | str]:
    return [BATCH_AXIS, *tensor.shape[1:]]


def output_names(labels: list[str]) -> list[str]:
    return [f"logits.{label}" for label in labels]


def flat_tensors(batch: Batch, layout: list[InputInfo]) -> tuple[Tensor, ...]:
    """The batch's tensors in layout order (what the wrapper and the graph take)."""
    return tuple(_pick(batch, info) for info in layout)


def _pick(batch: Batch, info: InputInfo) -> Tensor:
    if info.kind == "mask":
        return batch.mask[info.modality].bool()
    value = batch.inputs[info.modality]
    return value[info.key] if isinstance(value, dict) and info.key is not None else value  # type: ignore[return-value]


def feeds(batch: Batch, layout: list[InputInfo]) -> dict[str, np.ndarray]:
    """Input name -> numpy array for onnxruntime, cast to the exported dtype, fixed axes checked."""
    out = {}
    for info, tensor in zip(layout, flat_tensors(batch, layout), strict=True):
        if list(tensor.shape[1:]) != info.shape[1:]:
            raise PolyfuseError(
                f"input {info.name!r} has shape {list(tensor.shape)} but the exported model takes "
                f"{info.shape}: the preprocessor's options changed since `polyfuse export`, export again"
            )
        out[info.name] = tensor.detach().cpu().numpy().astype(info.dtype, copy=False)
    return out


class FlatModel(nn.Module):
    """A MultimodalModel called with flat tensors (layout order), returning logits in label order.

    This is the module that is exported: ONNX graphs take positional arrays, not a ``Batch``.
    """

    def __init__(self, model: MultimodalModel, layout: list[InputInfo], labels: list[str]) -> None:
        super().__init__()
        self.model = model
        self.layout = layout
        self.labels = labels

    def forward(self, *flat: Tensor) -> tuple[Tensor, ...]:
        inputs: dict[str, Inputs] = {}
        mask: dict[str, Tensor] = {}
        for info, tensor in zip(self.layout, flat, strict=True):
            if info.kind == "mask":
                mask[info.modality] = tensor
            elif info.key is None:
                inputs[info.modality] = tensor
            else:
                inputs.setdefault(info.modality, {})[info.key] = tensor  # type: ignore[index]
        logits = self.model(Batch(inputs, mask))
        return tuple(logits[label] for label in self.labels)  # each [B, K]
