"""Specs as older versions stored them in the state file, read into today's models.

Before per-flavor specs (outputs version 1), a stored spec carried every flavor's settings
on every component (``tracker: {flavor: none, cpu: 0.5, db_instance_class: ...}``) and
``region``/``kubernetes`` on every provider. Those were defaults nothing read; they are
dropped here so an old state file loads. User input never goes through this: a spec file
with another flavor's setting is still an error (:mod:`stacks.spec.parse`).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from stacks.spec.base import Provider, StackSpec


def upgrade_stored_spec(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with only the fields today's model of its provider and flavors has."""
    from stacks.spec import COMPONENTS_CLASSES, SPEC_CLASSES

    provider = Provider(data.get("provider") or Provider.local)
    spec_cls, components_cls = SPEC_CLASSES[provider], COMPONENTS_CLASSES[provider]
    out = {k: v for k, v in data.items() if k in spec_cls.model_fields}
    components = data.get("components")
    if isinstance(components, dict):
        kept: dict[str, Any] = {}
        for name, value in components.items():
            model = None
            if isinstance(value, dict) and isinstance(value.get("flavor"), str):
                model = components_cls.flavor_model(name, value["flavor"])
            if model is not None:
                value = {k: v for k, v in value.items() if k in model.model_fields}
            kept[name] = value
        out["components"] = kept
    return out


def load_stored_spec(data: dict[str, Any]) -> StackSpec:
    """A spec read back from the state file, whichever mlstack version wrote it."""
    try:
        return StackSpec.model_validate(data)
    except ValidationError:
        return StackSpec.model_validate(upgrade_stored_spec(data))
