"""The aws provider's spec: each component's flavors and their settings."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from stacks.spec.base import (
    DB_CLASS_RE,
    ML_INSTANCE_RE,
    REGION_RE,
    ArtifactStoreFlavor,
    ComponentsBase,
    DeployerFlavor,
    Flavor,
    MaxParallel,
    MetadataFlavor,
    OrchestratorFlavor,
    Provider,
    RegistryFlavor,
    SecretsFlavor,
    StackSpec,
    Strict,
    TrackerFlavor,
)
from stacks.spec.local import NoDeployer, NoTracker

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


def fargate_fit(cpu: float | None, memory_gib: float | None) -> tuple[float, float] | None:
    """The smallest Fargate task size (vCPU, GiB) holding the request, as Fargate bills it;
    None beyond the largest. No request at all is Batch's default size."""
    from stacks.common.constants import BATCH_DEFAULT_MEMORY_GIB, BATCH_DEFAULT_VCPU

    if cpu is None and memory_gib is None:
        cpu, memory_gib = BATCH_DEFAULT_VCPU, BATCH_DEFAULT_MEMORY_GIB
    for vcpu, sizes in sorted(FARGATE_MEMORY_GIB.items()):
        if cpu is not None and vcpu < cpu:
            continue
        fits = [gib for gib in sizes if memory_gib is None or gib >= memory_gib]
        if fits:
            return vcpu, float(fits[0])
    return None


class AwsBatchOrchestrator(Flavor):
    """Each step a Batch job on Fargate."""

    flavor: Literal[OrchestratorFlavor.aws_batch] = OrchestratorFlavor.aws_batch
    max_parallel: MaxParallel = 4
    max_vcpus: Annotated[int, Field(ge=1, le=4096)] = 16
    base_image: str | None = None


class AwsS3ArtifactStore(Flavor):
    """A bucket the stack creates (and empties and deletes at ``down``)."""

    flavor: Literal[ArtifactStoreFlavor.s3] = ArtifactStoreFlavor.s3
    versioning: bool = False


class EcrRegistry(Flavor):
    flavor: Literal[RegistryFlavor.ecr] = RegistryFlavor.ecr


class SecretsManager(Flavor):
    flavor: Literal[SecretsFlavor.aws_secrets_manager] = SecretsFlavor.aws_secrets_manager


class AwsMlflowTracker(Flavor):
    """MLflow on ECS Fargate with its own RDS PostgreSQL."""

    flavor: Literal[TrackerFlavor.mlflow] = TrackerFlavor.mlflow
    db_instance_class: str = "db.t4g.micro"
    cpu: Annotated[float, Field(gt=0, le=16)] = 0.5
    memory_gib: Annotated[float, Field(gt=0, le=120)] = 1.0

    @field_validator("db_instance_class")
    @classmethod
    def _db_class(cls, value: str) -> str:
        if not DB_CLASS_RE.match(value):
            raise ValueError("expected an RDS instance class such as db.t4g.micro or db.m7g.large")
        return value

    @model_validator(mode="after")
    def _fargate(self) -> Self:
        sizes = FARGATE_MEMORY_GIB.get(self.cpu)
        if sizes is None:
            allowed = ", ".join(f"{c:g}" for c in FARGATE_MEMORY_GIB)
            raise ValueError(f"components.tracker.cpu: on aws (Fargate) use one of {allowed}")
        if self.memory_gib not in sizes:
            raise ValueError(
                f"components.tracker.memory_gib: cpu {self.cpu:g} on Fargate takes"
                f" memory_gib {', '.join(f'{m:g}' for m in sizes)}"
            )
        return self


class SageMakerDeployer(Flavor):
    flavor: Literal[DeployerFlavor.sagemaker] = DeployerFlavor.sagemaker
    instance_type: str = "ml.t3.medium"

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str) -> str:
        if not ML_INSTANCE_RE.match(value):
            raise ValueError("expected a SageMaker instance type such as ml.t3.medium")
        return value


class AwsMetadata(Flavor):
    """The metadata server on ECS Fargate, on the stack's RDS PostgreSQL."""

    flavor: Literal[MetadataFlavor.mlstack] = MetadataFlavor.mlstack
    image: str | None = None


class AwsComponents(ComponentsBase):
    provider: ClassVar[Provider] = Provider.aws
    offered: ClassVar[dict[str, tuple]] = {
        "orchestrator": (OrchestratorFlavor.aws_batch,),
        "artifact_store": (ArtifactStoreFlavor.s3,),
        "container_registry": (RegistryFlavor.ecr,),
        "secrets": (SecretsFlavor.aws_secrets_manager,),
        "tracker": (TrackerFlavor.mlflow, TrackerFlavor.none),
        "deployer": (DeployerFlavor.sagemaker, DeployerFlavor.none),
        "metadata": (MetadataFlavor.mlstack,),
    }

    orchestrator: AwsBatchOrchestrator = AwsBatchOrchestrator()
    artifact_store: AwsS3ArtifactStore = AwsS3ArtifactStore()
    container_registry: EcrRegistry = EcrRegistry()
    secrets: SecretsManager = SecretsManager()
    tracker: Annotated[AwsMlflowTracker | NoTracker, Field(discriminator="flavor")] = (
        AwsMlflowTracker()
    )
    deployer: Annotated[SageMakerDeployer | NoDeployer, Field(discriminator="flavor")] = (
        SageMakerDeployer()
    )
    metadata: AwsMetadata = AwsMetadata()


EVERYWHERE = "0.0.0.0/0"
ACM_ARN_RE = re.compile(r"arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[A-Za-z0-9-]+", re.ASCII)
DOMAIN_RE = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", re.ASCII)


class NetworkSpec(Strict):
    """How clients reach the stack: TLS identity and who may connect (HTTPS only)."""

    domain: str | None = None
    certificate_arn: str | None = None
    allowed_cidrs: list[str] = Field(default_factory=lambda: [EVERYWHERE], min_length=1)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value is not None and not DOMAIN_RE.fullmatch(value):
            raise ValueError("expected a DNS name such as mlstack.example.com")
        return value

    @field_validator("certificate_arn")
    @classmethod
    def _arn(cls, value: str | None) -> str | None:
        if value is not None and not ACM_ARN_RE.fullmatch(value):
            raise ValueError(
                "expected an ACM certificate ARN such as"
                " arn:aws:acm:eu-west-1:123456789012:certificate/<id>"
            )
        return value

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.IPv4Network(cidr, strict=True)
            except ValueError:
                raise ValueError(
                    f"{cidr!r} is not an IPv4 network in CIDR form such as 203.0.113.0/24"
                ) from None
        return value

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.domain is None) != (self.certificate_arn is None):
            raise ValueError(
                "network.domain and network.certificate_arn go together: set both (a"
                " certificate for that domain) or neither (up generates a private CA)"
            )
        return self


class AwsStackSpec(StackSpec):
    """A stack in one AWS account and region (a Pulumi program)."""

    default_ttl: ClassVar[str | None] = "8h"

    provider: Literal[Provider.aws]
    region: str
    network: NetworkSpec = NetworkSpec()
    components: AwsComponents = AwsComponents()

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not REGION_RE.fullmatch(value):
            raise ValueError("expected an AWS region such as eu-west-1 or us-east-1")
        return value
