"""Reading a spec file and turning every failure into one line that says how to fix it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from stacks.common.errors import SpecError
from stacks.spec.base import (
    COMPONENT_LABELS,
    FLAVOR_ENUMS,
    ComponentsBase,
    Flavor,
    Provider,
    StackSpec,
)

MISSING_HINTS = {
    "region": "an aws stack needs a region (for example eu-west-1)",
    "kubernetes": "a kubernetes stack needs kubernetes.kubeconfig and kubernetes.context"
    " (the cluster to deploy into)",
}
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
        line = format_error(errors[0], data)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SpecError(f"{source}: {line}{more}") from None


def _spec_class(provider: str) -> type[StackSpec]:
    from stacks.spec import SPEC_CLASSES

    return SPEC_CLASSES[Provider(provider)]


def _walk(loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], list[type[BaseModel] | None]]:
    """Drop pydantic's union tags from ``loc``; return the path as the user wrote it and the
    model owning each prefix of it (``models[i]`` owns ``path[i]``)."""
    parts = list(loc)
    model: type[BaseModel] | None = StackSpec
    if parts and str(parts[0]) in Provider.__members__:
        model = _spec_class(str(parts.pop(0)))
    path: list[Any] = []
    models: list[type[BaseModel] | None] = []
    while parts:
        part = parts.pop(0)
        path.append(part)
        models.append(model)
        field = model.model_fields.get(str(part)) if model is not None else None
        if field is None:
            model = None
            continue
        candidates = _models(field.annotation)
        if len(candidates) > 1 and parts and issubclass(candidates[0], Flavor):
            tag = str(parts.pop(0))
            model = next((m for m in candidates if _flavor_name(m) == tag), None)
        else:
            model = candidates[0] if candidates else None
    models.append(model)
    return tuple(path), models


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        found.extend(_models(arg))
    return found


def _flavor_name(model: type[BaseModel]) -> str:
    return str(get_args(model.model_fields["flavor"].annotation)[0].value)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _segment(part: Any) -> str:
    """A path segment as typed, or quoted when it is not a plain name (one line always)."""
    text = str(part)
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def _provider_of(data: Any) -> str:
    value = data.get("provider", "local") if isinstance(data, dict) else "local"
    return value if isinstance(value, str) and value in Provider.__members__ else "local"


def _unknown_field(path: tuple[Any, ...], owner: type[BaseModel] | None, data: Any) -> str:
    where = ".".join(_segment(p) for p in path)
    if owner is not None and issubclass(owner, Flavor) and len(path) >= 3:
        component = str(path[-2])
        label = COMPONENT_LABELS.get(component, component)
        settings = ", ".join(owner.settings()) or "none"
        provider = _provider_of(data)
        article = "an" if provider[0] in "aeiou" else "a"
        return (
            f"{where}: not a setting of the {_flavor_name(owner)} {label} on {article}"
            f" {provider} stack (settings: {settings})"
        )
    provider = _provider_of(data)
    if len(path) == 1 and owner is not None and issubclass(owner, StackSpec):
        from stacks.spec import SPEC_CLASSES

        takers = [p.value for p, cls in SPEC_CLASSES.items() if str(path[0]) in cls.model_fields]
        if takers:
            return (
                f"{where}: only {' and '.join(takers)} stacks take a {where}, not {provider}"
                f" (allowed fields here: {', '.join(owner.model_fields)})"
            )
    allowed = ", ".join(owner.model_fields) if owner else "see `mlstack schema`"
    return f"{where}: unknown field; allowed fields here: {allowed}"


def _flavor_error(path: tuple[Any, ...], value: Any) -> str:
    component = str(path[-2]) if len(path) >= 2 else ""
    enum = FLAVOR_ENUMS.get(component)
    where = ".".join(_segment(p) for p in path)
    allowed = ", ".join(m.value for m in enum) if enum else "see `mlstack schema`"
    return f"{where}: {_show(value)} is not valid; allowed: {allowed}"


def format_error(error: Any, data: Any = None) -> str:
    """One pydantic error -> 'field.path: problem; got VALUE; allowed: ...'."""
    path, models = _walk(tuple(error["loc"]))
    where = ".".join(_segment(p) for p in path) or "(top level)"
    kind = error["type"]
    value = error.get("input")
    msg = str(error["msg"]).removeprefix("Value error, ")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        discriminator = str(error.get("ctx", {}).get("discriminator", "flavor")).strip("'")
        tag = value.get(discriminator) if isinstance(value, dict) else error["ctx"].get("tag")
        if discriminator == "provider":
            allowed = ", ".join(p.value for p in Provider)
            return f"provider: {_show(tag)} is not valid; allowed: {allowed}"
        return _flavor_error((*path, "flavor"), tag)
    if kind == "extra_forbidden":
        return _unknown_field(path, models[-2] if len(models) >= 2 else None, data)
    if kind == "missing":
        hint = MISSING_HINTS.get(where)
        return f"{where}: {hint}" if hint else f"{where}: required field is missing"
    if kind in ("literal_error", "enum") and path and path[-1] == "flavor":
        return _flavor_error(path, value)
    if kind == "enum":
        return f"{where}: {_show(value)} is not valid; allowed: {error['ctx']['expected']}"
    if kind == "value_error" and (not path or msg.startswith("components.")):
        return msg
    if kind in ("model_type", "model_attributes_type"):
        owner = models[-1]
        if owner is not None and issubclass(owner, ComponentsBase | StackSpec):
            return f"{where}: expected a mapping of fields, got {_show(value)}"
        return f"{where}: expected a mapping of settings (or a flavor name), got {_show(value)}"
    return f"{where}: {msg}; got {_show(value)}"
