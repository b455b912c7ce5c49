"""Reading a spec file and turning every failure into one line that says how to fix it."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from provisioner.errors import SpecError
from provisioner.spec import StackSpec

MINIMAL = "a minimal spec is two lines: 'name: demo' and 'provider: local'"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys instead of silently keeping the last."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str | int | float | bool) and key is not None:
            mark = key_node.start_mark
            raise SpecError(
                f"line {mark.line + 1}: a key must be a plain name, not a {type(key).__name__}",
                "write fields as `name: value`",
            )
        if key in seen:
            mark = key_node.start_mark
            raise SpecError(
                f"line {mark.line + 1}: duplicate key {key!r}",
                "each field may appear once; remove one of them",
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_yaml(path: Path) -> Any:
    """Load YAML from ``path``; every I/O or syntax problem becomes a SpecError."""
    if not path.exists():
        raise SpecError(f"{path}: no such file", "check the path to the stack spec")
    if path.is_dir():
        raise SpecError(f"{path}: is a directory", "pass the spec file, e.g. stack.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except PermissionError:
        raise SpecError(f"{path}: permission denied", "make the file readable") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not UTF-8 text", "save the spec as UTF-8 YAML") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc.headline}", exc.hint) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(
            f"{path}: YAML syntax error at {where}{problem}",
            "fix the indentation or quoting there",
        ) from None


def parse_spec_file(path: Path) -> StackSpec:
    """Read, parse and validate a spec file."""
    data = read_yaml(path)
    if data is None:
        raise SpecError(f"{path}: the file is empty", MINIMAL)
    if not isinstance(data, dict):
        raise SpecError(
            f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}",
            MINIMAL,
        )
    return parse_spec_data(data, source=str(path))


def parse_spec_data(data: dict[str, Any], source: str = "<spec>") -> StackSpec:
    """Validate already-loaded data; raise SpecError naming ``source`` on failure."""
    try:
        return StackSpec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        line = format_error(errors[0])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SpecError(f"{source}: {line}{more}") from None


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the field at ``loc`` (for listing allowed fields)."""
    model: type[BaseModel] = StackSpec
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        nxt = _first_model(field.annotation)
        if nxt is None:
            return None
        model = nxt
    return model


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _enum_at(loc: tuple[Any, ...]) -> type[Enum] | None:
    parent = _model_at(loc[:-1])
    if parent is None:
        return None
    field = parent.model_fields.get(str(loc[-1]))
    if field is None:
        return None
    candidates = [field.annotation, *get_args(field.annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, Enum):
            return candidate
        if get_origin(candidate) is not None:
            continue
    return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _segment(part: Any) -> str:
    """A path segment as typed, or quoted when it is not a plain name (one line always)."""
    text = str(part)
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def format_error(error: Any) -> str:
    """One pydantic error -> 'field.path: problem; got VALUE; allowed: ...'."""
    loc = tuple(error["loc"])
    path = ".".join(_segment(p) for p in loc) or "(top level)"
    kind = error["type"]
    value = error.get("input")
    msg = str(error["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "see `mlstack schema`"
        return f"{path}: unknown field; allowed fields here: {allowed}"
    if kind == "missing":
        return f"{path}: required field is missing"
    if kind == "enum":
        enum = _enum_at(loc)
        allowed = ", ".join(m.value for m in enum) if enum else error["ctx"]["expected"]
        return f"{path}: {_show(value)} is not valid; allowed: {allowed}"
    if kind == "value_error" and not loc:
        return msg
    if kind == "model_type" or kind == "model_attributes_type":
        return f"{path}: expected a mapping of settings (or a flavor name), got {_show(value)}"
    return f"{path}: {msg}; got {_show(value)}"
