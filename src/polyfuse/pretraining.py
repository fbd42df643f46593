"""Pre-training without labels: a table in, an aligned model and its retrieval scores out.

The table goes through ``fit``'s own steps (roles, split, processors fit on the training rows,
encoders) with no label; the modalities are then aligned pairwise in one space
(``train.pretrain``), and the test split measures how well each modality finds its row's partner
in the other (``eval.retrieval``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from polyfuse.config import (
    FusionConfig,
    ModelConfig,
    PretrainOptions,
    parse_pairs,
)
from polyfuse.data.errors import SchemaError
from polyfuse.data.table import shown_value
from polyfuse.fitting import FitRequest, prepare
from polyfuse.losses.contrastive import Pair
from polyfuse.models.aligned import AlignedModel
from polyfuse.models.build import build_model
from polyfuse.pretrained import Pretrained


@dataclass
class PretrainRequest:
    """What ``pretrain`` was asked for: how to read the table (``table``, a ``FitRequest`` with no
    label, whose ``train`` sets epochs, batch size and learning rate) and what to align."""

    table: FitRequest
    options: PretrainOptions = field(default_factory=PretrainOptions)


def resolve_pairs(modalities: list[str], pairs: list[Pair] | None, anchor: str | None) -> list[Pair]:
    """The pairs to align: as given, every other modality with ``anchor``, or every pair."""
    known = set(modalities)
    if anchor is not None:
        if anchor not in known:
            raise SchemaError(f"anchor {anchor!r} is not a modality of the table (known: {modalities})")
        return [(anchor, m) for m in modalities if m != anchor]
    chosen = list(pairs) if pairs else list(itertools.combinations(modalities, 2))
    for a, b in chosen:
        if a not in known or b not in known or a == b:
            raise SchemaError(f"cannot align {a!r} with {b!r}: pairs name two modalities of {modalities}")
    if not chosen:
        raise SchemaError(f"pre-training aligns pairs of modalities; the table has only {modalities}")
    return chosen


def run_pretrain(frame: pd.DataFrame, base_dir: Path, req: PretrainRequest) -> Pretrained:
    """Prepare the table without labels, align its modalities, score retrieval on the test split."""
    from polyfuse.train.pretrain import pretrain_model

    if req.table.label:
        raise SchemaError("pre-training reads no label: leave label empty")
    opts = req.options
    prep = prepare(frame, base_dir, req.table)
    pairs = resolve_pairs(list(prep.encoders), parse_pairs(opts.pairs), opts.anchor)
    used = sorted({m for pair in pairs for m in pair})
    encoders = {m: prep.encoders[m] for m in used}
    torch.manual_seed(req.table.train.seed)  # initial weights follow the seed, as in fit
    built = build_model(ModelConfig(encoders, FusionConfig(), []), prep.pre).encoders
    model = AlignedModel(dict(built), dim=opts.dim, predictors=opts.masked_weight > 0)
    tables = {k: t.select(used) for k, t in prep.tables.items()}
    for a, b in pairs:
        together = int((tables["train"].mask[a] & tables["train"].mask[b]).sum())
        if together < 2:
            raise SchemaError(f"{together} training rows hold both {a!r} and {b!r}: nothing to align them on")
    groups = {split: _groups(frame, tables[split], opts.relevant_by) for split in ("val", "test")}
    cfg = req.table.train
    result = pretrain_model(
        model, pairs, tables["train"], tables["val"], cfg, opts.masked_weight, groups["val"]
    )
    summary = {
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "seconds": round(result.seconds, 2),
        "val_recall_at_1": result.best_recall_at_1,
        "rows": {k: len(t) for k, t in tables.items()},
    }
    test = test_retrieval(model, tables["test"], pairs, groups["test"])
    done = Pretrained(model, prep.pre, encoders, pairs, opts, cfg, summary, test, tables)
    done.examples = retrieval_examples(done, frame, base_dir, groups["test"])
    return done


def _groups(frame: pd.DataFrame, table: Any, column: str | None) -> list[Any] | None:
    """The ``column`` value of each row of ``table`` (None without a column)."""
    if column is None:
        return None
    if column not in frame.columns:
        raise SchemaError(f"relevant_by: no column {column!r} in the table")
    return frame.loc[table.row_ids, column].tolist()


def retrieval_examples(
    done: Pretrained, frame: pd.DataFrame, base_dir: Path, groups: list[Any] | None
) -> dict[str, list[dict[str, Any]]]:
    """A few test queries per direction with their nearest gallery rows, as the report shows them:
    each row's cells (files as absolute paths), similarity and whether it matches."""
    from polyfuse.eval.retrieval import pair_examples
    from polyfuse.models.inference import aligned_table

    table = done.tables["test"]
    if not len(table):
        return {}
    z, present = aligned_table(done.model, table)
    specs = {s.name: s for s in done.pre.schema.inputs}

    def cell(modality: str, i: int) -> str:
        spec, row = specs[modality], table.row_ids[i]
        shown = [shown_value(frame.at[row, c], spec.kind, base_dir) for c in spec.columns]
        return (
            shown[0]
            if len(shown) == 1
            else ", ".join(f"{c}={v}" for c, v in zip(spec.columns, shown, strict=True))
        )

    out = {}
    for direction, queries in pair_examples(z, present, done.pairs, groups).items():
        query, gallery = direction.split("->")
        out[direction] = [
            {
                "row": str(table.row_ids[q["query"]]),
                "query": cell(query, q["query"]),
                "hits": [
                    {**h, "row": str(table.row_ids[h["row"]]), "value": cell(gallery, h["row"])}
                    for h in q["hits"]
                ],
            }
            for q in queries
        ]
    return out


def test_retrieval(
    model: AlignedModel, table: Any, pairs: list[Pair], groups: list[Any] | None = None
) -> dict[str, dict[str, float]]:
    """``"<query>-><gallery>"`` -> retrieval scores, both ways for each pair, over the rows of ``table``
    holding both modalities (matches: the same row, or a row of the same group)."""
    from polyfuse.eval.retrieval import pair_scores
    from polyfuse.models.inference import aligned_table

    z, present = aligned_table(model, table)
    return pair_scores(z, present, pairs, groups)
