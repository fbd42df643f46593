"""Command-line options generated from config dataclasses, so each option is defined once.

``with_config_options(TrainConfig)`` adds one ``--option`` per field to a typer command, with the
field's type, default and help (``config.option``), and hands the command the values as one dict.
``polyfuse fit``, ``polyfuse compare`` and the API thus cannot drift apart: a new ``TrainConfig``
field is a new option everywhere. A ``dict[str, V]`` field is given as ``KEY=VALUE,KEY=VALUE``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

import typer

Command = Callable[..., Any]


def with_config_options(
    cls: type, into: str, defaults: Mapping[str, Any] | None = None, skip: tuple[str, ...] = ()
) -> Callable[[Command], Command]:
    """Decorate a typer command so that every field of ``cls`` is an option.

    Args:
        cls: A config dataclass whose fields are declared with ``config.option``.
        into: The command's keyword that receives ``{field: value}`` (every field, always).
        defaults: Defaults that replace the dataclass's for this command (e.g. compare's).
        skip: Fields the command sets itself (they get no option).
    """
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.name not in skip]  # type: ignore[arg-type]
    overrides = dict(defaults or {})

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != into]
        added = [_parameter(f, hints[f.name], overrides.get(f.name, _default(f))) for f in fields]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            values = {f.name: kwargs.pop(f.name) for f in fields}
            return command(**kwargs, **{into: values})

        run.__signature__ = signature.replace(parameters=own + added)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in own + added}
        return run

    return decorate


def _default(field: dataclasses.Field[Any]) -> Any:
    return field.default_factory() if field.default is dataclasses.MISSING else field.default  # type: ignore[misc,operator]


def _parameter(field: dataclasses.Field[Any], hint: Any, default: Any) -> inspect.Parameter:
    flags = field.metadata.get("flags", ())
    extra: dict[str, Any] = {}
    if typing.get_origin(hint) is dict:  # typer has no dict type: parse "KEY=VALUE,..." into one
        extra = {"parser": _pairs_parser(typing.get_args(hint)[1]), "metavar": "KEY=VALUE,..."}
    option = typer.Option(
        default, *flags, help=str(field.metadata.get("help", "")), show_default=True, **extra
    )
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=hint)


def _pairs_parser(value_type: Callable[[str], Any]) -> Callable[[Any], dict[str, Any]]:
    """A parser of ``"image=0.5,audio=0.1"`` into ``{"image": 0.5, "audio": 0.1}`` (a dict, such as
    the default, passes through)."""

    def parse(text: Any) -> dict[str, Any]:
        if isinstance(text, dict):
            return text
        out: dict[str, Any] = {}
        for item in (part.strip() for part in str(text).split(",")):
            key, sep, value = item.partition("=")
            if not item or not sep or not key:
                raise typer.BadParameter(f"expected KEY=VALUE,KEY=VALUE, got {text!r}")
            try:
                out[key.strip()] = value_type(value.strip())
            except ValueError:
                raise typer.BadParameter(f"{value!r} is not a {value_type.__name__} in {text!r}") from None
        return out

    return parse
