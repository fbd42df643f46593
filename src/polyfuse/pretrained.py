"""A pre-trained (aligned) model and its directory: ``Pretrained.save`` writes it, ``load_pretrained``
reads it back, ``fit(init_from=...)`` starts from its encoders and processors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.config import (
    EncoderConfig,
    PretrainOptions,
    TrainConfig,
    from_dict,
    to_dict,
)
from polyfuse.data.preprocess import Preprocessor
from polyfuse.errors import PolyfuseError
from polyfuse.formats import ALIGNED_FORMAT
from polyfuse.models.aligned import AlignedModel
from polyfuse.models.saved import load_weights, read_parts, write_parts

Pair = tuple[str, str]


@dataclass
class Pretrained:
    """An aligned model with what it needs to read new rows and what it measured."""

    model: AlignedModel
    pre: Preprocessor
    encoders: dict[str, EncoderConfig]  # modality -> encoder of ``model``
    pairs: list[Pair]
    options: PretrainOptions
    train: TrainConfig
    summary: dict[str, Any]  # epochs, best epoch, seconds, validation Recall@1
    test: dict[str, dict[str, float]] = field(default_factory=dict)  # "query->gallery" -> scores
    tables: dict[str, Any] = field(default_factory=dict)  # the encoded splits (not saved)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # test queries and their hits

    def embed(self, data: Any, modality: str, on_error: str = "raise") -> tuple[np.ndarray, pd.DataFrame]:
        """Unit embeddings [N, dim] in the shared space of ``modality`` for the rows of ``data`` (a path
        or DataFrame; only that modality's columns are read) that hold it, and those rows."""
        from polyfuse.data.table import read_table
        from polyfuse.models.inference import aligned_table

        if modality not in self.encoders:
            raise PolyfuseError(f"the model aligns {sorted(self.encoders)}, not {modality!r}")
        frame, base_dir = data if isinstance(data, tuple) else read_table(data)
        table, _ = self.pre.transform(only_columns(frame, self.pre, modality), base_dir, on_error=on_error)
        z, present = aligned_table(self.model, table.select([modality]))
        kept = present[modality].numpy()
        rows = frame.loc[[r for r, p in zip(table.row_ids, kept, strict=True) if p]]
        return z[modality][present[modality]].numpy(), rows

    def text_modality(self, name: str | None = None) -> str:
        """The aligned modality that reads text (``name`` when given); one must be unambiguous."""
        texts = [s.name for s in self.pre.schema.inputs if s.kind == "text" and s.name in self.encoders]
        if name is not None:
            texts = [t for t in texts if t == name]
        if len(texts) != 1:
            raise PolyfuseError(f"the model aligns {len(texts)} text modalities {texts}: name the one to use")
        return texts[0]

    def embed_texts(self, texts: list[str], modality: str | None = None) -> np.ndarray:
        """Unit embeddings [len(texts), dim] of ``texts`` read by the model's text modality."""
        name = self.text_modality(modality)
        column = next(s for s in self.pre.schema.inputs if s.name == name).columns[0]
        z, _ = self.embed((pd.DataFrame({column: texts}), Path.cwd()), name)
        if len(z) != len(texts):
            raise PolyfuseError("an empty text cannot be embedded")
        return z

    def embed_query(self, kind: str, value: Any, modality: str | None = None) -> np.ndarray:
        """One query's unit embedding [1, dim]: a text, or an image / audio file path, read by the
        model's modality of that kind (``modality`` when it has several)."""
        readers = [s for s in self.pre.schema.inputs if s.kind == kind and s.name in self.encoders]
        if modality is not None:
            readers = [s for s in readers if s.name == modality]
        if len(readers) != 1:
            names = [s.name for s in readers]
            raise PolyfuseError(
                f"{len(names)} of the model's modalities read {kind} queries {names}: name one"
            )
        spec = readers[0]
        cell = str(value) if kind == "text" else str(Path(value).resolve())
        z, _ = self.embed((pd.DataFrame({spec.columns[0]: [cell]}), Path.cwd()), spec.name)
        if not len(z):
            raise PolyfuseError(f"the query could not be read as {kind}")
        return z

    def zero_shot(
        self,
        data: Any,
        modality: str,
        classes: list[Any],
        template: str | Sequence[str] = "{}",
        text_modality: str | None = None,
        on_error: str = "raise",
    ) -> pd.DataFrame:
        """Classify ``modality`` of each row of ``data`` among ``classes`` with no label to learn from: each
        class becomes the text ``template.format(class)`` ("a picture of a {}"), and a row takes the
        class whose text is nearest in the shared space (CLIP's zero-shot classifier). Several templates
        make a prompt ensemble, as in CLIP: a class's point is the normalised mean of its texts'
        embeddings ("a red {}", "a blue {}", ... when every training text names a colour).

        Returns:
            One row per row of ``data`` that holds the modality: ``prediction`` and the probability of
            each class (softmax of the scaled cosine similarities), indexed like ``data``.
        """
        prompts = self.class_points(classes, template, text_modality)
        z, rows = self.embed(data, modality, on_error=on_error)
        scale = float(self.model.scale())
        logits = scale * z @ prompts.T
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        out = pd.DataFrame(probs, index=rows.index, columns=[str(c) for c in classes])
        out.insert(0, "prediction", [classes[i] for i in probs.argmax(axis=1)])
        return out

    def class_points(
        self, classes: list[Any], template: str | Sequence[str], text_modality: str | None = None
    ) -> np.ndarray:
        """Unit points [len(classes), dim] of the classes' names through one template or an ensemble."""
        templates = [template] if isinstance(template, str) else list(template)
        if not templates or any("{}" not in t for t in templates):
            raise PolyfuseError(f"each template needs a {{}} for the class name, got {templates!r}")
        texts = [t.format(c) for c in classes for t in templates]
        points = self.embed_texts(texts, text_modality).reshape(len(classes), len(templates), -1).mean(axis=1)
        return points / np.linalg.norm(points, axis=1, keepdims=True).clip(min=1e-12)  # type: ignore[no-any-return]

    def save(self, path: str | Path) -> Path:
        """Write the directory: config.json, model.safetensors, preprocessor.json, metrics.json."""
        rest = {
            "dim": self.model.dim,
            "predictors": bool(len(self.model.predictors)),
            "pairs": [list(p) for p in self.pairs],
            "options": to_dict(self.options),
            "train": to_dict(self.train),
        }
        head = {"format": ALIGNED_FORMAT, "kind": "aligned"}
        metrics = {"pretrain": self.summary, "test": self.test, "examples": self.examples}
        return write_parts(Path(path), head, self.encoders, rest, self.pre, self.model, metrics)


@dataclass
class ZeroShot:
    """Zero-shot classification's result: per row the predicted class and each class's probability,
    and the accuracy against a label column when one was given."""

    predictions: pd.DataFrame
    accuracy: float | None = None


def load_pretrained(path: str | Path) -> Pretrained:
    """Read a directory written by ``Pretrained.save`` (JSON + safetensors, no pickle)."""
    folder = Path(path)
    parts = read_parts(folder, ALIGNED_FORMAT, "aligned", "a pre-trained model (polyfuse pretrain)")
    config, metrics = parts.config, parts.metrics
    model = AlignedModel(parts.built, dim=int(config["dim"]), predictors=bool(config["predictors"]))
    load_weights(model, folder)
    return Pretrained(
        model,
        parts.pre,
        parts.encoders,
        [(a, b) for a, b in config["pairs"]],
        from_dict(PretrainOptions, config["options"]),
        from_dict(TrainConfig, config["train"]),
        metrics.get("pretrain", {}),
        metrics.get("test", {}),
        examples=metrics.get("examples", {}),
    )


def only_columns(frame: pd.DataFrame, pre: Preprocessor, modality: str) -> pd.DataFrame:
    """``frame`` with every input column the preprocessor reads, all empty but ``modality``'s: the
    other modalities are absent (masked) rather than required."""
    spec = next(s for s in pre.schema.inputs if s.name == modality)
    missing = {c: None for s in pre.schema.inputs if s.name != modality for c in s.columns}
    absent = [c for c in spec.columns if c not in frame.columns]
    if absent:
        raise PolyfuseError(f"{modality!r} reads column(s) {absent}, not in the table")
    return frame[spec.columns].assign(**missing)
