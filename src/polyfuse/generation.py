"""Text generation from a table: a text column (captions, answers) written from other columns.

The table goes through ``fit``'s own steps (roles, split, processors fit on the training rows,
encoders) with the target column set aside; the target's words get the builtin tokenizer's
vocabulary of the training rows. A ``TextGenerator`` learns to write the target from the inputs
(``train.generation``); the test split is then written (beam search) and scored against its texts
(``eval.text_scores``: BLEU, CIDEr, ROUGE-L, exact match).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import pandas as pd
import torch

from polyfuse.config import FusionConfig, GenerateOptions, ModelConfig, parse_columns
from polyfuse.data.batch import EncodedTable
from polyfuse.data.errors import SchemaError
from polyfuse.data.modalities.text import TextProcessor
from polyfuse.data.table import missing_mask, shown_value
from polyfuse.fitting import FitRequest, prepare
from polyfuse.generator import EXAMPLES, Generator, generator_model
from polyfuse.models.build import build_model


@dataclass
class GenerateRequest:
    """What ``fit_text`` was asked for: how to read the table (``table``, a ``FitRequest`` with no
    label, whose ``train`` sets epochs, batch size and learning rate) and what to write."""

    table: FitRequest
    options: GenerateOptions = field(default_factory=GenerateOptions)


def input_roles(frame: pd.DataFrame, req: GenerateRequest) -> dict[str, str]:
    """The table's roles with the target, the ``references_by`` column (a key for scoring, never an
    input) and every column that is not an input, ignored."""
    opts = req.options
    if not opts.target:
        raise SchemaError("name the text column to write (target=...)")
    for what, column in (("target", opts.target), ("references_by", opts.references_by)):
        if column is not None and column not in frame.columns:
            raise SchemaError(f"{what}: no column {column!r} in the table (columns: {list(frame.columns)})")
    roles = {**req.table.roles, opts.target: "ignore"}
    if opts.references_by is not None:
        roles[opts.references_by] = "ignore"
    inputs = parse_columns(opts.inputs)
    if inputs is not None:
        unknown = [c for c in inputs if c not in frame.columns]
        if unknown or opts.target in inputs:
            raise SchemaError(
                f"inputs: {unknown or [opts.target]} cannot be inputs (columns: {list(frame.columns)})"
            )
        kept = {*inputs, req.table.split_column}
        roles.update({c: "ignore" for c in frame.columns if c not in kept})
    return roles


def with_targets(table: EncodedTable, frame: pd.DataFrame, words: TextProcessor) -> EncodedTable:
    """The rows of ``table`` whose target is present, with its word ids as ``targets``."""
    from polyfuse.train.generation import TARGET

    texts = frame.loc[table.row_ids, words.columns]
    keep = torch.from_numpy(~missing_mask(texts[words.columns[0]])).nonzero().flatten()
    kept = table.subset(keep)
    ids = words.transform(texts.iloc[keep.numpy()], Path.cwd()).values  # [n, max_words]
    kept.targets = {TARGET: cast(torch.Tensor, ids)}
    return kept


def run_generator(frame: pd.DataFrame, base_dir: Path, req: GenerateRequest) -> Generator:
    """Prepare the table, train a text generator for the target column, write and score the test split."""
    from polyfuse.train.generation import train_generator

    if req.table.label:
        raise SchemaError("fit_text reads a target column, not a label: leave label empty")
    opts = req.options
    prep = prepare(frame, base_dir, replace(req.table, roles=input_roles(frame, req)))
    words = TextProcessor([opts.target], max_length=opts.max_words, min_freq=opts.min_word_count)
    words.fit(frame.loc[prep.tables["train"].row_ids], base_dir)
    tables = {split: with_targets(t, frame, words) for split, t in prep.tables.items()}
    if len(tables["train"]) < 2:
        raise SchemaError(
            f"{len(tables['train'])} training rows hold a {opts.target!r} text: nothing to learn from"
        )
    torch.manual_seed(req.table.train.seed)  # initial weights follow the seed, as in fit
    built = build_model(ModelConfig(prep.encoders, FusionConfig(), []), prep.pre).encoders
    for name, weights in prep.init.items():  # fit(init_from=...)'s pre-trained encoders
        built[name].load_state_dict(weights)
    model = generator_model(dict(built), words.vocab_size, opts)
    result = train_generator(model, tables["train"], tables["val"], req.table.train)
    summary = {
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "seconds": round(result.seconds, 2),
        "val_loss": result.best_loss,
        "rows": {k: len(t) for k, t in tables.items()},
        "vocabulary": words.vocab_size,
    }
    done = Generator(model, prep.pre, words, prep.encoders, opts, req.table.train, summary)
    if len(tables["test"]):
        done.test, done.examples = score_split(done, frame, base_dir, tables["test"], opts.references_by)
    return done


def score_split(
    done: Generator, frame: pd.DataFrame, base_dir: Path, table: EncodedTable, references_by: str | None
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Write ``table``'s rows and score them against their texts (and, with ``references_by``, the
    texts of the rows sharing that column's value); also the first ``EXAMPLES`` rows: their inputs
    (files as absolute paths), what was written and the truth."""
    from polyfuse.eval.text_scores import text_scores

    target = done.options.target
    written = done.write_table(table)
    truth = frame.loc[table.row_ids, target].astype(str).tolist()
    if references_by is None:
        references = [[t] for t in truth]
    else:
        keys = frame.loc[table.row_ids, references_by].astype(str).tolist()
        pooled: dict[str, list[str]] = {}
        for key, text in zip(keys, truth, strict=True):
            pooled.setdefault(key, []).append(text)
        references = [sorted(set(pooled[k])) for k in keys]
    scores = text_scores(written, references)
    kinds = {c: spec.kind for spec in done.pre.schema.inputs for c in spec.columns}
    examples = [
        {
            "row": str(r),
            "inputs": {c: shown_value(frame.at[r, c], kind, base_dir) for c, kind in kinds.items()},
            "written": w,
            "reference": t,
        }
        for r, w, t in list(zip(table.row_ids, written, truth, strict=True))[:EXAMPLES]
    ]
    return scores, examples
