"""Typed configs. Every config is plain data that round-trips through JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")

TASKS = ("multiclass", "binary", "multilabel", "regression")


@dataclass
class InputSpec:
    """One model input: a modality fed by one or more table columns."""

    name: str  # key in batches, embeddings and masks ("image", "text", "tabular", ...)
    kind: str  # a registered modality (MODALITIES): image, audio, text, tabular ...
    columns: list[str]  # table columns feeding it (tabular groups several, others take one)


@dataclass
class LabelSpec:
    """One target column and the task it defines."""

    column: str
    task: str  # one of TASKS
    classes: list[Any] = field(default_factory=list)  # class values in index order (not regression)


@dataclass
class Schema:
    """What each column of a table is for."""

    inputs: list[InputSpec]
    labels: list[LabelSpec]
    split_column: str | None = None  # column holding train/val/test, if the user gave one
    ignored: list[str] = field(default_factory=list)  # columns no role was found for
    roles: dict[str, str] = field(default_factory=dict)  # column -> role (numeric, categorical, ...)

    @property
    def modalities(self) -> list[str]:
        return [spec.name for spec in self.inputs]


@dataclass
class EncoderConfig:
    """Which registered encoder a modality uses, with its keyword arguments."""

    name: str  # key in ENCODERS
    params: dict[str, Any] = field(default_factory=dict)  # output_dim, hidden_dim, dropout, ...
    freeze: bool = False  # keep pretrained weights fixed (their outputs are then cached in training)


@dataclass
class FusionConfig:
    name: str = "concat"  # key in FUSIONS
    params: dict[str, Any] = field(default_factory=dict)  # output_dim, hidden_dim, dropout, ...


@dataclass
class HeadConfig:
    label: str  # label column the head predicts
    task: str  # one of TASKS
    num_outputs: int  # classes (1 for binary and regression)
    params: dict[str, Any] = field(default_factory=dict)  # hidden_dim, dropout


@dataclass
class ModelConfig:
    encoders: dict[str, EncoderConfig]  # modality name -> encoder
    fusion: FusionConfig
    heads: list[HeadConfig]


@dataclass
class TrainConfig:
    max_epochs: int = 30  # upper bound; early stopping usually ends sooner
    batch_size: int = 64
    eval_batch_size: int | None = None  # validation batches; None: min(512, 4 x batch_size)
    lr: float = 2e-3  # learning rate
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # "adamw", "adam", "sgd" (plain) or "sgd_momentum" (0.9, Nesterov)
    scheduler: str = "cosine"  # "cosine" (annealed over max_epochs) or "none" (constant)
    patience: int = 6  # epochs without validation improvement before stopping
    seed: int = 0
    precision: str = "32-true"  # Lightning precision string, e.g. "bf16-mixed"
    accelerator: str = "auto"  # "cpu", "gpu" or "auto"
    modality_dropout: float = 0.0  # chance of masking each present modality in a training row
    grad_clip_norm: float | None = None  # scale gradients to at most this global L2 norm (None: off)
    fit_modality_weights: bool = False  # late fusion: fit its modality weights on validation after training
    val_fraction: float = 0.15  # used when the table has no split column
    test_fraction: float = 0.15
    baselines: bool = True  # also train one single-modality model per modality
    time_limit_s: float | None = None  # wall-clock cap per model (None: no cap)
    progress: bool = True  # show Lightning's progress bar


def to_dict(cfg: Any) -> Any:
    """Dataclass (possibly nested) -> JSON-ready dict."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Rebuild a (nested) config dataclass from ``to_dict`` output."""
    hints = {f.name: f.type for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name not in hints:
            continue
        kwargs[name] = _convert(hints[name], value)
    return cls(**kwargs)


_NESTED: dict[str, Any] = {}


def _convert(hint: Any, value: Any) -> Any:
    # Annotations are strings (postponed evaluation); nested configs are recognised by name.
    hint = str(hint)
    for name, cls in _NESTED.items():
        if hint == name:
            return from_dict(cls, value)
        if hint == f"list[{name}]":
            return [from_dict(cls, v) for v in value]
        if hint == f"dict[str, {name}]":
            return {k: from_dict(cls, v) for k, v in value.items()}
    return value


_NESTED.update(
    {
        c.__name__: c
        for c in (InputSpec, LabelSpec, Schema, EncoderConfig, FusionConfig, HeadConfig)
        + (ModelConfig, TrainConfig)
    }
)


def save_json(obj: Any, path: str | Path) -> None:
    data = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    Path(path).write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def load_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def plain(value: Any) -> Any:
    """A numpy / torch scalar as the Python number it holds; anything else unchanged."""
    return value.item() if hasattr(value, "item") else value


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return plain(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
