"""StackSpec: the one spec file a user writes, parsed once into typed pydantic models.

A minimal local spec is two lines::

    name: demo
    provider: local

The spec is discriminated by ``provider`` (``LocalStackSpec``, ``AwsStackSpec``,
``KubernetesStackSpec``); each component by ``flavor``, with only that flavor's settings.
Every error names the file, the field path, the bad value and what is allowed
(:func:`load_spec`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from stacks.spec.aws import FARGATE_MEMORY_GIB, AwsComponents, AwsStackSpec
from stacks.spec.base import (
    COMPONENT_LABELS,
    FLAVOR_ENUMS,
    ArtifactStoreFlavor,
    ComponentsBase,
    DeployerFlavor,
    Flavor,
    KubernetesTarget,
    MetadataFlavor,
    OrchestratorFlavor,
    Provider,
    RegistryFlavor,
    SecretsFlavor,
    StackSpec,
    TrackerFlavor,
    parse_ttl,
    redact_url,
)
from stacks.spec.kubernetes import KubernetesComponents, KubernetesStackSpec
from stacks.spec.local import LocalComponents, LocalStackSpec

AnySpec = Annotated[
    LocalStackSpec | AwsStackSpec | KubernetesStackSpec, Field(discriminator="provider")
]
SPEC_ADAPTER: TypeAdapter[StackSpec] = TypeAdapter(AnySpec)

SPEC_CLASSES: dict[Provider, type[StackSpec]] = {
    Provider.local: LocalStackSpec,
    Provider.aws: AwsStackSpec,
    Provider.kubernetes: KubernetesStackSpec,
}
COMPONENTS_CLASSES: dict[Provider, type[ComponentsBase]] = {
    Provider.local: LocalComponents,
    Provider.aws: AwsComponents,
    Provider.kubernetes: KubernetesComponents,
}
# Capabilities as data: which flavors each provider offers. The first is the default.
SUPPORTED = {provider: cls.offered for provider, cls in COMPONENTS_CLASSES.items()}
DEFAULT_TTL = {provider: cls.default_ttl for provider, cls in SPEC_CLASSES.items()}
COMPONENTS = list(LocalComponents.model_fields)


def json_schema() -> dict[str, Any]:
    """The exact JSON Schema of a spec file: per provider, per flavor (for editors)."""
    from stacks.spec.schema import spec_json_schema

    return spec_json_schema()


def load_spec(path: str | Path) -> StackSpec:
    """Read and validate a spec file; raise SpecError with one clear line on any problem."""
    from stacks.spec.parse import parse_spec_file

    return parse_spec_file(Path(path))


__all__ = [
    "COMPONENTS",
    "COMPONENT_LABELS",
    "DEFAULT_TTL",
    "FARGATE_MEMORY_GIB",
    "FLAVOR_ENUMS",
    "SPEC_ADAPTER",
    "SUPPORTED",
    "ArtifactStoreFlavor",
    "AwsStackSpec",
    "DeployerFlavor",
    "Flavor",
    "KubernetesStackSpec",
    "KubernetesTarget",
    "LocalStackSpec",
    "MetadataFlavor",
    "OrchestratorFlavor",
    "Provider",
    "RegistryFlavor",
    "SecretsFlavor",
    "StackSpec",
    "TrackerFlavor",
    "json_schema",
    "load_spec",
    "parse_ttl",
    "redact_url",
]
