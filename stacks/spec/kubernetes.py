"""The kubernetes provider's spec: each component's flavors and their settings."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from stacks.spec.base import (
    ArtifactStoreFlavor,
    ComponentsBase,
    DeployerFlavor,
    Flavor,
    KubernetesTarget,
    MaxParallel,
    MetadataFlavor,
    OrchestratorFlavor,
    Provider,
    RegistryFlavor,
    SecretsFlavor,
    StackSpec,
    TrackerFlavor,
)
from stacks.spec.local import NoDeployer, NoTracker


class KubernetesOrchestrator(Flavor):
    """Each step a pod in the stack's namespace."""

    flavor: Literal[OrchestratorFlavor.kubernetes] = OrchestratorFlavor.kubernetes
    max_parallel: MaxParallel = 4
    base_image: str | None = None


class MinioArtifactStore(Flavor):
    """MinIO in the cluster on a persistent volume of ``size_gib``."""

    flavor: Literal[ArtifactStoreFlavor.minio] = ArtifactStoreFlavor.minio
    size_gib: Annotated[int, Field(ge=1, le=16384)] = 10


class KubernetesRegistry(Flavor):
    flavor: Literal[RegistryFlavor.kubernetes] = RegistryFlavor.kubernetes


class KubernetesSecrets(Flavor):
    flavor: Literal[SecretsFlavor.kubernetes] = SecretsFlavor.kubernetes


class KubernetesMlflowTracker(Flavor):
    """MLflow as a Deployment in the stack's namespace."""

    flavor: Literal[TrackerFlavor.mlflow] = TrackerFlavor.mlflow
    cpu: Annotated[float, Field(gt=0, le=16)] = 0.5
    memory_gib: Annotated[float, Field(gt=0, le=120)] = 1.0
    # An MLflow image that already has psycopg2 and boto3: nothing is installed at start.
    image: str | None = None


class KubernetesDeployer(Flavor):
    flavor: Literal[DeployerFlavor.kubernetes] = DeployerFlavor.kubernetes


class KubernetesMetadata(Flavor):
    """The metadata server; SQLite on a volume unless ``database_url`` (PostgreSQL) is set."""

    flavor: Literal[MetadataFlavor.mlstack] = MetadataFlavor.mlstack
    database_url: str | None = None
    image: str | None = None

    @field_validator("database_url")
    @classmethod
    def _postgres(cls, value: str | None) -> str | None:
        if value and not value.startswith("postgres"):
            raise ValueError(
                "kubernetes stacks take a postgresql:// URL reachable from the cluster"
                " (or none, for SQLite on a volume)"
            )
        return value


class KubernetesComponents(ComponentsBase):
    provider: ClassVar[Provider] = Provider.kubernetes
    offered: ClassVar[dict[str, tuple]] = {
        "orchestrator": (OrchestratorFlavor.kubernetes,),
        "artifact_store": (ArtifactStoreFlavor.minio,),
        "container_registry": (RegistryFlavor.kubernetes,),
        "secrets": (SecretsFlavor.kubernetes,),
        "tracker": (TrackerFlavor.mlflow, TrackerFlavor.none),
        "deployer": (DeployerFlavor.kubernetes, DeployerFlavor.none),
        "metadata": (MetadataFlavor.mlstack,),
    }

    orchestrator: KubernetesOrchestrator = KubernetesOrchestrator()
    artifact_store: MinioArtifactStore = MinioArtifactStore()
    container_registry: KubernetesRegistry = KubernetesRegistry()
    secrets: KubernetesSecrets = KubernetesSecrets()
    tracker: Annotated[KubernetesMlflowTracker | NoTracker, Field(discriminator="flavor")] = (
        KubernetesMlflowTracker()
    )
    deployer: Annotated[KubernetesDeployer | NoDeployer, Field(discriminator="flavor")] = (
        KubernetesDeployer()
    )
    metadata: KubernetesMetadata = KubernetesMetadata()


class KubernetesStackSpec(StackSpec):
    """A stack in one namespace of an existing cluster (a Pulumi program)."""

    default_ttl: ClassVar[str | None] = "8h"

    provider: Literal[Provider.kubernetes]
    kubernetes: KubernetesTarget
    components: KubernetesComponents = KubernetesComponents()
