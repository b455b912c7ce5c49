"""What every stack spec shares: providers, flavor names, field types and the common fields.

The per-provider specs (``local.py``, ``aws.py``, ``kubernetes.py``) subclass
:class:`StackSpec` and declare their components as discriminated unions of per-flavor config
models, so a setting of another flavor or provider is an error naming the flavor.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Provider(StrEnum):
    """Where a stack runs."""

    local = "local"
    aws = "aws"
    kubernetes = "kubernetes"


class OrchestratorFlavor(StrEnum):
    local = "local"
    docker = "docker"
    aws_batch = "aws_batch"
    kubernetes = "kubernetes"


class ArtifactStoreFlavor(StrEnum):
    local = "local"
    s3 = "s3"
    minio = "minio"


class RegistryFlavor(StrEnum):
    none = "none"
    local = "local"
    ecr = "ecr"
    kubernetes = "kubernetes"


class SecretsFlavor(StrEnum):
    local = "local"
    aws_secrets_manager = "aws_secrets_manager"
    kubernetes = "kubernetes"


class TrackerFlavor(StrEnum):
    mlflow = "mlflow"
    none = "none"


class DeployerFlavor(StrEnum):
    local = "local"
    sagemaker = "sagemaker"
    kubernetes = "kubernetes"
    none = "none"


class MetadataFlavor(StrEnum):
    mlstack = "mlstack"


# The component names, in the order they are shown, with the enum of every flavor name.
FLAVOR_ENUMS: dict[str, type[StrEnum]] = {
    "orchestrator": OrchestratorFlavor,
    "artifact_store": ArtifactStoreFlavor,
    "container_registry": RegistryFlavor,
    "secrets": SecretsFlavor,
    "tracker": TrackerFlavor,
    "deployer": DeployerFlavor,
    "metadata": MetadataFlavor,
}
COMPONENT_LABELS = {
    "orchestrator": "orchestrator",
    "artifact_store": "artifact store",
    "container_registry": "container registry",
    "secrets": "secrets backend",
    "tracker": "tracker",
    "deployer": "deployer",
    "metadata": "metadata server",
}

Port = Annotated[int, Field(ge=1024, le=65535)]
MaxParallel = Annotated[int, Field(ge=1, le=64)]
DB_CLASS_RE = re.compile(r"^db\.[a-z][a-z0-9-]*\.[a-z0-9]+$")
ML_INSTANCE_RE = re.compile(r"^ml\.[a-z][a-z0-9-]*\.[a-z0-9]+$")
# fullmatch + ASCII: no trailing newline, no non-ASCII digits slip through.
NAME_RE = re.compile(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?", re.ASCII)
TTL_RE = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.ASCII)
TAG_KEY_RE = re.compile(r"[A-Za-z0-9_.:/=+@-]{1,128}", re.ASCII)
REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-\d", re.ASCII)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Flavor(Strict):
    """One flavor's settings. Subclasses set ``flavor: Literal[...]`` and their own fields."""

    flavor: Any

    @classmethod
    def settings(cls) -> list[str]:
        """The settings this flavor takes (besides ``flavor``)."""
        return [name for name in cls.model_fields if name != "flavor"]


class ComponentsBase(Strict):
    """A provider's seven components. Each field is a union of that provider's flavors.

    Before validation, ``orchestrator: docker`` becomes ``{flavor: docker}``, a mapping without
    ``flavor`` gets the provider's default flavor, and a flavor the provider does not offer is
    an error listing the ones it does.
    """

    provider: ClassVar[Provider]
    # component -> flavors the provider offers; the first is its default.
    offered: ClassVar[dict[str, tuple[StrEnum, ...]]]

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for component, flavors in cls.offered.items():
            value = out.get(component)
            if value is None:
                continue
            if isinstance(value, str):
                value = {"flavor": value}
            if not isinstance(value, dict):
                continue  # the union reports the wrong type
            value = dict(value)
            if "flavor" not in value or value["flavor"] is None:
                value["flavor"] = flavors[0].value
            name = value["flavor"]
            known = FLAVOR_ENUMS[component]
            if isinstance(name, str) and name in known.__members__ and known(name) not in flavors:
                allowed = ", ".join(f.value for f in flavors)
                raise ValueError(
                    f"components.{component}.flavor: {name!r} is not available"
                    f" on provider {cls.provider.value}; allowed: {allowed}"
                )
            out[component] = value
        return out

    @classmethod
    def flavor_model(cls, component: str, flavor: str) -> type[Flavor] | None:
        """The config model of ``flavor`` for ``component`` on this provider."""
        from typing import get_args

        pending: list[Any] = [cls.model_fields[component].annotation]
        while pending:  # a single model, a union, or an Annotated union of models
            member = pending.pop()
            if isinstance(member, type) and issubclass(member, Flavor):
                field = member.model_fields["flavor"]
                if str(get_args(field.annotation)[0].value) == flavor:
                    return member
            else:
                pending.extend(get_args(member))
        return None


def parse_ttl(text: str) -> timedelta:
    """Parse a TTL such as ``8h``, ``30m``, ``2d`` or ``1h30m``; raise ValueError otherwise."""
    match = TTL_RE.fullmatch(text.strip()) if text else None
    if not match or not any(match.groups()):
        raise ValueError("expected a duration such as 30m, 8h, 2d or 1h30m")
    weeks, days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    try:
        ttl = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise ValueError("must be at most 90d") from None
    if ttl < timedelta(minutes=1):
        raise ValueError("must be at least 1m")
    if ttl > timedelta(days=90):
        raise ValueError("must be at most 90d")
    return ttl


def redact_url(url: str) -> str:
    """Mask the password of ``scheme://user:password@host``."""
    # Greedy up to the last '@' before the path: passwords may themselves contain '@'.
    return re.sub(r"(://[^:/@]+:)[^/]*@", r"\1***@", url)


class KubernetesTarget(Strict):
    kubeconfig: str
    context: str
    storage_class: str | None = None
    # How the user's machine reaches the stack's services: in-cluster names (ClusterIP, for a
    # port-forward) or one cloud load balancer per service.
    service_type: Literal["ClusterIP", "LoadBalancer"] = "ClusterIP"


class StackSpec(Strict):
    """One stack: provider, lifetime, budget, tags and its seven components.

    This is the common base; a parsed spec is always one of the per-provider subclasses
    (``LocalStackSpec``, ``AwsStackSpec``, ``KubernetesStackSpec``), chosen by ``provider``.
    ``StackSpec.model_validate(data)`` picks the subclass.
    """

    default_ttl: ClassVar[str | None] = None

    name: str
    provider: Provider
    ttl: str | None = None
    budget: Annotated[float, Field(gt=0, le=1_000_000, strict=True)] | None = None
    owner: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    components: Any

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:
        if cls is StackSpec:
            from stacks.spec import SPEC_ADAPTER

            return SPEC_ADAPTER.validate_python(_with_provider(obj), **kwargs)
        return super().model_validate(obj, **kwargs)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.fullmatch(value):
            raise ValueError(
                "must be DNS-safe: lowercase letters, digits and '-', starting with a letter,"
                " at most 40 characters (for example 'demo' or 'team-a-dev')"
            )
        return value

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: str | None) -> str | None:
        if value is not None:
            parse_ttl(value)
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key, tag in value.items():
            if not TAG_KEY_RE.fullmatch(key):
                raise ValueError(f"tag key {key!r} must be 1-128 of A-Z a-z 0-9 _.:/=+@-")
            if len(tag) > 256:
                raise ValueError(f"tag {key!r} is longer than 256 characters")
        return value

    @model_validator(mode="after")
    def _default_ttl(self) -> Self:
        if self.ttl is None and self.default_ttl is not None:
            object.__setattr__(self, "ttl", self.default_ttl)
        return self

    @property
    def ttl_delta(self) -> timedelta | None:
        return parse_ttl(self.ttl) if self.ttl else None

    def flavor_of(self, component: str) -> str:
        """The flavor name of ``component`` (for example ``"docker"``)."""
        return str(getattr(self.components, component).flavor.value)

    def redacted(self) -> dict[str, Any]:
        """The spec as JSON-able data with passwords in URLs masked (for state and output)."""
        data = self.model_dump(mode="json")
        url = data["components"]["metadata"].get("database_url")
        if url:
            data["components"]["metadata"]["database_url"] = redact_url(url)
        return data

    def spec_hash(self) -> str:
        """A stable hash of the full spec, for change detection."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _with_provider(obj: Any) -> Any:
    """A spec without ``provider`` is a local stack."""
    if isinstance(obj, dict) and "provider" not in obj:
        return {**obj, "provider": Provider.local.value}
    return obj
