"""Stack-scoped sweep against a real moto server: finds by exact tag, deletes in order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from stack_resources import REGION, StackResources, create_stack, exists, new_stack_id

from provisioner.state import StackRecord, StateRegistry
from provisioner.sweep import sweep_aws
from provisioner.sweep.aws_delete import ORDER
from tests.conftest import run_cli

pytestmark = pytest.mark.services

KINDS = (
    "s3:bucket", "ecr:repository", "secretsmanager:secret", "logs:log-group", "iam:role",
    "ec2:vpc", "ec2:subnet", "ec2:security-group", "batch:compute-environment",
    "batch:job-queue", "batch:job-definition", "sagemaker:model", "sagemaker:endpoint-config",
    "sagemaker:endpoint",
)  # fmt: skip


class CallLog:
    """A boto3 session that records every API call it makes, in order."""

    def __init__(self) -> None:
        self.session = boto3.session.Session(region_name=REGION)
        self.calls: list[str] = []
        self.session.events.register("before-call.*.*", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        self.calls.append(f"{model.service_model.service_name}:{model.name}")

    def first(self, call: str) -> int:
        return self.calls.index(call)


def kinds_of(result: Any) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for res in result.found:
        found.setdefault(res.kind, []).append(res.name)
    return found


@pytest.fixture
def two_stacks(aws_env: str) -> tuple[StackResources, StackResources]:
    """One stack, and another whose stack id starts with the first one's (same name prefix)."""
    ours = new_stack_id()
    theirs = f"{ours}-{new_stack_id('two')}"  # mlstack-<ours>-two-... names
    return create_stack(ours), create_stack(theirs)


def test_sweep_finds_every_kind_and_deletes_in_dependency_order(
    two_stacks: tuple[StackResources, StackResources],
) -> None:
    ours, theirs = two_stacks
    dry = sweep_aws(ours.stack_id, REGION)
    found = kinds_of(dry)
    assert set(KINDS) <= set(found), set(KINDS) - set(found)
    assert not dry.delete and not dry.deleted and all(exists(k, ours) for k in KINDS)
    assert not any(theirs.stack_id in r.arn or theirs.stack_id in r.name for r in dry.found)
    assert found["s3:bucket"] == [f"mlstack-{ours.stack_id}"]
    assert found["iam:role"] == [f"mlstack-{ours.stack_id}-job"]

    log = CallLog()
    result = sweep_aws(ours.stack_id, REGION, delete=True, session=log.session, timeout=60)
    assert not result.errors, result.errors
    assert len(result.deleted) == len(result.found) == len(dry.found)
    for kind in KINDS:
        assert not exists(kind, ours), f"{kind} is still there"
    # Dependency order, as the calls reached the server.
    order = [
        "sagemaker:DeleteEndpoint", "sagemaker:DeleteEndpointConfig", "sagemaker:DeleteModel",
        "batch:DeregisterJobDefinition", "batch:UpdateJobQueue", "batch:DeleteJobQueue",
        "batch:UpdateComputeEnvironment", "batch:DeleteComputeEnvironment",
        "ec2:DeleteSecurityGroup", "ec2:DeleteSubnet", "ec2:DeleteVpc",
        "s3:DeleteObjects", "s3:DeleteBucket", "ecr:DeleteRepository",
        "secretsmanager:DeleteSecret", "logs:DeleteLogGroup",
        "iam:DeleteRolePolicy", "iam:DeleteRole",
    ]  # fmt: skip
    positions = [log.first(call) for call in order]
    assert positions == sorted(positions), list(zip(order, positions, strict=True))
    kinds = [r.kind for r in result.found]
    assert [ORDER.index(k) for k in kinds] == sorted(ORDER.index(k) for k in kinds)

    again = sweep_aws(ours.stack_id, REGION)
    assert again.found == [], again.found
    # The other stack, whose id and names start with ours, is untouched.
    assert all(exists(kind, theirs) for kind in KINDS)
    assert set(KINDS) <= set(kinds_of(sweep_aws(theirs.stack_id, REGION)))


def test_the_bucket_is_emptied_of_every_version_first(aws_env: str) -> None:
    stack = create_stack(new_stack_id(), runtime=False)
    s3 = boto3.client("s3", region_name=REGION)
    versions = s3.list_object_versions(Bucket=stack.names["s3:bucket"])
    assert len(versions["Versions"]) == 3 and len(versions["DeleteMarkers"]) == 1
    result = sweep_aws(stack.stack_id, REGION, delete=True, timeout=60)
    assert not result.errors, result.errors
    assert not exists("s3:bucket", stack)


def _save_record(home: Path, stack_id: str) -> None:
    name = stack_id.rsplit("-", 1)[0]
    StateRegistry(home).save(
        StackRecord(
            name=name,
            stack_id=stack_id,
            provider="aws",
            status="destroyed",
            spec={"name": name, "provider": "aws", "region": REGION},
            spec_hash="x",
        )
    )


def test_cli_sweep_by_name_then_delete(
    two_stacks: tuple[StackResources, StackResources], home: Path
) -> None:
    ours, theirs = two_stacks
    _save_record(home, ours.stack_id)
    name = ours.stack_id.rsplit("-", 1)[0]
    listed = run_cli("sweep", name, "--json", check=True)
    data = json.loads(listed.stdout)
    assert data["stack_id"] == ours.stack_id and data["delete"] is False
    assert set(KINDS) <= {r["kind"] for r in data["found"]}
    assert all(r["arn"] and r["region"] for r in data["found"])
    refused = run_cli("sweep", name, "--delete")  # no terminal, no --yes
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert all(exists(kind, ours) for kind in KINDS)
    deleted = run_cli("sweep", name, "--delete", "--yes", check=True)
    assert "deleted" in deleted.stdout and "0 failed" in deleted.stdout
    assert not any(exists(kind, ours) for kind in KINDS)
    assert all(exists(kind, theirs) for kind in KINDS)


def test_cli_sweep_by_stack_id_with_no_state_at_all(
    two_stacks: tuple[StackResources, StackResources], home: Path
) -> None:
    ours, theirs = two_stacks
    _save_record(home, ours.stack_id)
    (home / "state.json").unlink()  # the state is lost; the tags are not
    name = ours.stack_id.rsplit("-", 1)[0]
    assert run_cli("sweep", name).returncode == 2  # unknown by name now
    shown = run_cli("sweep", "--stack-id", ours.stack_id, check=True)
    assert f"mlstack-{ours.stack_id}-endpoint" in shown.stdout
    done = run_cli("sweep", "--stack-id", ours.stack_id, "--delete", "--yes", "--json", check=True)
    data = json.loads(done.stdout)
    assert data["errors"] == [] and len(data["deleted"]) == len(data["found"]) >= len(KINDS)
    assert not any(exists(kind, ours) for kind in KINDS)
    after = json.loads(run_cli("sweep", "--stack-id", ours.stack_id, "--json", check=True).stdout)
    assert after["found"] == []
    assert all(exists(kind, theirs) for kind in KINDS)


def test_bad_stack_id_is_one_line_exit_2(aws_env: str) -> None:
    proc = run_cli("sweep", "--stack-id", "not a stack id")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --stack-id") and "Traceback" not in proc.stderr
