"""The base of every step's typed parameters, and the one-line message for a bad value.

A step's config is a frozen pydantic model whose fields carry type, default, range and a
one-line help text; pipelines/parameters.py builds the run parameters from these fields, so
each is declared once. Validation is strict (a string is not a number, 1 is not `true`),
except that an integer is accepted, and stored, as a float.
"""

from __future__ import annotations

import contextlib
import contextvars
import types
import typing
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from edgetune.errors import EdgetuneError

# Set while a caller that names fields its own way (the run parameters) validates a model:
# pydantic's error then reaches it unchanged instead of as an EdgetuneError.
_RAW_ERRORS = contextvars.ContextVar("raw_errors", default=False)


@contextlib.contextmanager
def raw_errors() -> Iterator[None]:
    """Within this block a StepConfig raises pydantic's ValidationError, with its locations."""
    token = _RAW_ERRORS.set(True)
    try:
        yield
    finally:
        _RAW_ERRORS.reset(token)


class StepConfig(BaseModel):
    """A step's parameters: frozen, strict, unknown fields refused.

    Constructing one with a bad value raises EdgetuneError naming the step, the field,
    the value and what is accepted (`prune target_sparsity=1.5; accepted: a number in [0, 1)`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    step: ClassVar[str] = ""

    def __init__(self, **data: Any) -> None:
        if _RAW_ERRORS.get():
            super().__init__(**data)
            return
        try:
            super().__init__(**data)
        except ValidationError as e:
            message = explain(type(self), e)
            if e.errors()[0]["loc"] and self.step:  # a rule across fields names its step itself
                message = f"{self.step} {message}"
            raise EdgetuneError(message) from None


def explain(
    model: type[BaseModel], error: ValidationError, names: dict[str, str] | None = None
) -> str:
    """`field=value; accepted: ...` for the first problem in `error`.

    Args:
        model: the model that was validated.
        error: pydantic's error.
        names: how to call a top-level field in the message (run parameter names).
    """
    first = error.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"]]
    if not loc:  # a rule across fields (a model validator): its message says it all
        return first["msg"].removeprefix("Value error, ")
    names = names or {}
    where = ".".join([names.get(loc[0], loc[0]), *loc[1:]])
    owner, info = _field(model, loc)
    if first["type"] == "extra_forbidden":
        return f"unknown field {loc[-1]!r}; accepted: {', '.join(owner.model_fields)}"
    if first["type"] == "missing":
        return f"{where} is required; accepted: {accepted(info)}"
    if first["type"] == "value_error":  # a field validator's own words
        return f"{where}={first['input']!r}; {first['msg'].removeprefix('Value error, ')}"
    return f"{where}={first['input']!r}; accepted: {accepted(info)}"


def _field(model: type[BaseModel], loc: list[str]) -> tuple[type[BaseModel], FieldInfo | None]:
    """The model that owns the last name in `loc`, and that field (None if unknown).

    Inside a dict or list field, that field itself.
    """
    owner: type[BaseModel] = model
    for name in loc[:-1]:
        inner = owner.model_fields.get(name)
        if inner is None:
            break
        if not is_model(inner.annotation):
            return owner, inner
        owner = inner.annotation
    return owner, owner.model_fields.get(loc[-1])


def is_model(annotation: Any) -> bool:
    """Whether a field's type is itself a model (a nested policy, a dict to KFP)."""
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def kind(annotation: Any) -> str:
    """The type's name as a user reads it: int, float, bool, str, dict."""
    if is_model(annotation):
        return "dict"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(kind(a) for a in typing.get_args(annotation))
    if origin is not None:  # dict[str, str] is a dict to a user and to KFP
        return kind(origin)
    return getattr(annotation, "__name__", str(annotation))


def value_range(info: FieldInfo) -> str:
    """The field's bounds in interval notation (`[0, 1)`, `>= 1`), or "" when unbounded."""
    low = high = None
    for rule in info.metadata:  # annotated_types' Ge, Gt, Le, Lt, as pydantic keeps them
        if getattr(rule, "ge", None) is not None:
            low = f"[{rule.ge:g}"
        elif getattr(rule, "gt", None) is not None:
            low = f"({rule.gt:g}"
        elif getattr(rule, "le", None) is not None:
            high = f"{rule.le:g}]"
        elif getattr(rule, "lt", None) is not None:
            high = f"{rule.lt:g})"
    if low and high:
        return f"{low}, {high}"
    if low:
        return (">= " if low[0] == "[" else "> ") + low[1:]
    if high:
        return ("<= " if high[-1] == "]" else "< ") + high[:-1]
    return ""


_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "dict": "a mapping",
    "list": "a list",
}


def accepted(info: FieldInfo | None) -> str:
    """What a field accepts, in words: `an integer >= 1`, `a number in [0, 1)`, ..."""
    if info is None:
        return "a known field"
    if is_model(info.annotation):
        return f"a mapping with fields {', '.join(info.annotation.model_fields)}"
    words = _WORDS.get(kind(info.annotation), kind(info.annotation))
    if typing.get_origin(info.annotation) in (dict, list):
        words = f"{words} ({_plain(info.annotation)})"
    if any(getattr(rule, "min_length", 0) for rule in info.metadata):
        words = f"a non-empty {words.removeprefix('a ')}"
    bounds = value_range(info)
    if not bounds:
        return words
    return f"{words} {'in ' if bounds[0] in '[(' else ''}{bounds}"


def _plain(annotation: Any) -> str:
    """`dict[str, str]`, without module prefixes."""
    args = typing.get_args(annotation)
    name = getattr(typing.get_origin(annotation) or annotation, "__name__", str(annotation))
    return f"{name}[{', '.join(_plain(a) for a in args)}]" if args else name
