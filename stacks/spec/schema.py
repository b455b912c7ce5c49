"""The JSON Schema of a spec file, exact per provider and per flavor (for editors).

pydantic's schema of the discriminated unions, plus what the parser accepts before
validation: ``provider`` may be left out on a local stack, a component may be a flavor name
(``orchestrator: docker``) or a mapping without ``flavor`` (the provider's default).
"""

from __future__ import annotations

from typing import Any


def spec_json_schema() -> dict[str, Any]:
    from stacks.spec import COMPONENTS_CLASSES, SPEC_ADAPTER, SPEC_CLASSES, Provider

    schema = SPEC_ADAPTER.json_schema()
    defs = schema["$defs"]
    for provider, components_cls in COMPONENTS_CLASSES.items():
        spec_def = defs[SPEC_CLASSES[provider].__name__]
        if provider is Provider.local:
            spec_def["required"] = [r for r in spec_def.get("required", []) if r != "provider"]
        comps = defs[components_cls.__name__]["properties"]
        for component, flavors in components_cls.offered.items():
            prop = comps[component]
            members = _members(prop)
            for ref in members:
                member = defs[ref.rsplit("/", 1)[-1]]
                tag = member["properties"]["flavor"]["const"]
                if tag == flavors[0].value:
                    member["required"] = [r for r in member.get("required", []) if r != "flavor"]
            names = {"type": "string", "enum": [f.value for f in flavors]}
            without_default = {
                k: v for k, v in prop.items() if k not in ("default", "discriminator")
            }
            comps[component] = {
                "anyOf": [names, without_default],
                "description": f"a flavor name or a mapping of its settings: "
                f"{', '.join(f.value for f in flavors)} (default {flavors[0].value})",
            }
    schema["title"] = "mlstack stack spec"
    schema.pop("discriminator", None)
    return schema


def _members(prop: dict[str, Any]) -> list[str]:
    if "$ref" in prop:
        return [prop["$ref"]]
    return [m["$ref"] for m in prop.get("oneOf", prop.get("anyOf", [])) if "$ref" in m]
