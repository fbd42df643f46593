"""Column roles: which columns are text, images, audio, numbers, categories, labels or ignored.

Declared roles always win. Otherwise a column's role is inferred from its values:

* strings that mostly end in an image (audio) file extension -> ``image`` (``audio``);
* numeric and boolean dtypes -> ``numeric``. Low-cardinality integer columns stay numeric too: their
  order usually means something (rooms, ratings) and a standardised number handles values unseen in
  training, which a category code cannot. Declare ``"categorical"`` to change that;
* object columns whose values are at least 90% numbers -> ``numeric`` (the odd bad cell then raises a
  ``DataError`` naming it instead of silently turning the column into text);
* strings with a median of 4+ words or longer than 60 characters on average -> ``text``;
* strings with few distinct values (<= max(20, 5% of rows)) -> ``categorical``;
* strings that are all distinct and contain no whitespace -> ``ignore`` (identifiers);
* other strings -> ``text``.

Each rule lives with the modality that owns its role (``data/modalities/<kind>.py``), with a rank
that puts it in the order above; a new kind adds its rules at a rank of its choosing.

A column named ``split`` whose values are train/val/valid/validation/test is the split column.

Label tasks: list values -> ``multilabel``; two distinct values -> ``binary``; numbers that are not
all integers, or integers with more than 20 distinct values -> ``regression``; everything else ->
``multiclass``. Delimited strings such as ``"a|b"`` are multilabel only when declared
(``declared={"tags": "multilabel"}``), since ``|`` also occurs in ordinary class names; a label's
task can be declared the same way with any of ``multiclass``, ``binary``, ``multilabel``,
``regression``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from polyfuse.config import TASKS, InputSpec, LabelSpec, Schema
from polyfuse.data.errors import SchemaError
from polyfuse.data.modalities import Column, input_roles, owner
from polyfuse.data.modalities.modality import Rule
from polyfuse.data.table import missing_mask
from polyfuse.registry import MODALITIES

OTHER_ROLES = ("label", "split", "ignore")  # column roles that feed no modality
SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def known_roles() -> list[str]:
    """Every role a column can be declared with: the modalities' roles, then ``OTHER_ROLES``."""
    return [*input_roles(), *OTHER_ROLES]


def infer_schema(
    df: pd.DataFrame,
    label: str | list[str],
    base_dir: str | Path | None = None,
    declared: dict[str, str] | None = None,
    split_column: str | None = None,
) -> Schema:
    """Give every column a role and build the model inputs and labels from them.

    Args:
        df: The whole table.
        label: The label column(s).
        base_dir: Folder of the table (kept for symmetry with processors; roles need no files).
        declared: Column -> role (one of ``known_roles()``) or, for label columns, a task name.
        split_column: Column holding train/val/test, if any.

    Returns:
        A Schema: one InputSpec per image/audio/text column (named after it), one ``tabular``
        InputSpec for all numeric and categorical columns, one LabelSpec per label.

    Raises:
        SchemaError: A label or declared column is missing, a role is unknown, or no input is left.
    """
    labels = [label] if isinstance(label, str) else list(label)
    declared = dict(declared or {})
    _check_columns(df, labels, declared, split_column)
    roles = _roles(df, labels, declared, split_column)
    label_specs = [LabelSpec(c, declared.get(c) or infer_task(df[c])) for c in labels]
    inputs = _inputs(roles)
    if not inputs:
        raise SchemaError(f"no input columns left besides the label(s) {labels}; roles: {roles}")
    split = next((c for c, r in roles.items() if r == "split"), None)
    ignored = [c for c, r in roles.items() if r == "ignore"]
    return Schema(inputs=inputs, labels=label_specs, split_column=split, ignored=ignored, roles=roles)


def _check_columns(
    df: pd.DataFrame, labels: list[str], declared: dict[str, str], split_column: str | None
) -> None:
    for name in labels:
        if name not in df.columns:
            raise SchemaError(f"label column {name!r} not in the table (columns: {list(df.columns)})")
    roles = known_roles()
    for name, role in declared.items():
        if name not in df.columns:
            raise SchemaError(f"declared column {name!r} not in the table (columns: {list(df.columns)})")
        if role not in roles and role not in TASKS:
            raise SchemaError(f"column {name!r}: unknown role {role!r} (known: {', '.join(roles)})")
        if role in TASKS and name not in labels:
            raise SchemaError(f"column {name!r} is declared {role!r} but is not a label column")
    if split_column is not None and split_column not in df.columns:
        raise SchemaError(f"split column {split_column!r} not in the table")


def _roles(
    df: pd.DataFrame, labels: list[str], declared: dict[str, str], split_column: str | None
) -> dict[str, str]:
    roles: dict[str, str] = {}
    for name in df.columns:
        column = str(name)
        if column in labels:
            roles[column] = "label"
        elif column == split_column:
            roles[column] = "split"
        elif column in declared:
            roles[column] = declared[column]
        elif split_column is None and column.lower() == "split" and _is_split(df[name]):
            roles[column] = "split"
        else:
            roles[column] = infer_role(df[name])
    return roles


def _inputs(roles: dict[str, str]) -> list[InputSpec]:
    """One input per column in table order, then one per grouped modality (tabular: all its columns)."""
    fed = [(column, owner(role)) for column, role in roles.items() if role not in OTHER_ROLES]
    inputs = [spec for column, m in fed if not m.grouped for spec in m.inputs([column])]
    groups: dict[str, list[str]] = {}  # kind -> its columns, in table order
    for column, m in fed:
        if m.grouped:
            groups.setdefault(m.kind, []).append(column)
    return inputs + [
        spec for kind, columns in groups.items() for spec in MODALITIES.get(kind).inputs(columns)
    ]


def _is_split(series: pd.Series) -> bool:
    values = series.dropna().astype(str).str.strip().str.lower().unique()
    return len(values) > 0 and all(v in SPLIT_VALUES for v in values)


def infer_role(series: pd.Series) -> str:
    """The role of one input column, inferred from its values (see the module docstring)."""
    column = Column(series)
    if len(column.values) == 0:
        return "ignore"
    for _, rule in _rules():
        role = rule(column)
        if role is not None:
            return role
    return "ignore"


def _rules() -> list[tuple[int, Rule]]:
    """Every modality's inference rules and the schema's own, by rank (ties: modality name order)."""
    rules = [(20, _nested), (80, _identifiers)]
    for name in MODALITIES:
        rules += MODALITIES.get(name).rules()
    return sorted(rules, key=lambda pair: pair[0])


def _nested(column: Column) -> str | None:
    found = column.values.map(lambda v: isinstance(v, (list, tuple, np.ndarray, dict))).any()
    return "ignore" if found else None


def _identifiers(column: Column) -> str | None:
    strings = column.strings
    distinct = strings.nunique() == len(strings) and not strings.str.contains(r"\s").any()
    return "ignore" if distinct else None


def infer_task(series: pd.Series) -> str:
    """The task a label column defines (see the module docstring)."""
    values = series.dropna()
    if len(values) == 0:
        raise SchemaError(f"label column {series.name!r} has no values")
    if values.map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
        return "multilabel"
    n_unique = values.nunique()
    if n_unique == 2:
        return "binary"
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.astype(float)
        integral = bool(np.all(np.mod(numbers, 1) == 0))
        if not integral or n_unique > 20:
            return "regression"
    return "multiclass"


def describe_schema(
    schema: Schema, df: pd.DataFrame, base_dir: str | Path | None = None
) -> list[tuple[str, str, str]]:
    """Rows ``(column, role, detail)`` for printing a schema as a table.

    Args:
        schema: The inferred schema.
        df: The table it was inferred from.
        base_dir: When given, file columns also count files that do not exist.
    """
    roles = dict(schema.roles)
    for spec in schema.inputs:
        for column in spec.columns:
            roles.setdefault(column, spec.kind)
    tasks = {spec.column: spec.task for spec in schema.labels}
    rows = []
    for column in df.columns:
        name = str(column)
        role = "label" if name in tasks else roles.get(name, "ignore")
        shown = f"label ({tasks[name]})" if name in tasks else role
        rows.append((name, shown, _detail(df[column], role, tasks.get(name), base_dir)))
    return rows


def _detail(series: pd.Series, role: str, task: str | None, base_dir: str | Path | None) -> str:
    values = series.dropna()
    missing = int(missing_mask(series).sum())
    if role == "label" and task == "regression":
        return f"mean {values.astype(float).mean():.3g}, {missing} missing"
    if role in ("label", "split"):
        return f"{values.astype(str).nunique()} categories, {missing} missing"
    if role in input_roles():
        return owner(role).detail(series, role, base_dir)
    return f"{values.nunique()} distinct values"
