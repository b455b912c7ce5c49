"""StackOutputs: the versioned contract between a provisioned stack and everything that uses it.

The runner knows a stack only through this model. Secret fields are ``SecretStr``: they print
as ``**********``, are dropped by :meth:`StackOutputs.public`, and are resolved from the
stack's secrets backend when a run needs them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

OUTPUTS_VERSION: Literal[1] = 1


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArtifactStoreOutputs(_Out):
    kind: Literal["local", "s3", "minio"]
    uri: str = Field(description="Root URI of the artifact store: file:///... or s3://bucket/...")
    endpoint_url: str | None = None
    region: str | None = None


class RegistryOutputs(_Out):
    kind: Literal["none", "local", "ecr", "kubernetes"]
    url: str | None = None
    auth: Literal["none", "basic", "ecr"] = "none"


class OrchestratorOutputs(_Out):
    kind: Literal["local", "docker", "aws_batch", "kubernetes"]
    max_parallel: int = 4
    job_queue: str | None = None
    job_role_arn: str | None = None
    execution_role_arn: str | None = Field(None, description="aws_batch: Fargate execution role")
    log_group: str | None = None
    namespace: str | None = None
    context: str | None = None
    service_account: str | None = None
    base_image: str | None = None


class SecretsOutputs(_Out):
    kind: Literal["local", "aws_secrets_manager", "kubernetes"]
    path: str | None = Field(None, description="local: the encrypted store file")
    key_file: str | None = Field(None, description="local: the 0600 key file")
    prefix: str | None = None
    region: str | None = None
    namespace: str | None = None


class TrackerOutputs(_Out):
    kind: Literal["mlflow", "none"]
    uri: str | None = None


class DeployerOutputs(_Out):
    kind: Literal["local", "sagemaker", "kubernetes", "none"]
    url: str | None = Field(None, description="local: the deployer service's URL")
    workdir: str | None = Field(None, description="local: where endpoint records and logs live")
    role_arn: str | None = None
    namespace: str | None = None
    service_account: str | None = None
    instance_type: str | None = None


class MetadataOutputs(_Out):
    url: str
    token: SecretStr | None = Field(None, description="Bearer token; never persisted")
    token_secret: str = Field(
        "mlstack-metadata-token", description="Name of the token in the secrets backend"
    )


class StackOutputs(_Out):
    """Everything a run needs to know about a provisioned stack."""

    version: Literal[1] = OUTPUTS_VERSION
    stack: str
    stack_id: str
    provider: Literal["local", "aws", "kubernetes"]
    region: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    artifact_store: ArtifactStoreOutputs
    container_registry: RegistryOutputs
    orchestrator: OrchestratorOutputs
    secrets: SecretsOutputs
    tracker: TrackerOutputs
    deployer: DeployerOutputs
    metadata: MetadataOutputs

    def public(self) -> dict[str, Any]:
        """JSON-able outputs with every secret value removed (for state files and output)."""
        data = self.model_dump(mode="json")
        data["metadata"]["token"] = None
        return data

    def revealed(self) -> dict[str, Any]:
        """JSON-able outputs including secret values (only for --show-secrets)."""
        data = self.model_dump(mode="json")
        token = self.metadata.token
        data["metadata"]["token"] = token.get_secret_value() if token else None
        return data

    def with_token(self, token: str) -> StackOutputs:
        """A copy whose metadata token is set (resolved from the secrets backend)."""
        metadata = self.metadata.model_copy(update={"token": SecretStr(token)})
        return self.model_copy(update={"metadata": metadata})
