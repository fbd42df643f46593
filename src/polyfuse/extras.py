"""Optional dependencies: import one, or fail with the ``pip install 'polyfuse[EXTRA]'`` that brings it."""

from __future__ import annotations

import importlib
from types import ModuleType

from polyfuse.errors import MissingExtraError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise ``MissingExtraError`` naming the extra.

    Args:
        module: Dotted module name, e.g. ``"captum.attr"``.
        extra: The polyfuse extra that installs it, e.g. ``"explain"``.
        purpose: What needs it, as the start of a sentence, e.g. ``"feature attributions"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        raise MissingExtraError(
            f"{purpose} needs the {top!r} package: pip install 'polyfuse[{extra}]'"
        ) from err
