"""StackSpec: the one spec file a user writes, parsed once into typed pydantic models.

A minimal local spec is two lines::

    name: demo
    provider: local

Every component gets a per-provider default flavor; every error names the file, the field
path, the bad value and what is allowed (see :func:`load_spec`).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

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


Port = Annotated[int, Field(ge=1024, le=65535)]
DB_CLASS_RE = re.compile(r"^db\.[a-z][a-z0-9-]*\.[a-z0-9]+$")
ML_INSTANCE_RE = re.compile(r"^ml\.[a-z][a-z0-9-]*\.[a-z0-9]+$")
# Fargate task sizes: vCPU -> the memory (GiB) it can have.
FARGATE_MEMORY_GIB: dict[float, tuple[float, ...]] = {
    0.25: (0.5, 1, 2),
    0.5: (1, 2, 3, 4),
    1: tuple(range(2, 9)),
    2: tuple(range(4, 17)),
    4: tuple(range(8, 31)),
    8: tuple(range(16, 61, 4)),
    16: tuple(range(32, 121, 8)),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class _Component(_Strict):
    """A component: a flavor plus its settings. ``orchestrator: docker`` is shorthand."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"flavor": data}
        return data


class OrchestratorSpec(_Component):
    flavor: OrchestratorFlavor | None = None
    max_parallel: Annotated[int, Field(ge=1, le=64)] = 4
    max_vcpus: Annotated[int, Field(ge=1, le=4096)] = 16
    base_image: str | None = None


class ArtifactStoreSpec(_Component):
    flavor: ArtifactStoreFlavor | None = None
    path: str | None = None
    versioning: bool = False
    size_gib: Annotated[int, Field(ge=1, le=16384)] = 10


class ContainerRegistrySpec(_Component):
    flavor: RegistryFlavor | None = None
    port: Port | None = None


class SecretsSpec(_Component):
    flavor: SecretsFlavor | None = None


class TrackerSpec(_Component):
    flavor: TrackerFlavor | None = None
    port: Port | None = None
    db_instance_class: str = "db.t4g.micro"
    cpu: Annotated[float, Field(gt=0, le=16)] = 0.5
    memory_gib: Annotated[float, Field(gt=0, le=120)] = 1.0

    @field_validator("db_instance_class")
    @classmethod
    def _db_class(cls, value: str) -> str:
        if not DB_CLASS_RE.match(value):
            raise ValueError("expected an RDS instance class such as db.t4g.micro or db.m7g.large")
        return value


class DeployerSpec(_Component):
    flavor: DeployerFlavor | None = None
    instance_type: str = "ml.t3.medium"

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str) -> str:
        if not ML_INSTANCE_RE.match(value):
            raise ValueError("expected a SageMaker instance type such as ml.t3.medium")
        return value


class MetadataSpec(_Component):
    flavor: MetadataFlavor | None = None
    port: Port | None = None
    database_url: str | None = None
    image: str | None = None


class Components(_Strict):
    orchestrator: OrchestratorSpec = OrchestratorSpec()
    artifact_store: ArtifactStoreSpec = ArtifactStoreSpec()
    container_registry: ContainerRegistrySpec = ContainerRegistrySpec()
    secrets: SecretsSpec = SecretsSpec()
    tracker: TrackerSpec = TrackerSpec()
    deployer: DeployerSpec = DeployerSpec()
    metadata: MetadataSpec = MetadataSpec()


class KubernetesTarget(_Strict):
    kubeconfig: str
    context: str
    storage_class: str | None = None


# Capabilities as data: which flavors each provider supports. The first is the default.
SUPPORTED: dict[Provider, dict[str, tuple[StrEnum, ...]]] = {
    Provider.local: {
        "orchestrator": (OrchestratorFlavor.local, OrchestratorFlavor.docker),
        "artifact_store": (ArtifactStoreFlavor.local,),
        "container_registry": (RegistryFlavor.none, RegistryFlavor.local),
        "secrets": (SecretsFlavor.local,),
        "tracker": (TrackerFlavor.mlflow, TrackerFlavor.none),
        "deployer": (DeployerFlavor.local, DeployerFlavor.none),
        "metadata": (MetadataFlavor.mlstack,),
    },
    Provider.aws: {
        "orchestrator": (OrchestratorFlavor.aws_batch,),
        "artifact_store": (ArtifactStoreFlavor.s3,),
        "container_registry": (RegistryFlavor.ecr,),
        "secrets": (SecretsFlavor.aws_secrets_manager,),
        "tracker": (TrackerFlavor.mlflow, TrackerFlavor.none),
        "deployer": (DeployerFlavor.sagemaker, DeployerFlavor.none),
        "metadata": (MetadataFlavor.mlstack,),
    },
    Provider.kubernetes: {
        "orchestrator": (OrchestratorFlavor.kubernetes,),
        "artifact_store": (ArtifactStoreFlavor.minio,),
        "container_registry": (RegistryFlavor.kubernetes,),
        "secrets": (SecretsFlavor.kubernetes,),
        "tracker": (TrackerFlavor.mlflow, TrackerFlavor.none),
        "deployer": (DeployerFlavor.kubernetes, DeployerFlavor.none),
        "metadata": (MetadataFlavor.mlstack,),
    },
}

DEFAULT_TTL: dict[Provider, str | None] = {
    Provider.local: None,
    Provider.aws: "8h",
    Provider.kubernetes: "8h",
}

# fullmatch + ASCII: no trailing newline, no non-ASCII digits slip through.
NAME_RE = re.compile(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?", re.ASCII)
TTL_RE = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.ASCII)
TAG_KEY_RE = re.compile(r"[A-Za-z0-9_.:/=+@-]{1,128}", re.ASCII)
REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-\d", re.ASCII)


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


class StackSpec(_Strict):
    """One stack: provider, lifetime, budget, tags and its seven components."""

    name: str
    provider: Provider = Provider.local
    region: str | None = None
    ttl: str | None = None
    budget: Annotated[float, Field(gt=0, le=1_000_000, strict=True)] | None = None
    owner: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    kubernetes: KubernetesTarget | None = None
    components: Components = Components()

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

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not REGION_RE.fullmatch(value):
            raise ValueError("expected an AWS region such as eu-west-1 or us-east-1")
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
    def _provider_rules(self) -> Self:
        supported = SUPPORTED[self.provider]
        filled: dict[str, Any] = {}
        for component, flavors in supported.items():
            spec = getattr(self.components, component)
            if spec.flavor is None:
                filled[component] = spec.model_copy(update={"flavor": flavors[0]})
            elif spec.flavor not in flavors:
                allowed = ", ".join(f.value for f in flavors)
                raise ValueError(
                    f"components.{component}.flavor: {spec.flavor.value!r} is not available"
                    f" on provider {self.provider.value}; allowed: {allowed}"
                )
        if filled:
            object.__setattr__(self, "components", self.components.model_copy(update=filled))
        if self.provider is Provider.aws and self.region is None:
            raise ValueError("region: an aws stack needs a region (for example eu-west-1)")
        if self.provider is not Provider.aws and self.region is not None:
            raise ValueError(f"region: only aws stacks take a region, not {self.provider.value}")
        if self.provider is not Provider.kubernetes and self.kubernetes is not None:
            raise ValueError(
                f"kubernetes: only kubernetes stacks take a cluster target, not"
                f" {self.provider.value}"
            )
        if self.provider is Provider.kubernetes and self.kubernetes is None:
            raise ValueError(
                "kubernetes: a kubernetes stack needs kubernetes.kubeconfig and"
                " kubernetes.context (the cluster to deploy into)"
            )
        self._cloud_rules()
        orchestrator = self.components.orchestrator.flavor
        registry = self.components.container_registry.flavor
        if orchestrator is OrchestratorFlavor.docker and registry is RegistryFlavor.none:
            raise ValueError(
                "components.container_registry: orchestrator docker needs a registry;"
                " set container_registry: local"
            )
        if self.ttl is None and DEFAULT_TTL[self.provider] is not None:
            object.__setattr__(self, "ttl", DEFAULT_TTL[self.provider])
        return self

    def _cloud_rules(self) -> None:
        tracker, url = self.components.tracker, self.components.metadata.database_url
        if self.provider is Provider.aws and tracker.flavor is TrackerFlavor.mlflow:
            sizes = FARGATE_MEMORY_GIB.get(tracker.cpu)
            if sizes is None:
                allowed = ", ".join(f"{c:g}" for c in FARGATE_MEMORY_GIB)
                raise ValueError(f"components.tracker.cpu: on aws (Fargate) use one of {allowed}")
            if tracker.memory_gib not in sizes:
                raise ValueError(
                    f"components.tracker.memory_gib: cpu {tracker.cpu:g} on Fargate takes"
                    f" memory_gib {', '.join(f'{m:g}' for m in sizes)}"
                )
        if self.provider is Provider.aws and url is not None:
            raise ValueError(
                "components.metadata.database_url: aws stacks create their own PostgreSQL"
                " (RDS); remove the setting"
            )
        if self.provider is Provider.kubernetes and url and not url.startswith("postgres"):
            raise ValueError(
                "components.metadata.database_url: kubernetes stacks take a postgresql:// URL"
                " reachable from the cluster (or none, for SQLite on a volume)"
            )

    @property
    def ttl_delta(self) -> timedelta | None:
        return parse_ttl(self.ttl) if self.ttl else None

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


def redact_url(url: str) -> str:
    """Mask the password of ``scheme://user:password@host``."""
    # Greedy up to the last '@' before the path: passwords may themselves contain '@'.
    return re.sub(r"(://[^:/@]+:)[^/]*@", r"\1***@", url)


def load_spec(path: str | Path) -> StackSpec:
    """Read and validate a spec file; raise SpecError with one clear line on any problem."""
    from provisioner.spec_errors import parse_spec_file

    return parse_spec_file(Path(path))
