"""Command-line options derived from a settings model, so the CLI and sftline.yaml's `line:`
share one vocabulary: the field `batch_tokens` is `--batch-tokens` and `batch_tokens:`.

`settings_command(Model, ...)` turns a function `f(overrides, **extra)` into a Typer command whose
options are the model's fields (help from each field's docstring, the default shown) plus the
extra parameters of `f` after `overrides`. Only options given on the command line reach
`overrides`, so a settings file or a run's stored config keeps every value the user did not set.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

Overrides = dict[str, Any]


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _default_text(info: FieldInfo) -> str:
    default = info.default
    if default is PydanticUndefined:
        return ""
    if default is None or default == [] or default == {}:
        return ""
    if isinstance(default, bool):
        return "default: on" if default else "default: off"
    return f"default: {default}"


def _choices(annotation: Any) -> str:
    inner = _unwrap_optional(annotation)
    if get_origin(inner) is Literal:
        return "one of: " + ", ".join(str(choice) for choice in get_args(inner))
    return ""


def _help(info: FieldInfo) -> str:
    """The field's docstring, its choices and its default: `Passes over the data. (default: 1.0)`."""
    notes = [note for note in (_choices(info.annotation), _default_text(info)) if note]
    text = (info.description or "").strip()
    return f"{text} ({'; '.join(notes)})".strip() if notes else text


def _option_type(annotation: Any) -> tuple[Any, bool] | None:
    """The click-facing type of a field and whether it repeats; None for fields the CLI omits."""
    inner = _unwrap_optional(annotation)
    origin = get_origin(inner)
    if origin is list:
        (item,) = get_args(inner) or (str,)
        return (_option_type(item) or (str, False))[0], True
    if origin is Literal:
        return str, False  # pydantic checks the choice and names the allowed values
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return None  # nested settings (lora:) come from a settings file
    if inner in (bool, int, float, str, Path):
        return inner, False
    if get_origin(inner) in (Union, types.UnionType):  # e.g. list[str] | "all-linear"
        return None
    return str, False


def settings_parameters(
    model: type[BaseModel], *, arguments: Sequence[str] = (), skip: Sequence[str] = ()
) -> list[inspect.Parameter]:
    """One keyword parameter per field (None = not given), `arguments` as positional ones."""
    parameters = []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        kind = _option_type(info.annotation)
        if kind is None:
            continue
        click_type, repeats = kind
        flag = (info.alias or name).replace("_", "-")
        annotation: Any = list[click_type] if repeats else click_type  # type: ignore[valid-type]
        if name in arguments:
            marker: Any = typer.Argument(help=_help(info), show_default=False)
        elif click_type is bool and not repeats:
            marker = typer.Option(f"--{flag}/--no-{flag}", help=_help(info), show_default=False)
        else:
            marker = typer.Option(f"--{flag}", help=_help(info), show_default=False)
        parameters.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[annotation | None, marker],
                default=inspect.Parameter.empty if name in arguments and info.is_required() else None,
            )
        )
    return parameters


def settings_command(
    model: type[BaseModel], *, arguments: Sequence[str] = (), skip: Sequence[str] = ()
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorate `f(overrides, **extra)`: its command takes the model's fields as options."""

    def decorate(function: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(function, eval_str=True).parameters.values())[1:]
        fields = settings_parameters(model, arguments=arguments, skip=skip)
        names = {p.name for p in fields}

        @functools.wraps(function)
        def command(**kwargs: Any) -> None:
            overrides = {
                key: value for key, value in kwargs.items() if key in names and value not in (None, [])
            }
            extra = {key: value for key, value in kwargs.items() if key not in names}
            function(overrides, **extra)

        positional = [p for p in fields if p.name in arguments]
        options = [p for p in fields if p.name not in arguments]
        keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
        ordered = [p.replace(kind=keyword) for p in positional + options + own]
        command.__signature__ = inspect.Signature(ordered)  # type: ignore[attr-defined]
        return command

    return decorate
