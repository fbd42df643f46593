"""Errors about the user's data: each names the row, the column and the problem."""

from __future__ import annotations

from typing import Any

from polyfuse.errors import PolyfuseError

__all__ = ["DataError", "PolyfuseError", "SchemaError"]


class DataError(PolyfuseError):
    """A problem with one cell (or one column) of the user's table."""

    def __init__(self, problem: str, row: Any = None, column: str | None = None) -> None:
        self.problem = problem
        self.row = row
        self.column = column
        where = []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {problem}" if prefix else problem)


class SchemaError(PolyfuseError):
    """The table as a whole does not fit: a required column is missing, no label, ..."""
