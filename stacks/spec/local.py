"""The local provider's spec: each component's flavors and their settings."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from stacks.spec.base import (
    ArtifactStoreFlavor,
    ComponentsBase,
    DeployerFlavor,
    Flavor,
    MaxParallel,
    MetadataFlavor,
    OrchestratorFlavor,
    Port,
    Provider,
    RegistryFlavor,
    SecretsFlavor,
    StackSpec,
    TrackerFlavor,
)

BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", re.ASCII)


class LocalOrchestrator(Flavor):
    """Steps as processes on this machine, forked from a warm worker."""

    flavor: Literal[OrchestratorFlavor.local] = OrchestratorFlavor.local
    max_parallel: MaxParallel = 4


class DockerOrchestrator(Flavor):
    """Steps as host-network containers of the pipeline's image."""

    flavor: Literal[OrchestratorFlavor.docker]
    max_parallel: MaxParallel = 4
    base_image: str | None = None


class LocalArtifactStore(Flavor):
    """A folder (``path``; default the stack's own ``artifacts/``), as a file:// URI."""

    flavor: Literal[ArtifactStoreFlavor.local] = ArtifactStoreFlavor.local
    path: str | None = None


class S3ArtifactStore(Flavor):
    """Any S3-compatible bucket. Credentials come from the usual AWS environment, never the spec.

    ``create: true`` makes the stack create the bucket at ``up`` and delete it at ``down``;
    otherwise the bucket must exist and ``down`` leaves it alone.
    """

    flavor: Literal[ArtifactStoreFlavor.s3]
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    create: bool = False

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not BUCKET_RE.fullmatch(value):
            raise ValueError("expected an S3 bucket name: 3-63 of a-z 0-9 . -")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return value.strip("/")

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"https?://[^/\s]+", value):
            raise ValueError("expected an http(s):// URL such as http://127.0.0.1:9000")
        if value is not None and "@" in value:
            raise ValueError("put credentials in the AWS environment, not in the URL")
        return value


class NoRegistry(Flavor):
    flavor: Literal[RegistryFlavor.none] = RegistryFlavor.none


class LocalRegistry(Flavor):
    """A local OCI registry (docker-registry) on 127.0.0.1."""

    flavor: Literal[RegistryFlavor.local]
    port: Port | None = None


class LocalSecrets(Flavor):
    """A Fernet-encrypted file with a 0600 key file in the stack's folder."""

    flavor: Literal[SecretsFlavor.local] = SecretsFlavor.local


class LocalMlflowTracker(Flavor):
    """An MLflow tracking server + model registry on SQLite."""

    flavor: Literal[TrackerFlavor.mlflow] = TrackerFlavor.mlflow
    port: Port | None = None


class NoTracker(Flavor):
    flavor: Literal[TrackerFlavor.none]


class LocalDeployer(Flavor):
    """Model endpoints (`mlflow models serve`) started by the stack's deployer service."""

    flavor: Literal[DeployerFlavor.local] = DeployerFlavor.local


class NoDeployer(Flavor):
    flavor: Literal[DeployerFlavor.none]


class LocalMetadata(Flavor):
    """The metadata server; SQLite in the stack's folder unless ``database_url`` is set."""

    flavor: Literal[MetadataFlavor.mlstack] = MetadataFlavor.mlstack
    port: Port | None = None
    database_url: str | None = None


class LocalComponents(ComponentsBase):
    provider: ClassVar[Provider] = Provider.local
    offered: ClassVar[dict[str, tuple]] = {
        "orchestrator": (OrchestratorFlavor.local, OrchestratorFlavor.docker),
        "artifact_store": (ArtifactStoreFlavor.local, ArtifactStoreFlavor.s3),
        "container_registry": (RegistryFlavor.none, RegistryFlavor.local),
        "secrets": (SecretsFlavor.local,),
        "tracker": (TrackerFlavor.mlflow, TrackerFlavor.none),
        "deployer": (DeployerFlavor.local, DeployerFlavor.none),
        "metadata": (MetadataFlavor.mlstack,),
    }

    orchestrator: Annotated[
        LocalOrchestrator | DockerOrchestrator, Field(discriminator="flavor")
    ] = LocalOrchestrator()
    artifact_store: Annotated[
        LocalArtifactStore | S3ArtifactStore, Field(discriminator="flavor")
    ] = LocalArtifactStore()
    container_registry: Annotated[NoRegistry | LocalRegistry, Field(discriminator="flavor")] = (
        NoRegistry()
    )
    secrets: LocalSecrets = LocalSecrets()
    tracker: Annotated[LocalMlflowTracker | NoTracker, Field(discriminator="flavor")] = (
        LocalMlflowTracker()
    )
    deployer: Annotated[LocalDeployer | NoDeployer, Field(discriminator="flavor")] = LocalDeployer()
    metadata: LocalMetadata = LocalMetadata()


class LocalStackSpec(StackSpec):
    """A stack of real local services on this machine."""

    provider: Literal[Provider.local] = Provider.local
    components: LocalComponents = LocalComponents()

    @model_validator(mode="after")
    def _rules(self) -> Self:
        c = self.components
        if isinstance(c.orchestrator, DockerOrchestrator) and isinstance(
            c.container_registry, NoRegistry
        ):
            raise ValueError(
                "components.container_registry: orchestrator docker needs a registry;"
                " set container_registry: local"
            )
        return self
