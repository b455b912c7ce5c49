"""Pipeline parameters, validated and coerced against the signature's annotations (pydantic).

``--param KEY=VALUE`` values arrive as :class:`RawParam` strings: for ``n: int`` the text
``"3"`` becomes ``3``, for ``flag: bool`` ``"False"`` becomes ``False``, for ``s: str``
``"123"`` stays ``"123"``; a list or dict annotation also accepts JSON text. Unannotated
parameters get the JSON value of the text, or the text itself. Python values (the API)
are validated the same way. A value that does not fit is one line naming the parameter,
the value and the type (exit 2), raised before anything runs.
"""

from __future__ import annotations

import inspect
import json
import typing
from typing import TYPE_CHECKING, Any

from runner.errors import PipelineDefinitionError

if TYPE_CHECKING:
    from runner.sdk import Pipeline


class RawParam(str):
    """A parameter value as typed on the command line, not yet interpreted."""


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def coerce_params(pipeline: Pipeline, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` validated against ``pipeline``'s annotations; raises on the first misfit."""
    if not values:
        return {}
    try:
        hints = typing.get_type_hints(pipeline.func)
    except Exception:  # an annotation that does not resolve: fall back to the raw ones
        hints = dict(getattr(pipeline.func, "__annotations__", {}))
    out: dict[str, Any] = {}
    for name, value in values.items():
        param = pipeline.signature.parameters.get(name)
        annotation = hints.get(name, inspect.Parameter.empty)
        if param is None or annotation in (inspect.Parameter.empty, Any):
            out[name] = _json_or_text(value) if isinstance(value, RawParam) else value
            continue
        out[name] = _validate(pipeline.name, name, value, annotation)
    return out


def _validate(pipeline: str, name: str, value: Any, annotation: Any) -> Any:
    from pydantic import TypeAdapter, ValidationError

    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    candidates = [str(value)] if isinstance(value, RawParam) else [value]
    if isinstance(value, RawParam):
        parsed = _json_or_text(value)
        if parsed is not value and not isinstance(parsed, str):
            candidates.append(parsed)
    error: ValidationError | None = None
    for candidate in candidates:
        try:
            return adapter.validate_python(candidate)
        except ValidationError as exc:
            error = error or exc
    assert error is not None
    reason = error.errors()[0]["msg"]
    shown = str(value) if isinstance(value, RawParam) else repr(value)
    raise PipelineDefinitionError(
        f"pipeline {pipeline!r}: parameter {name!r}: {shown!r} is not a valid"
        f" {_type_name(annotation)} ({reason})",
        f"pass a {_type_name(annotation)}, e.g. --param {name}=...",
    )
