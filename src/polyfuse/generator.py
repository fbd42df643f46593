"""A trained text generator and its directory: ``Generator.save`` writes it, ``load_generator``
reads it back; ``write`` / ``caption`` / ``ask`` write texts for new rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from polyfuse.config import (
    EncoderConfig,
    GenerateOptions,
    TrainConfig,
    from_dict,
    load_json,
    save_json,
    to_dict,
)
from polyfuse.data.batch import EncodedTable
from polyfuse.data.modalities.text import TextProcessor
from polyfuse.data.preprocess import Preprocessor
from polyfuse.errors import PolyfuseError
from polyfuse.formats import GENERATOR_FORMAT
from polyfuse.models.generator import TextGenerator
from polyfuse.models.saved import load_weights, read_parts, write_parts

EXAMPLES = 20  # test rows kept with what was written for them (metrics.json, the report)


def generator_model(encoders: dict[str, Any], vocab_size: int, opts: GenerateOptions) -> TextGenerator:
    """The ``TextGenerator`` that ``opts`` describe, over built ``encoders``."""
    return TextGenerator(
        encoders,
        vocab_size,
        max_length=opts.max_words,
        d_model=opts.d_model,
        layers=opts.layers,
        heads=opts.heads,
        prefix_length=opts.prefix_length,
        memory=opts.memory,
    )


@dataclass
class Generator:
    """A text generator with what it needs to read new rows and what it measured."""

    model: TextGenerator
    pre: Preprocessor
    words: TextProcessor  # the target's vocabulary
    encoders: dict[str, EncoderConfig]
    options: GenerateOptions
    train: TrainConfig
    summary: dict[str, Any]
    test: dict[str, float] = field(default_factory=dict)  # BLEU-1..4, CIDEr, ROUGE-L, exact match
    examples: list[dict[str, Any]] = field(default_factory=list)  # test rows: written next to the truth

    @property
    def input_columns(self) -> list[str]:
        return [c for spec in self.pre.schema.inputs for c in spec.columns]

    def write_table(self, table: EncodedTable, beam: int | None = None, batch_size: int = 64) -> list[str]:
        """The text written for each row of an encoded table."""
        self.model.eval()
        ids = [
            row
            for batch in table.batches(batch_size)
            for row in self.model.generate(batch, beam or self.options.beam)
        ]
        return [self.detokenize(row) for row in ids]

    def detokenize(self, ids: list[int]) -> str:
        vocab = self.words.vocab or []
        text = " ".join(vocab[i - 2] if 2 <= i < len(vocab) + 2 else "<unk>" for i in ids)
        for mark in (",", ".", "?", "!", ";", ":"):
            text = text.replace(f" {mark}", mark)
        return text

    def write(self, data: Any, beam: int | None = None, on_error: str = "raise") -> pd.Series:
        """The text written for each row of ``data`` (a path or DataFrame; input columns it lacks are
        read as absent), indexed like ``data``."""
        from polyfuse.data.table import read_table

        frame, base_dir = data if isinstance(data, tuple) else read_table(data)
        inputs = frame.reindex(columns=self.input_columns)  # a missing column: every row lacks it
        table, _ = self.pre.transform(
            inputs.astype(object).where(inputs.notna(), None), base_dir, on_error=on_error
        )
        texts = self.write_table(table, beam)
        return pd.Series(texts, index=frame.loc[table.row_ids].index, name=self.options.target)

    def caption(self, value: Any, column: str | None = None, beam: int | None = None) -> str:
        """The text written for one input: a file path (image, audio) or a value of ``column``, the
        generator's one input column unless named."""
        columns = self.input_columns if column is None else [column]
        if len(columns) != 1 or columns[0] not in self.input_columns:
            raise PolyfuseError(f"the generator reads {self.input_columns}: name the column the input is for")
        return self._one({columns[0]: value}, beam)

    def ask(self, image: Any, question: str, beam: int | None = None) -> str:
        """The answer written for ``question`` about ``image`` (a file): the generator's one text column
        gets the question, its one other column the file."""
        return str(self.write(question_row(self.pre, image, question), beam).iloc[0])

    def _one(self, cells: dict[str, Any], beam: int | None) -> str:
        return str(self.write(one_row(self.pre, cells), beam).iloc[0])

    def save(self, path: str | Path) -> Path:
        """Write the directory: config.json, model.safetensors, preprocessor.json, words.json and
        metrics.json."""
        out = Path(path)
        write_parts(
            out,
            {"format": GENERATOR_FORMAT, "kind": "generator"},
            self.encoders,
            {"options": to_dict(self.options), "train": to_dict(self.train)},
            self.pre,
            self.model,
            {"generate": self.summary, "test": self.test, "examples": self.examples},
        )
        save_json(self.words.state(), out / "words.json")
        return out


def load_generator(path: str | Path) -> Generator:
    """Read a directory written by ``Generator.save`` (JSON + safetensors, no pickle)."""
    folder = Path(path)
    parts = read_parts(folder, GENERATOR_FORMAT, "generator", "a text generator (polyfuse fit-text)")
    words = TextProcessor(**load_json(folder / "words.json"))
    options = from_dict(GenerateOptions, parts.config["options"])
    model = generator_model(parts.built, words.vocab_size, options)
    load_weights(model, folder)
    metrics = parts.metrics
    return Generator(
        model,
        parts.pre,
        words,
        parts.encoders,
        options,
        from_dict(TrainConfig, parts.config["train"]),
        metrics.get("generate", {}),
        metrics.get("test", {}),
        metrics.get("examples", []),
    )


def is_generator(path: str | Path) -> bool:
    """Whether ``path`` is a text generator's directory."""
    try:
        return load_json(Path(path) / "config.json").get("kind") == "generator"
    except (OSError, ValueError):
        return False


def one_row(pre: Preprocessor, cells: dict[str, Any]) -> tuple[pd.DataFrame, Path]:
    """A one-row table of ``cells`` (column -> value; a file as its path) for ``pre``'s inputs, the
    other input columns empty."""
    kinds = {c: s.kind for s in pre.schema.inputs for c in s.columns}
    row: dict[str, Any] = {c: None for c in kinds}
    row.update(
        {c: str(Path(v).resolve()) if kinds.get(c) in ("image", "audio") else v for c, v in cells.items()}
    )
    return pd.DataFrame([row]), Path.cwd()


def question_row(pre: Preprocessor, image: Any, question: str) -> tuple[pd.DataFrame, Path]:
    """The one-row table asking ``question`` about ``image`` of a question-answering model: its one
    text column holds the question, its one other input column the file."""
    specs = pre.schema.inputs
    texts = [c for s in specs if s.kind == "text" for c in s.columns]
    others = [c for s in specs if s.kind != "text" for c in s.columns]
    if len(texts) != 1 or len(others) != 1:
        raise PolyfuseError(
            f"asking needs a model of one question column and one other input; it reads text {texts} "
            f"and {others}"
        )
    return one_row(pre, {texts[0]: question, others[0]: image})
