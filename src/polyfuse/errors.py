"""The package-wide error types. Every error a user is meant to read derives from ``PolyfuseError``."""

from __future__ import annotations


class PolyfuseError(Exception):
    """A user-facing error: the CLI prints its message without a traceback."""


class FormatError(PolyfuseError):
    """A saved directory (model, compare, explain) this version cannot read: see docs/format.md."""


class MissingExtraError(PolyfuseError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it.

    It is also an ``ImportError``, so code that treats a missing package as "feature unavailable"
    keeps working.
    """
