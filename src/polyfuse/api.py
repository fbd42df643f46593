"""The public Python API: ``fit`` a model on a table, ``load`` a saved one, and the Predictor."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from polyfuse import __version__
from polyfuse.config import (
    FusionConfig,
    ModelConfig,
    Schema,
    TrainConfig,
    from_dict,
    load_json,
    save_json,
    to_dict,
)
from polyfuse.data.batch import EncodedTable
from polyfuse.data.errors import DataError, PolyfuseError
from polyfuse.data.preprocess import Preprocessor
from polyfuse.data.table import read_table
from polyfuse.eval.evaluate import evaluate_table
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.reporting import Reporter

DEFAULT_DATASET = "digits-av"
FORMAT_VERSION = 1
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


class Predictor:
    """A trained model with everything needed to use it on new rows of the same kind of table."""

    def __init__(
        self,
        preprocessor: Preprocessor,
        model_config: ModelConfig,
        train_config: TrainConfig,
        model: MultimodalModel,
        metrics: dict[str, Any] | None = None,
    ):
        self.preprocessor = preprocessor
        self.model_config = model_config
        self.train_config = train_config
        self.model = model.eval()
        self.metrics: dict[str, Any] = metrics or {}

    @property
    def schema(self) -> Schema:
        return self.preprocessor.schema

    @property
    def labels(self) -> list[str]:
        return [spec.column for spec in self.schema.labels]

    def encode(
        self, data: Any, targets: bool = False, on_error: str = "raise"
    ) -> tuple[EncodedTable, list[DataError]]:
        """Rows of a table (path or DataFrame) -> tensors, with the bad rows dropped under ``skip``."""
        df, base_dir = _frame(data)
        return self.preprocessor.transform(df, base_dir, on_error=on_error, targets=targets)

    def outputs(self, table: EncodedTable, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Label -> probabilities [N, K] / [N] or values [N], in the table's row order."""
        from polyfuse.models.inference import predict_table

        return predict_table(self.model, table, batch_size)

    def predict(self, data: Any, on_error: str = "raise") -> pd.Series | pd.DataFrame:
        """Predicted label values; a Series for one label, a DataFrame (a column each) for several."""
        table, _ = self.encode(data, on_error=on_error)
        frame = self._labels(table, self.outputs(table))
        return frame[self.labels[0]] if len(self.labels) == 1 else frame

    def predict_proba(self, data: Any, label: str | None = None, on_error: str = "raise") -> pd.DataFrame:
        """Class probabilities of one classification label, a column per class value."""
        label = label or self.labels[0]
        spec = next(s for s in self.schema.labels if s.column == label)
        if spec.task == "regression":
            raise PolyfuseError(f"label {label!r} is a regression target: use predict()")
        table, _ = self.encode(data, on_error=on_error)
        return self._proba(table, self.outputs(table), label)

    def predictions(self, data: Any, on_error: str = "raise") -> pd.DataFrame:
        """Labels and, for classification labels, ``p_<label>_<class>`` probability columns.

        Decodes the table once (``predict`` + ``predict_proba`` would read every file again).
        """
        table, _ = self.encode(data, on_error=on_error)
        outputs = self.outputs(table)
        frame = self._labels(table, outputs)
        for spec in self.schema.labels:
            if spec.task in ("multiclass", "binary"):
                frame = frame.join(self._proba(table, outputs, spec.column).add_prefix(f"p_{spec.column}_"))
        return frame

    def _labels(self, table: EncodedTable, outputs: dict[str, torch.Tensor]) -> pd.DataFrame:
        return pd.DataFrame(self.preprocessor.decode_all(outputs), index=pd.Index(table.row_ids))

    def _proba(self, table: EncodedTable, outputs: dict[str, torch.Tensor], label: str) -> pd.DataFrame:
        spec = next(s for s in self.schema.labels if s.column == label)
        proba = outputs[label].numpy()
        if spec.task == "binary":
            proba = np.stack([1 - proba, proba], axis=1)
        return pd.DataFrame(proba, columns=list(spec.classes), index=pd.Index(table.row_ids))

    def evaluate(self, data: Any, on_error: str = "raise") -> dict[str, Any]:
        """Metrics of the first label on a labelled table (``by_label`` holds every label's)."""
        table, errors = self.encode(data, targets=True, on_error=on_error)
        result = evaluate_table(self.model, self.schema, table)
        result["skipped_rows"] = [str(e) for e in errors]
        return result

    def save(self, path: str | Path) -> Path:
        """Write the model directory: config.json, model.safetensors, preprocessor.json, metrics.json."""
        from safetensors.torch import save_model

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        config = {
            "format": FORMAT_VERSION,
            "polyfuse_version": __version__,
            "model": to_dict(self.model_config),
            "train": to_dict(self.train_config),
        }
        save_json(config, out / "config.json")
        save_json(self.preprocessor.state(), out / "preprocessor.json")
        save_model(self.model, str(out / "model.safetensors"))
        save_json(self.metrics, out / "metrics.json")
        return out

    def __repr__(self) -> str:
        fusion = self.model_config.fusion.name
        return f"Predictor(modalities={self.schema.modalities}, fusion={fusion!r}, labels={self.labels})"


def load(path: str | Path) -> Predictor:
    """Load a model directory written by ``Predictor.save`` (JSON + safetensors, no pickle)."""
    from safetensors.torch import load_model

    from polyfuse.models.build import build_model

    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise PolyfuseError(f"{folder} is not a polyfuse model directory (no config.json)")
    config = load_json(folder / "config.json")
    preprocessor = Preprocessor.from_state(load_json(folder / "preprocessor.json"))
    model_config = from_dict(ModelConfig, config["model"])
    model = build_model(model_config, preprocessor)
    load_model(model, str(folder / "model.safetensors"))
    metrics = load_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else {}
    return Predictor(preprocessor, model_config, from_dict(TrainConfig, config["train"]), model, metrics)


def fit(
    data: Any = None,
    label: str | list[str] | None = None,
    *,
    out: str | Path | None = None,
    roles: dict[str, str] | None = None,
    split_column: str | None = None,
    fusion: str = "concat",
    fusion_params: dict[str, Any] | None = None,
    encoders: dict[str, str] | None = None,
    encoder_params: dict[str, dict[str, Any]] | None = None,
    freeze: dict[str, bool] | None = None,
    processor_options: dict[str, dict[str, Any]] | None = None,
    on_error: str = "raise",
    verbose: bool = True,
    **train_options: Any,
) -> Predictor:
    """Train a multimodal model on a table and evaluate it on its test split.

    Args:
        data: CSV / Parquet / JSONL path or DataFrame; ``None`` uses the built-in ``digits-av``.
        label: Label column(s); one head is trained per label.
        out: Save the model directory here (with ``logs/metrics.csv``).
        roles: Column -> role ("text", "image", "audio", "numeric", "categorical", "ignore"),
            overriding inference.
        split_column: Column with train / val / test values; default: a seeded stratified split.
        fusion: Registered fusion name (``list_fusions()``).
        fusion_params: Keyword options of the fusion (``output_dim``, ``hidden_dim``, ...).
        encoders: Modality -> registered encoder name; default: its modality's ``default_encoder``.
        encoder_params: Modality -> encoder keyword options (``output_dim``, ``pretrained``, ...).
        freeze: Modality -> keep pretrained encoder weights fixed.
        processor_options: Modality -> processor options (``image_size``, ``duration``, ...).
        on_error: "raise" stops at the first bad cell; "skip" drops bad rows and reports them.
        verbose: Print the schema, progress and results.
        **train_options: Fields of ``TrainConfig`` (``max_epochs``, ``batch_size``, ``lr``, ``seed``,
            ``precision``, ``modality_dropout``, ``baselines``, ...).
    """
    from polyfuse.fitting import run_fit

    frame, base_dir, request, source = fit_inputs(
        data,
        label,
        roles=roles,
        split_column=split_column,
        fusion=FusionConfig(fusion, dict(fusion_params or {})),
        encoders=encoders,
        encoder_params=encoder_params,
        freeze=freeze,
        processor_options=processor_options,
        on_error=on_error,
        train_options=train_options,
    )
    log_dir = Path(out) / "logs" if out is not None else None  # per-epoch CSV only beside a saved model
    predictor = run_fit(frame, base_dir, request, Reporter(verbose), log_dir=log_dir)
    predictor.metrics["data"] = source
    if out is not None:
        predictor.save(out)
        Reporter(verbose).saved(Path(out))
    return predictor


def fit_inputs(
    data: Any,
    label: str | list[str] | None,
    *,
    roles: dict[str, str] | None = None,
    split_column: str | None = None,
    fusion: FusionConfig | None = None,
    encoders: dict[str, str] | None = None,
    encoder_params: dict[str, dict[str, Any]] | None = None,
    freeze: dict[str, bool] | None = None,
    processor_options: dict[str, dict[str, Any]] | None = None,
    on_error: str = "raise",
    train_options: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, Path, Any, dict[str, str] | None]:
    """The table, its folder, a ``FitRequest`` and the table's source, from ``fit``'s arguments.

    ``data=None`` means the built-in digits-av with its label and split column.
    """
    from polyfuse.fitting import FitRequest

    train_options = dict(train_options or {})
    unknown = set(train_options) - TRAIN_FIELDS
    if unknown:
        raise TypeError(f"unknown training option(s) {sorted(unknown)}; known: {sorted(TRAIN_FIELDS)}")
    source = _source(data)
    if data is None:
        from polyfuse.data.datasets import load_dataset

        data, label = load_dataset(DEFAULT_DATASET), label or "digit"
        split_column = split_column or "split"
    if label is None:
        raise PolyfuseError("a label column is needed (label=...)")
    request = FitRequest(
        label=[label] if isinstance(label, str) else list(label),
        roles=roles or {},
        split_column=split_column,
        fusion=fusion or FusionConfig(),
        encoders=dict(encoders or {}),
        encoder_params={k: dict(v) for k, v in (encoder_params or {}).items()},
        freeze=dict(freeze or {}),
        processor_options={k: dict(v) for k, v in (processor_options or {}).items()},
        on_error=on_error,
        train=TrainConfig(**train_options),
    )
    frame, base_dir = _frame(data)
    return frame, base_dir, request, source


def _source(data: Any) -> dict[str, str] | None:
    """Where the training table came from, so that ``data_split`` can find its test rows later."""
    if data is None:
        return {"dataset": DEFAULT_DATASET}
    if isinstance(data, (str, Path)):
        return {"table": str(Path(data).resolve())}
    return None  # an in-memory frame: the caller passes it again


def data_split(predictor: Predictor, split: str = "test", data: Any = None) -> tuple[pd.DataFrame, Path]:
    """The rows of one split (train / val / test) of the table a model was trained on.

    Args:
        predictor: A fitted or loaded model; its ``metrics["data"]`` names the table when ``data`` is None.
        split: Which split.
        data: The training table again (path, DataFrame or ``(frame, folder)``); needed when the model
            was fit on an in-memory frame.
    """
    from polyfuse.data.split import split_indices

    if data is None:
        source = predictor.metrics.get("data") or {}
        if "dataset" in source:
            from polyfuse.data.datasets import load_dataset

            data = load_dataset(source["dataset"])
        elif "table" in source:
            data = source["table"]
        else:
            raise PolyfuseError("this model does not record its training table: pass the table")
    frame, base_dir = _frame(data)
    cfg = predictor.train_config
    rows = split_indices(frame, predictor.schema, cfg.seed, cfg.val_fraction, cfg.test_fraction)[split]
    return frame.iloc[rows], base_dir


def explain(
    model: Predictor | str | Path,
    data: Any = None,
    out: str | Path | None = None,
    compare_dir: str | Path | None = None,
    *,
    seed: int = 0,
    samples: int = 8,
    steps: int = 24,
    on_error: str = "raise",
) -> dict[str, Any]:
    """Who contributes what, and where fusion fails: modality Shapley values (by masking),
    feature attributions, errors by presence pattern, fixes / breaks, robustness, embedding
    similarity, fusion weights. Needs ``pip install polyfuse[explain]``.

    Args:
        model: A Predictor or a saved model directory.
        data: Labelled rows to explain (path, DataFrame or ``(frame, folder)``); default the
            model's own test split (``data_split``).
        out: Write the explain directory here (shapley.json, shapley_per_sample.csv,
            explain.json, PNG figures).
        compare_dir: A ``polyfuse compare`` directory: also Shapley values over its retrained subsets.
        seed: Seeds the sampled rows, drops, noise and permutations.
        samples: Rows per modality explained by integrated gradients.
        steps: Integration steps of integrated gradients.
        on_error: "raise" or "skip" bad rows of ``data``.

    Returns:
        explain.json's content, with shapley.json's under "shapley".
    """
    from polyfuse.eval.explain import explain_table

    predictor = model if isinstance(model, Predictor) else load(model)
    rows = data_split(predictor, "test") if data is None else _frame(data)
    table, _ = predictor.encode(rows, targets=True, on_error=on_error)
    if len(table) == 0:
        raise PolyfuseError("no labelled rows left to explain")
    return explain_table(predictor, table, out, compare_dir, seed=seed, samples=samples, steps=steps)


def _frame(data: Any) -> tuple[pd.DataFrame, Path]:
    """A table source, or an already-read ``(frame, folder)`` pair, as a frame and its folder."""
    return data if isinstance(data, tuple) else read_table(data)


def report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write one self-contained HTML report of a compare, model or explain directory.

    Args:
        run_dir: A ``polyfuse compare`` output, a saved model directory (with an optional
            ``explain/`` folder) or a ``polyfuse explain`` output.
        out: The HTML file to write; default ``run_dir/report.html``.

    Returns:
        The path of the written file. Needs matplotlib (``pip install polyfuse[explain]``).
    """
    from polyfuse.htmlreport import build_report

    return build_report(run_dir, out)


def list_encoders() -> list[dict[str, str]]:
    """Registered encoders with the modality each accepts."""
    import polyfuse.encoders  # noqa: F401
    from polyfuse.registry import ENCODERS

    return [
        {"name": n, "modality": ENCODERS.get(n).modality, "doc": _first_line(ENCODERS.get(n))}
        for n in ENCODERS
    ]


def list_fusions() -> list[dict[str, str]]:
    import polyfuse.fusions  # noqa: F401
    from polyfuse.registry import FUSIONS

    return [{"name": n, "doc": _first_line(FUSIONS.get(n))} for n in FUSIONS]


def list_heads() -> list[dict[str, str]]:
    import polyfuse.heads  # noqa: F401
    from polyfuse.registry import HEADS

    return [{"name": n, "doc": _first_line(HEADS.get(n))} for n in HEADS]


def _first_line(obj: Any) -> str:
    return (obj.__doc__ or "").strip().splitlines()[0] if obj.__doc__ else ""


__all__ = [
    "Predictor",
    "explain",
    "fit",
    "load",
    "report",
    "list_encoders",
    "list_fusions",
    "list_heads",
]
