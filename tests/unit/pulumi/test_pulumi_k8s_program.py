"""The Kubernetes stack program under Pulumi's mocks: objects, labels, RBAC scope, outputs."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.engines.pulumi_plan import MockRun, run_stack_program
from stacks.outputs import StackOutputs
from stacks.spec import StackSpec

STACK_ID = "demo-a1b2c3"
NAMESPACE = f"mlstack-{STACK_ID}"
CONFIG = {
    "mlstack:owner": "alice",
    "mlstack:expiresAt": "2030-01-01T08:00:00Z",
    "mlstack:metadataToken": "token-value-for-tests",
    "mlstack:minioPassword": "minio-password-for-tests",
    "mlstack:minioUserPassword": "minio-user-password-for-tests",
}


def make_spec(**components: Any) -> StackSpec:
    return StackSpec.model_validate(
        {
            "name": "demo",
            "provider": "kubernetes",
            "owner": "alice",
            "kubernetes": {"kubeconfig": "/tmp/kubeconfig", "context": "kind-test"},
            "components": components,
        }
    )


def run(spec: StackSpec) -> MockRun:
    return run_stack_program(spec, "stacks.kubernetes.program", STACK_ID, dict(CONFIG))


@pytest.fixture(scope="module")
def full() -> MockRun:
    return run(make_spec(artifact_store={"size_gib": 25}, tracker={"cpu": 1, "memory_gib": 2}))


def objects(result: MockRun) -> list[Any]:
    return [r for r in result.resources if r.custom and r.type.startswith("kubernetes:")]


def test_provider_targets_the_spec_cluster(full: MockRun) -> None:
    provider = full.named("kubernetes")
    assert provider.inputs["kubeconfig"] == "/tmp/kubeconfig"
    assert provider.inputs["context"] == "kind-test"
    for res in objects(full):
        assert res.provider.startswith(provider.urn + "::"), res.name


def test_every_object_is_labelled_with_the_stack_id(full: MockRun) -> None:
    for res in objects(full):
        labels = res.get("metadata.labels")
        assert labels["mlstack.dev/stack-id"] == STACK_ID, res.name
        assert labels["app.kubernetes.io/managed-by"] == "mlstack"
        assert res.get("metadata.annotations")["mlstack.dev/expires-at"] == "2030-01-01T08:00:00Z"
        if res.type != "kubernetes:core/v1:Namespace":
            assert res.get("metadata.namespace") == NAMESPACE, res.name
    for deployment in full.of_type("kubernetes:apps/v1:Deployment"):
        pod_labels = deployment.get("spec.template.metadata.labels")
        assert pod_labels["mlstack.dev/stack-id"] == STACK_ID
        assert deployment.get("spec.selector.matchLabels")["mlstack.dev/stack-id"] == STACK_ID


def test_components_and_their_objects(full: MockRun) -> None:
    kinds: dict[str, set[str]] = {}
    for res in objects(full):
        kinds.setdefault(res.component, set()).add(res.type.rsplit(":", 1)[-1])
    assert kinds["orchestrator"] == {"Namespace", "ServiceAccount", "Role", "RoleBinding"}
    assert kinds["artifact_store"] == {
        "Secret",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "Job",
    }
    assert kinds["container_registry"] == {"PersistentVolumeClaim", "Deployment", "Service"}
    assert kinds["secrets"] == {"Secret", "ServiceAccount", "Role", "RoleBinding"}
    assert kinds["tracker"] == {"PersistentVolumeClaim", "Deployment", "Service"}
    assert kinds["metadata"] == {"PersistentVolumeClaim", "Deployment", "Service"}
    assert kinds["deployer"] == {"ServiceAccount", "Role", "RoleBinding"}
    assert not [r for r in objects(full) if "ClusterRole" in r.type]  # namespaced RBAC only


def test_sizes_come_from_the_spec(full: MockRun) -> None:
    assert full.named("minio-data").get("spec.resources.requests.storage") == "25Gi"
    mlflow = full.named("mlflow-deployment").get(
        "spec.template.spec.containers.0.resources.requests"
    )
    assert mlflow == {"cpu": "1000m", "memory": "2048Mi"}


def test_roles_are_limited_to_what_each_account_needs(full: MockRun) -> None:
    jobs = full.named("mlstack-jobs").inputs["rules"]
    assert {r for rule in jobs for r in rule["resources"]} == {"jobs", "pods", "pods/log"}
    secrets = full.named("mlstack-secrets").inputs["rules"]
    assert [rule["resources"] for rule in secrets] == [["secrets"]]
    deploy = full.named("mlstack-deployments").inputs["rules"]
    assert {r for rule in deploy for r in rule["resources"]} == {"deployments", "services", "pods"}
    readers = [s["name"] for s in full.named("mlstack-secrets-binding").inputs["subjects"]]
    assert readers == ["mlstack-orchestrator", "mlstack-deployer"]


def test_secret_values_are_not_in_any_container_spec(full: MockRun) -> None:
    for deployment in full.of_type("kubernetes:apps/v1:Deployment"):
        text = str(deployment.inputs)
        assert "token-value-for-tests" not in text and "minio-password-for-tests" not in text
    env = full.named("metadata-deployment").get("spec.template.spec.containers.0.env")
    token = next(e for e in env if e["name"] == "MLSTACK_METADATA_TOKEN")
    assert token["valueFrom"]["secretKeyRef"]["name"] == "mlstack-metadata-token"


def test_the_metadata_server_reads_step_logs_from_the_store(full: MockRun) -> None:
    """The dashboard's log panel: the store's root and in-cluster endpoint, and the store
    user's credentials by reference to its Secret, never as values."""
    env = {e["name"]: e for e in full.named("metadata-deployment").get(
        "spec.template.spec.containers.0.env")}  # fmt: skip
    outputs = full.outputs["artifact_store"]
    assert env["MLSTACK_METADATA_ARTIFACT_ROOT"]["value"] == outputs["uri"]
    assert env["AWS_ENDPOINT_URL_S3"]["value"] == f"http://minio.{NAMESPACE}.svc.cluster.local:9000"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[key]
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "minio-credentials"
    assert "minio-user-password-for-tests" not in str(env)


def test_default_metadata_image_is_not_awaited(full: MockRun) -> None:
    metadata = full.named("metadata-deployment")
    image = metadata.get("spec.template.spec.containers.0.image")
    assert image.startswith(f"registry.{NAMESPACE}.svc.cluster.local:5000/mlstack-metadata:")
    assert metadata.get("metadata.annotations")["pulumi.com/skipAwait"] == "true"
    assert "pulumi.com/skipAwait" not in full.named("mlflow-deployment").get("metadata.annotations")


def test_postgres_flavor_uses_a_secret_instead_of_volumes() -> None:
    url = "postgresql://ml:pw@db.example:5432/meta"
    result = run(make_spec(metadata={"database_url": url}))
    claims = {r.name for r in result.of_type("kubernetes:core/v1:PersistentVolumeClaim")}
    assert claims == {"minio-data", "registry-data"}
    env = result.named("mlflow-deployment").get("spec.template.spec.containers.0.env")
    store = next(e for e in env if e["name"] == "MLFLOW_BACKEND_STORE_URI")
    assert store["valueFrom"]["secretKeyRef"] == {"name": "mlstack-databases", "key": "mlflow"}
    assert "psycopg2" in result.named("mlflow-deployment").get(
        "spec.template.spec.containers.0.args.0"
    )


def test_outputs_validate_as_stack_outputs(full: MockRun) -> None:
    outputs = StackOutputs.model_validate(
        {k: v for k, v in full.outputs.items() if k in StackOutputs.model_fields}
    )
    assert outputs.provider == "kubernetes" and outputs.stack_id == STACK_ID
    assert outputs.orchestrator.namespace == NAMESPACE
    assert outputs.orchestrator.context == "kind-test"
    assert outputs.orchestrator.service_account == "mlstack-orchestrator"
    assert outputs.artifact_store.kind == "minio" and outputs.artifact_store.endpoint_url
    assert outputs.secrets.namespace == NAMESPACE
    assert outputs.deployer.service_account == "mlstack-deployer"
    assert outputs.metadata.url == f"http://metadata.{NAMESPACE}.svc.cluster.local:8080"


def test_tracker_none_and_deployer_none() -> None:
    result = run(make_spec(tracker="none", deployer="none"))
    components = {r.component for r in objects(result)}
    assert "tracker" not in components and "deployer" not in components
    readers = [s["name"] for s in result.named("mlstack-secrets-binding").inputs["subjects"]]
    assert readers == ["mlstack-orchestrator"]
    StackOutputs.model_validate(
        {k: v for k, v in result.outputs.items() if k in StackOutputs.model_fields}
    )
