"""Runtime resources recorded on the metadata server as they are created, drained by record.

A real moto server and a real metadata server: the resources here carry NO stack tag, so
only their records can lead the drain to them (the tag-based sweep stays the backstop).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from stack_resources import MANIFEST, REGION

from provisioner.sweep.aws_drain import drain
from runner.batch_launcher import BatchLauncher
from runner.metadata.client import MetadataClient
from runner.metadata.launcher import ServerProcess, start_server
from runner.orchestrators.aws_batch import JobDefinitions
from runner.runtime_resources import record_pushed_image
from runner.step_options import StepResources
from stacks.common.progress import NullProgress
from stacks.outputs import StackOutputs
from tests.conftest import aws_outputs_data

pytestmark = pytest.mark.services

TOKEN = secrets.token_urlsafe(24)
ACCOUNT_REGISTRY = f"123456789012.dkr.ecr.{REGION}.amazonaws.com"
ROLE = "arn:aws:iam::123456789012:role/mlstack-res-test"


@pytest.fixture(scope="module")
def metadata(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("res-metadata")
    server = start_server(f"sqlite:///{folder / 'm.db'}", TOKEN, log_path=folder / "server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(metadata: ServerProcess) -> Iterator[MetadataClient]:
    with MetadataClient(metadata.url, TOKEN) as metadata_client:
        yield metadata_client


def _outputs(metadata: ServerProcess, token: str | None = TOKEN) -> StackOutputs:
    stack = f"res{secrets.token_hex(3)}"
    data = aws_outputs_data(
        stack,
        stack_id=f"{stack}-{secrets.token_hex(4)}",
        region=REGION,
        tags={"mlstack:owner": "tester"},
        container_registry={"kind": "ecr", "url": f"{ACCOUNT_REGISTRY}/mlstack-{stack}"},
        secrets={"kind": "aws_secrets_manager", "prefix": f"mlstack/{stack}/", "region": REGION},
        metadata={"url": metadata.url, "token": token},
    )
    return StackOutputs.model_validate(data)


def _create(out: StackOutputs, client: MetadataClient) -> dict[str, str]:
    """What a run and a deploy create on ``out``'s stack, each recorded as it is created
    (the job definition and the image through the runner's own recording calls)."""
    batch = boto3.client("batch", region_name=REGION)
    registry = str(getattr(out.container_registry, "url", ""))
    definition = JobDefinitions(batch, out, f"{registry}/mlstack/flow:t1")
    arn = definition.for_resources(StepResources(cpu=0.25), "train")
    batch.untag_resource(resourceArn=arn, tagKeys=["mlstack:stack-id", "mlstack:owner"])
    launcher = BatchLauncher(out, definition, batch, NullProgress())
    try:
        launcher._record_definition(arn)
        launcher._record_definition(arn)  # reused by a second step: recorded once
    finally:
        launcher.close()

    ecr = boto3.client("ecr", region_name=REGION)
    repo = f"mlstack-{out.stack}/mlstack/flow"
    ecr.create_repository(repositoryName=repo)
    ecr.put_image(repositoryName=repo, imageManifest=MANIFEST, imageTag="t1")
    record_pushed_image(client, out, f"{registry}/mlstack/flow", "t1", None)  # as pushed

    sm = boto3.client("sagemaker", region_name=REGION)
    base = f"mlstack-{out.stack_id}"
    model = sm.create_model(
        ModelName=f"{base}-m",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": f"{ACCOUNT_REGISTRY}/serve:1"},
    )["ModelArn"]
    variant = {
        "VariantName": "main",
        "ModelName": f"{base}-m",
        "InitialInstanceCount": 1,
        "InstanceType": "ml.t2.medium",
    }
    config = sm.create_endpoint_config(
        EndpointConfigName=f"{base}-c", ProductionVariants=[variant]
    )["EndpointConfigArn"]
    endpoint = sm.create_endpoint(EndpointName=f"{base}-e", EndpointConfigName=f"{base}-c")[
        "EndpointArn"
    ]
    for kind, name, resource_arn in (
        ("sagemaker:model", f"{base}-m", model),
        ("sagemaker:endpoint-config", f"{base}-c", config),
        ("sagemaker:endpoint", f"{base}-e", endpoint),
    ):
        client.record_resource(out.stack, kind, name, arn=resource_arn, region=REGION)
    return {"definition": arn, "repo": repo, "base": base}


def _exists(made: dict[str, str]) -> dict[str, bool]:
    batch = boto3.client("batch", region_name=REGION)
    sm = boto3.client("sagemaker", region_name=REGION)
    ecr = boto3.client("ecr", region_name=REGION)
    definitions = batch.describe_job_definitions(
        jobDefinitions=[made["definition"]], status="ACTIVE"
    )["jobDefinitions"]
    base = made["base"]

    def there(call: Any) -> bool:
        try:
            call()
        except ClientError:
            return False
        return True

    return {
        "batch:job-definition": bool(definitions),
        "ecr:image": bool(ecr.list_images(repositoryName=made["repo"])["imageIds"]),
        "sagemaker:model": there(lambda: sm.describe_model(ModelName=f"{base}-m")),
        "sagemaker:endpoint-config": there(
            lambda: sm.describe_endpoint_config(EndpointConfigName=f"{base}-c")
        ),
        "sagemaker:endpoint": there(lambda: sm.describe_endpoint(EndpointName=f"{base}-e")),
    }


KINDS = {
    "batch:job-definition",
    "ecr:image",
    "sagemaker:model",
    "sagemaker:endpoint-config",
    "sagemaker:endpoint",
}


def test_runs_and_deploys_record_what_they_create_with_the_stack_tags(
    aws_env: str, metadata: ServerProcess, client: MetadataClient
) -> None:
    out = _outputs(metadata)
    made = _create(out, client)
    rows = client.list_resources(stack=out.stack, live=True)
    assert sorted(r.kind for r in rows) == sorted(KINDS)  # the definition once
    by_kind = {r.kind: r for r in rows}
    job = by_kind["batch:job-definition"]
    assert job.arn == made["definition"] and job.name == made["definition"].rsplit("/", 1)[-1]
    assert job.tags == {
        "mlstack:owner": "tester",
        "mlstack:stack": out.stack,
        "mlstack:stack-id": out.stack_id,
    }
    assert job.region == REGION
    image = by_kind["ecr:image"]
    assert image.name == f"{made['repo']}:t1"
    assert image.details["repository"] == made["repo"] and image.details["tag"] == "t1"
    # Another registry than ECR goes with the stack's services: nothing is recorded.
    local = out.model_copy(update={"container_registry": {"kind": "local", "url": "h:1"}})
    record_pushed_image(client, local, "h:1/mlstack/flow", "t2", None)
    assert len(client.list_resources(stack=out.stack, kind="ecr:image")) == 1


def test_drain_deletes_the_recorded_resources_and_marks_them_deleted(
    aws_env: str, metadata: ServerProcess, client: MetadataClient
) -> None:
    ours, theirs = _outputs(metadata), _outputs(metadata)
    made, kept = _create(ours, client), _create(theirs, client)
    # Already gone (deleted out of band): counts as drained. Of a kind mlstack cannot
    # delete: reported as a leftover, its record stays live.
    client.record_resource(ours.stack, "sagemaker:model", "mlstack-vanished", region=REGION)
    client.record_resource(ours.stack, "sagemaker:notebook-instance", "nb", region=REGION)

    result = drain(ours.stack_id, REGION, timeout=60, client=client, stack=ours.stack)

    assert _exists(made) == dict.fromkeys(KINDS, False)
    assert _exists(kept) == dict.fromkeys(KINDS, True)
    kinds = [r.kind for r in result.drained if r.deleted]
    assert set(kinds) == KINDS and len(kinds) == len(KINDS) + 1  # + the vanished model
    assert kinds.index("sagemaker:endpoint") < kinds.index("sagemaker:endpoint-config")
    assert kinds.index("sagemaker:endpoint-config") < kinds.index("sagemaker:model")
    assert [(r.kind, r.name) for r in result.remaining] == [("sagemaker:notebook-instance", "nb")]
    assert "does not know how to delete" in (result.remaining[0].error or "")
    live = client.list_resources(stack=ours.stack, live=True)
    assert [(r.kind, r.name) for r in live] == [("sagemaker:notebook-instance", "nb")]
    gone = client.list_resources(stack=ours.stack, live=False)
    assert {r.kind for r in gone} == KINDS and all(r.deleted_at for r in gone)
    theirs_live = client.list_resources(stack=theirs.stack, live=True)
    assert sorted(r.kind for r in theirs_live) == sorted(KINDS)

    # Nothing recorded is live any more but the leftover: a second drain only retries it.
    again = drain(ours.stack_id, REGION, timeout=60, client=client, stack=ours.stack)
    assert [(r.kind, r.name, r.deleted) for r in again.drained] == [
        ("sagemaker:notebook-instance", "nb", False)
    ]
    tidy = drain(theirs.stack_id, REGION, timeout=60, client=client, stack=theirs.stack)
    assert tidy.complete and _exists(kept) == dict.fromkeys(KINDS, False)


def test_drain_without_a_metadata_client_still_drains_by_tag(
    aws_env: str, metadata: ServerProcess
) -> None:
    out = _outputs(metadata)
    batch = boto3.client("batch", region_name=REGION)
    arn = JobDefinitions(batch, out, "x/mlstack/flow:t9").for_resources(StepResources(), "a")
    result = drain(out.stack_id, REGION, timeout=60)  # tagged: the backstop finds it
    assert [(r.kind, r.arn, r.deleted) for r in result.drained] == [
        ("batch:job-definition", arn, True)
    ]


def test_down_drains_the_recorded_resources_and_stops_on_a_leftover(
    aws_env: str,
    home: Path,
    metadata: ServerProcess,
    client: MetadataClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``mlstack down``'s drain reaches the stack's metadata server through its outputs and
    the token in Secrets Manager, as the CLI does."""
    from provisioner.engines.pulumi import AwsEngine, PulumiEngine
    from provisioner.state import StackRecord, StateRegistry
    from stacks.common.constants import TOKEN_SECRET
    from stacks.common.errors import EngineError

    out = _outputs(metadata)
    public = out.model_copy(update={"metadata": out.metadata.model_copy(update={"token": None})})
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=f"mlstack/{out.stack}/{TOKEN_SECRET}", SecretString=TOKEN
    )
    made = _create(out, client)
    leftover = client.record_resource(out.stack, "sagemaker:notebook-instance", "nb")
    registry = StateRegistry(home)
    registry.save(
        StackRecord(
            name=out.stack,
            stack_id=out.stack_id,
            provider="aws",
            status="up",
            spec={"name": out.stack, "provider": "aws", "region": REGION},
            spec_hash="x",
            outputs=public,
        )
    )
    destroyed: list[bool] = []

    def destroy(self: PulumiEngine, rec: StackRecord) -> tuple[list[str], list[str]]:
        # Stands in for the Pulumi destroy (no Pulumi CLI here): what exists when it starts.
        destroyed.append(not any(_exists(made).values()))
        return ["pulumi destroy"], []

    monkeypatch.setattr(PulumiEngine, "_down", destroy)
    monkeypatch.setattr(PulumiEngine, "_command", lambda self: object())  # no Pulumi CLI here
    with pytest.raises(EngineError) as refused:
        AwsEngine(registry, NullProgress()).down(out.stack)
    assert "sagemaker:notebook-instance nb" in str(refused.value) and destroyed == []
    assert _exists(made) == dict.fromkeys(KINDS, False)  # the rest went all the same
    client.mark_resource_deleted(leftover.id)  # the operator removed it by hand
    result = AwsEngine(registry, NullProgress()).down(out.stack)
    assert destroyed == [True] and result.stopped == ["pulumi destroy"]
    assert client.list_resources(stack=out.stack, live=True) == []
