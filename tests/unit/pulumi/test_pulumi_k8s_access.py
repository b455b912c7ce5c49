"""Kubernetes stack under mocks: awaits that cannot hang, least-privilege Roles, MLflow without
an unpinned install, and Services the user's machine can reach when the spec asks."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.engines.pulumi_plan import MockRun, run_stack_program
from stacks.kubernetes.tracker import PINS
from stacks.outputs import StackOutputs
from stacks.spec import StackSpec

STACK_ID = "demo-a1b2c3"
NAMESPACE = f"mlstack-{STACK_ID}"
SKIP = "pulumi.com/skipAwait"
CONFIG = {
    "mlstack:owner": "alice",
    "mlstack:expiresAt": "never",
    "mlstack:metadataToken": "token-value-for-tests",
    "mlstack:minioPassword": "minio-root-password-for-tests",
    "mlstack:minioUserPassword": "minio-user-password-for-tests",
}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "watch", "*"}


def make_spec(target: dict[str, Any] | None = None, **components: Any) -> StackSpec:
    return StackSpec.model_validate(
        {
            "name": "demo",
            "provider": "kubernetes",
            "kubernetes": {
                "kubeconfig": "/tmp/kubeconfig",
                "context": "kind-test",
                **(target or {}),
            },
            "components": components,
        }
    )


def run(spec: StackSpec) -> MockRun:
    return run_stack_program(spec, "stacks.kubernetes.program", STACK_ID, dict(CONFIG))


@pytest.fixture(scope="module")
def default() -> MockRun:
    return run(make_spec())


def _skips(res: Any) -> bool:
    return (res.get("metadata.annotations") or {}).get(SKIP) == "true"


def test_the_unpullable_default_metadata_image_is_awaited_nowhere(default: MockRun) -> None:
    assert _skips(default.named("metadata-deployment"))
    assert _skips(default.named("metadata-service"))  # its endpoints would never be ready


def test_user_image_and_public_images_are_awaited(default: MockRun) -> None:
    given = run(make_spec(metadata={"image": "registry.example.org/mlstack-metadata:1"}))
    assert not _skips(given.named("metadata-deployment"))
    assert not _skips(given.named("metadata-service"))
    for app in ("mlflow", "minio", "registry"):
        assert not _skips(default.named(f"{app}-deployment")), app
        assert not _skips(default.named(f"{app}-service")), app


def _rules(result: MockRun, role: str) -> list[dict[str, Any]]:
    return list(result.named(role).inputs["rules"])


def _subjects(result: MockRun, role: str) -> list[str]:
    return [s["name"] for s in result.named(f"{role}-binding").inputs["subjects"]]


def test_secret_readers_read_named_secrets_only(default: MockRun) -> None:
    rules = _rules(default, "mlstack-secrets")
    assert len(rules) == 1
    assert set(rules[0]["verbs"]) == {"get", "list"}
    names = set(rules[0]["resourceNames"])
    assert names == {"mlstack-metadata-token", "mlstack-user-secrets", "minio-credentials"}
    assert "minio-root" not in names
    assert _subjects(default, "mlstack-secrets") == ["mlstack-orchestrator", "mlstack-deployer"]


def test_only_the_stacks_own_account_writes_and_only_the_user_secrets(default: MockRun) -> None:
    rules = _rules(default, "mlstack-secrets-writer")
    assert rules == [
        {"apiGroups": [""], "resources": ["secrets"],
         "resourceNames": ["mlstack-user-secrets"], "verbs": ["get", "update", "patch"]}
    ]  # fmt: skip
    assert _subjects(default, "mlstack-secrets-writer") == ["mlstack-stack"]
    writers = set()
    for role in default.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role"):
        for rule in role.inputs["rules"]:
            if "secrets" in rule["resources"] and set(rule["verbs"]) & WRITE_VERBS:
                writers.update(_subjects(default, role.name))
    assert writers == {"mlstack-stack"}


def test_minio_root_credentials_reach_only_minio_and_its_setup_job(default: MockRun) -> None:
    root = default.named("minio-root")
    assert root.get("metadata.name") == "minio-root"
    users = set()
    for res in default.resources:
        if "minio-root" in str(res.inputs) and res.name != "minio-root":
            users.add(res.name)
    assert users == {"minio-deployment", "minio-bucket"}
    env = default.named("mlflow-deployment").get("spec.template.spec.containers.0.env")
    keys = {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e}
    assert "minio-root" not in keys and "minio-credentials" in keys
    job = default.named("minio-bucket").get("spec.template.spec.containers.0.args.0")
    assert "mc admin user add" in job and "policy attach store readwrite" in job


def test_mlflow_installs_only_pinned_packages_or_nothing(default: MockRun) -> None:
    args = default.named("mlflow-deployment").get("spec.template.spec.containers.0.args.0")
    installed = args.split("pip install", 1)[1].split("&&", 1)[0].split()
    packages = [p for p in installed if not p.startswith("-")]
    assert packages == list(PINS) and all("==" in p for p in packages)
    own = run(make_spec(tracker={"image": "registry.example.org/mlflow-pg:3.5.0"}))
    container = own.named("mlflow-deployment").get("spec.template.spec.containers.0")
    assert container["image"] == "registry.example.org/mlflow-pg:3.5.0"
    assert "pip install" not in container["args"][0]


def test_cluster_ip_by_default_load_balancer_when_asked(default: MockRun) -> None:
    for svc in default.of_type("kubernetes:core/v1:Service"):
        assert svc.get("spec.type") == "ClusterIP", svc.name
    exposed = run(make_spec({"service_type": "LoadBalancer"}))
    types = {s.name: s.get("spec.type") for s in exposed.of_type("kubernetes:core/v1:Service")}
    assert types == {
        "metadata-service": "LoadBalancer", "mlflow-service": "LoadBalancer",
        "minio-service": "LoadBalancer", "registry-service": "LoadBalancer",
    }  # fmt: skip
    StackOutputs.model_validate(
        {k: v for k, v in exposed.outputs.items() if k in StackOutputs.model_fields}
    )


def test_outputs_without_a_load_balancer_stay_in_cluster(default: MockRun) -> None:
    out = StackOutputs.model_validate(
        {k: v for k, v in default.outputs.items() if k in StackOutputs.model_fields}
    )
    assert out.metadata.url == f"http://metadata.{NAMESPACE}.svc.cluster.local:8080"
    assert out.container_registry.url == f"registry.{NAMESPACE}.svc.cluster.local:5000"


def test_outputs_name_the_load_balancers_when_exposed() -> None:
    exposed = run(make_spec({"service_type": "LoadBalancer"}))
    out = StackOutputs.model_validate(
        {k: v for k, v in exposed.outputs.items() if k in StackOutputs.model_fields}
    )
    assert out.metadata.url == "http://metadata-service.plan.example:8080"
    assert out.tracker.uri == "http://mlflow-service.plan.example:5000"
    assert out.artifact_store.endpoint_url == "http://minio-service.plan.example:9000"
    assert out.container_registry.url == "registry-service.plan.example:5000"


def test_plan_warns_when_the_metadata_image_may_not_be_pullable(tmp_path: Any) -> None:
    from provisioner.engines import get_engine
    from provisioner.state import StateRegistry

    engine = get_engine("kubernetes", StateRegistry(tmp_path))
    notes = engine.plan(make_spec()).notes
    assert len(notes) == 1 and "components.metadata.image" in notes[0]
    given = make_spec(metadata={"image": "registry.example.org/mlstack-metadata:1"})
    assert engine.plan(given).notes == []
