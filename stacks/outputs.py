"""StackOutputs: the versioned contract between a provisioned stack and everything that uses it.

The runner knows a stack only through this model. Each component's outputs are one small
model per kind (a discriminated union on ``kind``) holding only what that kind has. Secret
fields are ``SecretStr``: they print as ``**********``, are dropped by
:meth:`StackOutputs.public`, and are resolved from the stack's secrets backend when a run
needs them. :func:`load_outputs` also reads the outputs of version 1 (one optional bag of
fields per component) from existing state.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from stacks.common.constants import TOKEN_SECRET

OUTPUTS_VERSION: Literal[2] = 2


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- artifact stores ---------------------------------------------------------------------


class LocalArtifactStoreOutputs(_Out):
    kind: Literal["local"] = "local"
    uri: str = Field(description="file:///... root of the store")


class S3ArtifactStoreOutputs(_Out):
    kind: Literal["s3"] = "s3"
    uri: str = Field(description="s3://bucket/prefix root of the store")
    region: str | None = None
    endpoint_url: str | None = Field(None, description="an S3-compatible endpoint, if not AWS")


class MinioArtifactStoreOutputs(_Out):
    kind: Literal["minio"] = "minio"
    uri: str
    endpoint_url: str | None = None


ArtifactStoreOutputs = Annotated[
    LocalArtifactStoreOutputs | S3ArtifactStoreOutputs | MinioArtifactStoreOutputs,
    Field(discriminator="kind"),
]

# -- container registries ----------------------------------------------------------------


class NoRegistryOutputs(_Out):
    kind: Literal["none"] = "none"


class LocalRegistryOutputs(_Out):
    kind: Literal["local"] = "local"
    url: str = Field(description="host:port of the registry")
    auth: Literal["none", "basic"] = "none"


class EcrRegistryOutputs(_Out):
    kind: Literal["ecr"] = "ecr"
    url: str = Field(description="the repository URL")
    auth: Literal["ecr"] = Field("ecr", description="a token from ecr:GetAuthorizationToken")


class KubernetesRegistryOutputs(_Out):
    kind: Literal["kubernetes"] = "kubernetes"
    url: str
    auth: Literal["none", "basic"] = "none"


RegistryOutputs = Annotated[
    NoRegistryOutputs | LocalRegistryOutputs | EcrRegistryOutputs | KubernetesRegistryOutputs,
    Field(discriminator="kind"),
]

# -- orchestrators -----------------------------------------------------------------------


class LocalOrchestratorOutputs(_Out):
    kind: Literal["local"] = "local"
    max_parallel: int = 4


class DockerOrchestratorOutputs(_Out):
    kind: Literal["docker"] = "docker"
    max_parallel: int = 4
    base_image: str | None = None


class AwsBatchOrchestratorOutputs(_Out):
    kind: Literal["aws_batch"] = "aws_batch"
    max_parallel: int = 4
    job_queue: str
    job_role_arn: str
    execution_role_arn: str = Field(description="the Fargate execution role")
    log_group: str
    base_image: str | None = None


class KubernetesOrchestratorOutputs(_Out):
    kind: Literal["kubernetes"] = "kubernetes"
    max_parallel: int = 4
    namespace: str
    context: str
    service_account: str
    base_image: str | None = None


OrchestratorOutputs = Annotated[
    LocalOrchestratorOutputs
    | DockerOrchestratorOutputs
    | AwsBatchOrchestratorOutputs
    | KubernetesOrchestratorOutputs,
    Field(discriminator="kind"),
]

# -- secrets backends --------------------------------------------------------------------


class LocalSecretsOutputs(_Out):
    kind: Literal["local"] = "local"
    path: str = Field(description="the encrypted store file")
    key_file: str = Field(description="the 0600 key file")


class SecretsManagerOutputs(_Out):
    kind: Literal["aws_secrets_manager"] = "aws_secrets_manager"
    prefix: str
    region: str


class KubernetesSecretsOutputs(_Out):
    kind: Literal["kubernetes"] = "kubernetes"
    namespace: str


SecretsOutputs = Annotated[
    LocalSecretsOutputs | SecretsManagerOutputs | KubernetesSecretsOutputs,
    Field(discriminator="kind"),
]

# -- trackers ----------------------------------------------------------------------------


CA_DOC = "PEM of the private CA that signed the endpoint's certificate; clients trust only it"


class MlflowTrackerOutputs(_Out):
    kind: Literal["mlflow"] = "mlflow"
    uri: str
    ca_pem: str | None = Field(None, description=CA_DOC)
    username: str | None = Field(None, description="basic-auth user of the tracking server")
    password: SecretStr | None = Field(None, description="basic-auth password; never persisted")
    password_secret: str | None = Field(
        None, description="Name of the basic-auth password in the secrets backend"
    )


class NoTrackerOutputs(_Out):
    kind: Literal["none"] = "none"


TrackerOutputs = Annotated[MlflowTrackerOutputs | NoTrackerOutputs, Field(discriminator="kind")]

# -- deployers ---------------------------------------------------------------------------


class LocalDeployerOutputs(_Out):
    kind: Literal["local"] = "local"
    url: str = Field(description="the deployer service's URL")
    workdir: str = Field(description="where endpoint records and logs live")


class SageMakerDeployerOutputs(_Out):
    kind: Literal["sagemaker"] = "sagemaker"
    role_arn: str
    instance_type: str


class KubernetesDeployerOutputs(_Out):
    kind: Literal["kubernetes"] = "kubernetes"
    namespace: str
    service_account: str


class NoDeployerOutputs(_Out):
    kind: Literal["none"] = "none"


DeployerOutputs = Annotated[
    LocalDeployerOutputs | SageMakerDeployerOutputs | KubernetesDeployerOutputs | NoDeployerOutputs,
    Field(discriminator="kind"),
]

# -- the metadata server and the whole contract ------------------------------------------


class MetadataOutputs(_Out):
    url: str
    ca_pem: str | None = Field(None, description=CA_DOC)
    token: SecretStr | None = Field(None, description="Bearer token; never persisted")
    token_secret: str = Field(TOKEN_SECRET, description="Name of the token in the secrets backend")


class StackOutputs(_Out):
    """Everything a run needs to know about a provisioned stack."""

    version: Literal[2] = OUTPUTS_VERSION
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
        if "password" in data["tracker"]:
            data["tracker"]["password"] = None
        return data

    def revealed(self) -> dict[str, Any]:
        """JSON-able outputs including secret values (only for --show-secrets)."""
        data = self.model_dump(mode="json")
        token = self.metadata.token
        data["metadata"]["token"] = token.get_secret_value() if token else None
        password = getattr(self.tracker, "password", None)
        if password is not None:
            data["tracker"]["password"] = password.get_secret_value()
        return data

    def with_token(self, token: str) -> StackOutputs:
        """A copy whose metadata token is set (resolved from the secrets backend)."""
        metadata = self.metadata.model_copy(update={"token": SecretStr(token)})
        return self.model_copy(update={"metadata": metadata})

    def with_tracker_password(self, password: str) -> StackOutputs:
        """A copy whose tracker password is set (resolved from the secrets backend)."""
        tracker = self.tracker.model_copy(update={"password": SecretStr(password)})
        return self.model_copy(update={"tracker": tracker})


COMPONENTS = (
    "artifact_store",
    "container_registry",
    "orchestrator",
    "secrets",
    "tracker",
    "deployer",
)


def load_outputs(data: dict[str, Any]) -> StackOutputs:
    """Outputs of any version this code knows (1, 2) as the current model."""
    if data.get("version", 1) == 1:
        data = upgrade_v1(data)
    return StackOutputs.model_validate(data)


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 had one bag of optional fields per component: keep each kind's own fields."""
    from typing import get_args

    out = {**data, "version": OUTPUTS_VERSION}
    for component in COMPONENTS:
        value = dict(data.get(component) or {})
        for model in get_args(StackOutputs.model_fields[component].annotation):
            if model.model_fields["kind"].default == value.get("kind"):
                out[component] = {k: v for k, v in value.items() if k in model.model_fields}
    return out
