"""The AWS stack program under Pulumi's own mocks: resources, key inputs, policies, outputs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from provisioner.engines.pulumi_plan import MockRun, run_stack_program
from stacks.aws import tls
from stacks.outputs import StackOutputs
from stacks.spec import StackSpec

# pulumi_aws warns about its own deprecated resource classes at import time.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws")

STACK_ID = "demo-a1b2c3"
PROGRAM = "stacks.aws.program"
UNSCOPED = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
CONFIG = {
    "mlstack:owner": "alice",
    "mlstack:expiresAt": "2030-01-01T08:00:00Z",
    "mlstack:metadataToken": "token-value-for-tests",
    "mlstack:dbPassword": "password-for-tests",
    "mlstack:trackerPassword": "tracker-password-for-tests",
    "mlstack:trackerFlaskKey": "flask-key-for-tests",
}


def make_spec(**components: Any) -> StackSpec:
    return StackSpec.model_validate(
        {
            "name": "demo",
            "provider": "aws",
            "region": "eu-west-1",
            "owner": "alice",
            "tags": {"team": "ml"},
            "components": components,
        }
    )


# The TLS material the engine generates once per stack (all specs here share the region).
TLS = {f"mlstack:{k}": v for k, (v, _) in tls.generated_config(make_spec()).items()}


def run(spec: StackSpec) -> MockRun:
    return run_stack_program(spec, PROGRAM, STACK_ID, {**CONFIG, **TLS})


@pytest.fixture(scope="module")
def full() -> MockRun:
    return run(
        make_spec(orchestrator={"max_vcpus": 32}, tracker={"db_instance_class": "db.t4g.small"})
    )


def cloud(result: MockRun) -> list[Any]:
    return [r for r in result.resources if r.custom and r.type.startswith("aws:")]


def test_every_component_creates_its_resources(full: MockRun) -> None:
    by_component: dict[str, set[str]] = {}
    for res in cloud(full):
        by_component.setdefault(res.component, set()).add(res.type)
    assert set(by_component) == {
        "artifact_store", "container_registry", "secrets", "orchestrator", "tracker",
        "metadata", "deployer", "expiry",
    }  # fmt: skip
    assert "aws:s3/bucket:Bucket" in by_component["artifact_store"]
    assert "aws:ecr/repository:Repository" in by_component["container_registry"]
    assert "aws:secretsmanager/secret:Secret" in by_component["secrets"]
    assert {
        "aws:batch/computeEnvironment:ComputeEnvironment",
        "aws:batch/jobQueue:JobQueue",
        "aws:cloudwatch/logGroup:LogGroup",
        "aws:ec2/vpc:Vpc",
    } <= by_component["orchestrator"]
    assert {"aws:rds/instance:Instance", "aws:ecs/service:Service"} <= by_component["metadata"]
    assert "aws:ecs/service:Service" in by_component["tracker"]
    assert by_component["deployer"] == {"aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy"}


def test_logical_names_are_unique_and_physical_names_carry_the_stack_id(full: MockRun) -> None:
    names = [r.name for r in full.resources]
    assert len(names) == len(set(names))
    named = 0
    for res in cloud(full):
        key = "bucket" if res.type == "aws:s3/bucket:Bucket" else "name"
        physical = res.inputs.get(key) or res.inputs.get("identifier")
        if isinstance(physical, str) and res.type != "aws:iam/rolePolicy:RolePolicy":
            named += 1
            assert STACK_ID in physical, (res.name, physical)
    assert named >= 20


def test_stack_tags_reach_every_resource_through_the_provider(full: MockRun) -> None:
    provider = full.named("aws")
    assert provider.type == "pulumi:providers:aws"
    assert provider.inputs["region"] == "eu-west-1"
    tags = json.loads(provider.inputs["defaultTags"])["tags"]
    assert tags["mlstack:stack-id"] == STACK_ID
    assert tags["mlstack:owner"] == "alice"
    assert tags["mlstack:expires-at"] == "2030-01-01T08:00:00Z"
    assert tags["team"] == "ml"
    for res in cloud(full):
        assert res.provider.startswith(provider.urn + "::"), f"{res.name} bypasses the provider"
    for service in full.of_type("aws:ecs/service:Service"):
        assert service.inputs["propagateTags"] == "SERVICE"  # tasks are tagged too


def test_bucket_is_force_destroyed_private_and_encrypted(full: MockRun) -> None:
    bucket = full.named("bucket")
    assert bucket.inputs["forceDestroy"] is True
    assert "acl" not in bucket.inputs and "policy" not in bucket.inputs
    block = full.named("public-access-block")
    for key in (
        "blockPublicAcls",
        "blockPublicPolicy",
        "ignorePublicAcls",
        "restrictPublicBuckets",
    ):
        assert block.inputs[key] is True
    assert block.inputs["bucket"] == "bucket-id"
    rule = full.named("encryption").inputs["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    assert not full.of_type("aws:s3/bucketPolicy:BucketPolicy")
    assert not full.of_type("aws:s3/bucketVersioning:BucketVersioning")  # off by default


def test_versioning_is_opt_in() -> None:
    result = run(make_spec(artifact_store={"versioning": True}))
    versioning = result.of_type("aws:s3/bucketVersioning:BucketVersioning")
    assert [v.get("versioningConfiguration.status") for v in versioning] == ["Enabled"]


def test_registry_is_force_deleted_scanned_and_expires_untagged(full: MockRun) -> None:
    repo = full.named("repository")
    assert repo.inputs["forceDelete"] is True
    assert repo.get("imageScanningConfiguration.scanOnPush") is True
    policy = json.loads(full.named("lifecycle").inputs["policy"])
    assert policy["rules"][0]["selection"]["tagStatus"] == "untagged"
    assert policy["rules"][0]["action"]["type"] == "expire"


def test_secrets_delete_at_once_and_live_under_the_stack_prefix(full: MockRun) -> None:
    secrets = full.of_type("aws:secretsmanager/secret:Secret")
    assert {s.name for s in secrets} == {
        "mlstack-metadata-token", "metadata-database-url", "tracker-database-url",
        "tracker-auth-database-url", "mlstack-tracker-password", "tracker-flask-secret-key",
    }  # fmt: skip
    for secret in secrets:
        assert secret.inputs["recoveryWindowInDays"] == 0
        assert secret.inputs["name"].startswith(f"mlstack/{STACK_ID}/")


def test_orchestrator_is_batch_on_fargate_with_the_spec_vcpus(full: MockRun) -> None:
    compute = full.named("compute")
    assert compute.inputs["type"] == "MANAGED"
    assert compute.get("computeResources.type") == "FARGATE"
    assert compute.get("computeResources.maxVcpus") == 32
    assert len(compute.get("computeResources.subnets")) == 2
    queue = full.named("queue")
    assert queue.get("computeEnvironmentOrders.0.computeEnvironment").endswith("fargate")
    assert full.named("job-logs").inputs["retentionInDays"] == 14
    assert full.named("service-logs").inputs["retentionInDays"] == 14


def test_database_is_smallest_disposable_postgres(full: MockRun) -> None:
    db = full.named("db")
    assert db.inputs["engine"] == "postgres"
    assert db.inputs["instanceClass"] == "db.t4g.small"
    assert db.inputs["skipFinalSnapshot"] is True
    assert db.inputs["deletionProtection"] is False
    assert db.inputs["publiclyAccessible"] is False
    assert db.inputs["storageEncrypted"] is True
    assert len(full.of_type("aws:rds/instance:Instance")) == 1  # shared by tracker + metadata


def _statements(result: MockRun) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for policy in result.of_type("aws:iam/rolePolicy:RolePolicy"):
        for statement in json.loads(policy.inputs["policy"])["Statement"]:
            found.append((policy.name, statement))
    return found


def test_policies_name_only_this_stacks_resources(full: MockRun) -> None:
    statements = _statements(full)
    assert {name for name, _ in statements} == {
        "batch-execution-policy", "job-policy", "service-execution-policy",
        "mlflow-task-policy", "metadata-task-policy", "sagemaker-policy", "expiry-policy",
    }  # fmt: skip
    for name, statement in statements:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        for resource in statement["Resource"]:
            if resource == "*":
                assert set(actions) <= UNSCOPED, f"{name}: {actions} on *"
            else:
                assert STACK_ID in resource, f"{name}: {resource} is not this stack's"
        assert not any(a.endswith(":*") or a == "*" for a in actions), f"{name}: wildcard action"


def test_job_role_reaches_bucket_secrets_and_registry(full: MockRun) -> None:
    resources = {r for name, s in _statements(full) if name == "job-policy" for r in s["Resource"]}
    assert f"arn:aws:s3:::mlstack-{STACK_ID}/*" in resources
    assert any(f"secret:mlstack/{STACK_ID}/*" in r for r in resources)
    assert any(r.endswith(f"repository/mlstack-{STACK_ID}") for r in resources)
    roles = {
        r.name: json.loads(r.inputs["assumeRolePolicy"]) for r in full.of_type("aws:iam/role:Role")
    }
    assert roles["sagemaker-role"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }
    assert roles["job-role"]["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}


def test_services_get_secrets_from_secrets_manager_not_the_command_line(full: MockRun) -> None:
    for task in full.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        text = task.inputs["containerDefinitions"]
        assert "password-for-tests" not in text and "token-value-for-tests" not in text
        container = json.loads(text)[0]
        assert all(
            s["valueFrom"].startswith("arn:aws:secretsmanager:") for s in container["secrets"]
        )
    metadata = json.loads(full.named("metadata-task").inputs["containerDefinitions"])[0]
    assert metadata["image"].endswith(f"mlstack-{STACK_ID}:metadata-0.1.0")  # the default


def test_metadata_server_reads_step_logs_from_the_bucket_and_nothing_else(full: MockRun) -> None:
    """The dashboard's log panel: the task knows the store's root and its role may read (and
    list) the bucket's logs/ only, never write, never another key."""
    task = full.named("metadata-task")
    container = json.loads(task.inputs["containerDefinitions"])[0]
    env = {e["name"]: e["value"] for e in container["environment"]}
    bucket = f"mlstack-{STACK_ID}"
    assert env["MLSTACK_METADATA_ARTIFACT_ROOT"] == f"s3://{bucket}/mlstack"
    assert full.outputs["artifact_store"]["uri"] == env["MLSTACK_METADATA_ARTIFACT_ROOT"]
    role = full.named("metadata-task-role")
    assert task.inputs["taskRoleArn"] == f"arn:aws:iam::123456789012:role/{role.inputs['name']}"
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    statements = [s for name, s in _statements(full) if name == "metadata-task-policy"]
    assert statements == [
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{bucket}"],
            "Condition": {"StringLike": {"s3:prefix": ["mlstack/logs/*"]}},
        },
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"arn:aws:s3:::{bucket}/mlstack/logs/*"],
        },
    ]


def test_metadata_image_comes_from_the_spec() -> None:
    result = run(make_spec(metadata={"image": "example.org/meta:1"}))
    container = json.loads(result.named("metadata-task").inputs["containerDefinitions"])[0]
    assert container["image"] == "example.org/meta:1"


def test_outputs_validate_as_stack_outputs(full: MockRun) -> None:
    outputs = StackOutputs.model_validate(
        {k: v for k, v in full.outputs.items() if k in StackOutputs.model_fields}
    )
    assert outputs.stack_id == STACK_ID and outputs.provider == "aws"
    assert outputs.artifact_store.uri == f"s3://mlstack-{STACK_ID}/mlstack"
    assert outputs.container_registry.kind == "ecr"
    assert outputs.orchestrator.kind == "aws_batch" and outputs.orchestrator.job_queue
    assert outputs.secrets.prefix == f"mlstack/{STACK_ID}/"
    assert outputs.tracker.uri and outputs.tracker.uri.startswith("https://")
    assert outputs.deployer.role_arn and outputs.deployer.instance_type == "ml.t3.medium"
    assert outputs.metadata.url.endswith(":8080") and outputs.metadata.token is None
    assert outputs.tags["mlstack:stack-id"] == STACK_ID


def test_tracker_none_and_deployer_none_create_nothing_for_them() -> None:
    result = run(make_spec(tracker="none", deployer="none"))
    components = {r.component for r in cloud(result)}
    assert "tracker" not in components and "deployer" not in components
    assert result.outputs["tracker"] == {"kind": "none"}
    assert result.outputs["deployer"] == {"kind": "none"}
    StackOutputs.model_validate(
        {k: v for k, v in result.outputs.items() if k in StackOutputs.model_fields}
    )
    assert len(result.of_type("aws:rds/instance:Instance")) == 1  # metadata still needs it


def test_a_second_run_in_the_same_process_is_identical(full: MockRun) -> None:
    again = run(
        make_spec(orchestrator={"max_vcpus": 32}, tracker={"db_instance_class": "db.t4g.small"})
    )
    assert sorted(r.urn for r in again.resources) == sorted(r.urn for r in full.resources)
    assert again.outputs == full.outputs
