"""`mlstack plan` of the cloud examples, offline through the real CLI; bad input; no CLI."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import yaml

from provisioner.state import StackRecord, StateRegistry
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[3]
AWS = str(ROOT / "examples/stacks/aws.yaml")
K8S = str(ROOT / "examples/stacks/kubernetes.yaml")

AWS_RESOURCES = {
    "artifact_store": {"bucket", "public-access-block", "encryption"},
    "container_registry": {"repository", "lifecycle"},
    "secrets": {"mlstack-metadata-token", "mlstack-metadata-token-value"},
    "orchestrator": {
        "vpc", "internet-gateway", "public-routes", "public-0", "public-1", "public-0-routes",
        "public-1-routes", "jobs-sg", "alb-sg", "services-sg", "db-sg", "job-logs",
        "batch-execution-role", "batch-execution-policy", "job-role", "job-policy", "compute",
        "queue",
    },
    "metadata": {
        "cluster", "service-logs", "service-execution-role", "service-execution-policy",
        "load-balancer", "db-subnets", "db", "metadata-database-url",
        "metadata-database-url-value", "metadata-task", "metadata-target", "metadata-listener",
        "metadata-service", "tls-certificate", "metadata-task-role", "metadata-task-policy",
    },
    "tracker": {
        "mlflow-task-role", "mlflow-task-policy", "tracker-database-url",
        "tracker-database-url-value", "mlflow-task", "mlflow-target", "mlflow-listener",
        "mlflow-service", "tracker-auth-database-url", "tracker-auth-database-url-value",
        "mlstack-tracker-password", "mlstack-tracker-password-value",
        "tracker-flask-secret-key", "tracker-flask-secret-key-value",
    },
    "deployer": {"sagemaker-role", "sagemaker-policy"},
    "expiry": {
        "expiry-group", "expiry-role", "expiry-policy", "expiry-stop-batch", "expiry-stop-db",
        "expiry-restop-db", "expiry-stop-metadata", "expiry-stop-mlflow", "expiry-delete-lb",
    },
}  # fmt: skip


def _grouped(changes: list[dict]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for change in changes:
        found.setdefault(change["component"], set()).add(change["resource"])
    return found


def test_plan_aws_json_lists_every_resource_offline(home: Path) -> None:
    started = time.monotonic()
    proc = run_cli("plan", AWS, "--json", check=True)
    elapsed = time.monotonic() - started
    data = json.loads(proc.stdout)
    assert data["provider"] == "aws" and data["stack"] == "aws-demo"
    assert _grouped(data["changes"]) == AWS_RESOURCES
    assert all(c["action"] == "create" and c["type"] for c in data["changes"])
    db = next(c for c in data["changes"] if c["resource"] == "db")
    assert db["type"] == "aws:rds/instance:Instance"
    assert (
        db["details"] | {"instance_class": "db.t4g.micro", "region": "eu-west-1"} == db["details"]
    )
    compute = next(c for c in data["changes"] if c["resource"] == "compute")
    assert compute["details"]["max_vcpus"] == 16
    logs = next(c for c in data["changes"] if c["resource"] == "job-logs")
    assert logs["details"]["retention_days"] == 14
    assert data["summary"] == f"{len(data['changes'])} to create"
    assert any("0.0.0.0/0" in note for note in data["notes"])  # the ingress warning
    assert not (home / "pulumi").exists()  # plan touches no backend
    assert elapsed < 20, f"plan took {elapsed:.1f}s"


def test_plan_aws_table_groups_by_component(home: Path) -> None:
    proc = run_cli("plan", AWS, check=True)
    assert "plan for stack aws-demo (aws)" in proc.stdout
    for component in AWS_RESOURCES:
        assert component in proc.stdout
    total = sum(len(v) for v in AWS_RESOURCES.values())
    assert f"Plan: {total} to create." in proc.stdout
    assert "warning: the load balancer accepts HTTPS from anywhere (0.0.0.0/0)" in proc.stdout


def test_plan_kubernetes_lists_every_object_offline(home: Path) -> None:
    proc = run_cli("plan", K8S, "--json", check=True)
    data = json.loads(proc.stdout)
    grouped = _grouped(data["changes"])
    assert grouped["orchestrator"] == {
        "namespace", "orchestrator-account", "mlstack-jobs", "mlstack-jobs-binding",
    }  # fmt: skip
    assert grouped["artifact_store"] == {
        "minio-root", "minio-credentials", "minio-data", "minio-deployment", "minio-service",
        "minio-bucket",
    }  # fmt: skip
    assert grouped["container_registry"] == {
        "registry-data", "registry-deployment", "registry-service",
    }  # fmt: skip
    assert grouped["secrets"] == {
        "metadata-token", "mlstack-secrets", "mlstack-secrets-binding", "user-secrets",
        "stack-account", "mlstack-secrets-writer", "mlstack-secrets-writer-binding",
    }  # fmt: skip
    assert grouped["tracker"] == {"mlflow-data", "mlflow-deployment", "mlflow-service"}
    assert grouped["metadata"] == {"metadata-data", "metadata-deployment", "metadata-service"}
    assert grouped["deployer"] == {
        "deployer-account", "mlstack-deployments", "mlstack-deployments-binding",
    }  # fmt: skip
    pvc = next(c for c in data["changes"] if c["resource"] == "minio-data")
    assert pvc["details"]["size"] == "10Gi" and pvc["details"]["context"] == "kind-mlstack"
    proc = run_cli("plan", K8S, check=True)
    assert "Plan: 29 to create." in proc.stdout


def _write(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"name": "a", "provider": "aws"}, "region: an aws stack needs a region"),
        ({"name": "k", "provider": "kubernetes"}, "kubernetes.kubeconfig and kubernetes.context"),
        (
            {"name": "k", "provider": "kubernetes", "kubernetes": {"kubeconfig": "/x"}},
            "kubernetes.context: required field is missing",
        ),
        (
            {
                "name": "a",
                "provider": "aws",
                "region": "eu-west-1",
                "components": {"tracker": {"db_instance_class": "huge"}},
            },
            "components.tracker.db_instance_class: expected an RDS instance class",
        ),
        (
            {
                "name": "a",
                "provider": "aws",
                "region": "eu-west-1",
                "components": {"deployer": {"instance_type": "t3.medium"}},
            },
            "components.deployer.instance_type: expected a SageMaker instance type",
        ),
        (
            {
                "name": "a",
                "provider": "aws",
                "region": "eu-west-1",
                "components": {"tracker": {"cpu": 0.5, "memory_gib": 8}},
            },
            "components.tracker.memory_gib: cpu 0.5 on Fargate takes memory_gib 1, 2, 3, 4",
        ),
        (
            {
                "name": "a",
                "provider": "aws",
                "region": "eu-west-1",
                "components": {"orchestrator": {"max_vcpus": 0}},
            },
            "components.orchestrator.max_vcpus",
        ),
    ],
)
def test_bad_cloud_specs_fail_with_one_line(
    home: Path, tmp_path: Path, data: dict, expected: str
) -> None:
    proc = run_cli("plan", _write(tmp_path, data))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert expected in lines[0]
    assert "Traceback" not in proc.stderr


needs_no_cli = pytest.mark.skipif(
    shutil.which("pulumi") is not None, reason="a pulumi CLI is on PATH here"
)


def _cloud_record(home: Path) -> None:
    StateRegistry(home).save(
        StackRecord(
            name="cloudy",
            stack_id="cloudy-a1b2c3",
            provider="aws",
            status="up",
            spec={"name": "cloudy", "provider": "aws", "region": "eu-west-1"},
            spec_hash="x",
        )
    )


@needs_no_cli
@pytest.mark.parametrize("command", ["refresh", "recover"])
def test_refresh_and_recover_need_the_pulumi_cli(home: Path, command: str) -> None:
    _cloud_record(home)
    proc = run_cli(command, "cloudy")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "the Pulumi CLI is not installed" in lines[0] and "MLSTACK_INSTALL_PULUMI=1" in lines[0]


@needs_no_cli
def test_up_without_the_cli_fails_before_touching_state(home: Path) -> None:
    proc = run_cli("up", AWS)
    assert proc.returncode == 1
    assert "the Pulumi CLI is not installed" in proc.stderr
    assert StateRegistry(home).get("aws-demo") is None


def test_refresh_of_a_local_stack_is_a_usage_error(home: Path) -> None:
    StateRegistry(home).save(
        StackRecord(
            name="here",
            stack_id="here-a1",
            provider="local",
            status="up",
            spec={"name": "here"},
            spec_hash="x",
        )
    )
    proc = run_cli("refresh", "here")
    assert proc.returncode == 2
    assert "refresh applies to aws and kubernetes stacks" in proc.stderr
