"""A trained model and its saved directory: ``Predictor``, ``load`` and the rows of a model's splits.

The model directory's layout is specified in docs/format.md; ``Predictor.save`` writes it and
``load`` reads it, refusing a format version newer than this polyfuse knows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from polyfuse import __version__
from polyfuse.config import ModelConfig, Schema, TrainConfig, from_dict, load_json, save_json, to_dict
from polyfuse.data.batch import EncodedTable
from polyfuse.data.errors import DataError
from polyfuse.data.preprocess import Preprocessor
from polyfuse.data.table import read_table
from polyfuse.errors import PolyfuseError
from polyfuse.eval.evaluate import evaluate_table
from polyfuse.formats import MODEL_FORMAT, read_versioned
from polyfuse.models.multimodal import MultimodalModel

DEFAULT_DATASET = "digits-av"  # the built-in table ``fit`` and ``compare`` use when given none


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
        df, base_dir = read_rows(data)
        return self.preprocessor.transform(df, base_dir, on_error=on_error, targets=targets)

    def outputs(
        self, table: EncodedTable, batch_size: int = 256, budget_ms: float | None = None
    ) -> dict[str, torch.Tensor]:
        """Label -> probabilities [N, K] / [N] or values [N], in the table's row order.

        ``budget_ms``: encoder milliseconds per row to aim for; the modality cascade
        (``models.cascade``) then runs modalities cheapest first and stops each row once confident,
        at the threshold that fit's validation curve (``metrics["cascade"]``) scores best within it.
        """
        from polyfuse.models.inference import predict_table

        if budget_ms is None:
            return predict_table(self.model, table, batch_size)
        from polyfuse.eval.cascade import threshold_for
        from polyfuse.models.cascade import cascade_predict

        plan = self.cascade_plan()
        return cascade_predict(
            self.model, table, plan["order"], threshold_for(plan, budget_ms), batch_size
        ).outputs

    def cascade_plan(self) -> dict[str, Any]:
        """The modality cascade's plan measured at fit time on the validation rows (see
        ``eval.cascade.plan_cascade``)."""
        plan = self.metrics.get("cascade")
        if not plan:
            raise PolyfuseError(
                "this model has no cascade plan (a model of one modality, or saved before polyfuse "
                "measured one): a compute budget needs it"
            )
        return plan  # type: ignore[no-any-return]

    def predict(
        self, data: Any, on_error: str = "raise", budget_ms: float | None = None
    ) -> pd.Series | pd.DataFrame:
        """Predicted label values; a Series for one label, a DataFrame (a column each) for several.

        ``budget_ms``: run the modality cascade within this many encoder milliseconds per row (see
        ``outputs``); None runs every modality.
        """
        table, _ = self.encode(data, on_error=on_error)
        frame = self._labels(table, self.outputs(table, budget_ms=budget_ms))
        return frame[self.labels[0]] if len(self.labels) == 1 else frame

    def predict_proba(self, data: Any, label: str | None = None, on_error: str = "raise") -> pd.DataFrame:
        """Class probabilities of one classification label, a column per class value."""
        label = label or self.labels[0]
        spec = next(s for s in self.schema.labels if s.column == label)
        if spec.task == "regression":
            raise PolyfuseError(f"label {label!r} is a regression target: use predict()")
        table, _ = self.encode(data, on_error=on_error)
        return self._proba(table, self.outputs(table), label)

    def predictions(self, data: Any, on_error: str = "raise", budget_ms: float | None = None) -> pd.DataFrame:
        """Labels and, for classification labels, ``p_<label>_<class>`` probability columns.

        Decodes the table once (``predict`` + ``predict_proba`` would read every file again).
        ``budget_ms`` as in ``predict``.
        """
        table, _ = self.encode(data, on_error=on_error)
        outputs = self.outputs(table, budget_ms=budget_ms)
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

    def explain(
        self,
        data: Any = None,
        out: str | Path | None = None,
        compare_dir: str | Path | None = None,
        *,
        seed: int = 0,
        samples: int = 8,
        steps: int = 24,
        on_error: str = "raise",
    ) -> dict[str, Any]:
        """``polyfuse.explain`` of this model (see there); ``data`` defaults to its own test split."""
        from polyfuse.eval.explain import explain_table

        rows = data_split(self, "test") if data is None else read_rows(data)
        table, _ = self.encode(rows, targets=True, on_error=on_error)
        if len(table) == 0:
            raise PolyfuseError("no labelled rows left to explain")
        return explain_table(self, table, out, compare_dir, seed=seed, samples=samples, steps=steps)

    def save(self, path: str | Path) -> Path:
        """Write the model directory: config.json, model.safetensors, preprocessor.json, metrics.json."""
        from safetensors.torch import save_model

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        config = {
            "format": MODEL_FORMAT,
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
    config = read_versioned(folder / "config.json", MODEL_FORMAT)
    if config.get("kind") == "aligned":
        raise PolyfuseError(
            f"{folder} is a pre-trained model directory: read it with polyfuse.load_pretrained"
        )
    preprocessor = Preprocessor.from_state(load_json(folder / "preprocessor.json"))
    model_config = from_dict(ModelConfig, config["model"])
    model = build_model(model_config, preprocessor)
    load_model(model, str(folder / "model.safetensors"))
    metrics = load_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else {}
    return Predictor(preprocessor, model_config, from_dict(TrainConfig, config["train"]), model, metrics)


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
    frame, base_dir = read_rows(data)
    cfg = predictor.train_config
    rows = split_indices(frame, predictor.schema, cfg.seed, cfg.val_fraction, cfg.test_fraction)[split]
    return frame.iloc[rows], base_dir


def read_rows(data: Any) -> tuple[pd.DataFrame, Path]:
    """A table source, or an already-read ``(frame, folder)`` pair, as a frame and its folder."""
    return data if isinstance(data, tuple) else read_table(data)
